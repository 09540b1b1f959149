"""benchmarks/loadtest.py: bounded and loopback-only by construction, and (where
the HTTP server is built in) a short run that kills the worker and finds every
acknowledged job in the store."""

import os
import subprocess
import sys

import pytest

loadtest = pytest.importorskip("benchmarks.loadtest")   # absent from an installed wheel
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("argv, problem", [
    (["--url", "http://10.0.0.5:8080"], "only loopback"),
    (["--url", "http://example.com:80"], "only loopback"),
    (["--url", "https://127.0.0.1:8080"], "expected http://HOST:PORT"),
    (["--duration", "0"], "--duration must be"),
    (["--duration", "100000"], "--duration must be"),
    (["--rate", "1e9"], "--rate must be"),
    (["--kill-every", "5"], "--kill-every needs --spawn"),
    (["--spawn", "benchmarks.apps:queue"], "--spawn needs --data"),
])
def test_refuses_unbounded_or_non_loopback_runs(argv, problem, capsys):
    with pytest.raises(SystemExit) as exc:
        loadtest.parse_args(argv)
    assert exc.value.code == 2
    assert problem in capsys.readouterr().err


@pytest.mark.slow
def test_kill_every_loses_no_acknowledged_job(tmp_path):
    pytest.importorskip("gq.http.server")
    pytest.importorskip("aiohttp")
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = tmp_path / "data"
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.loadtest", "--spawn", "benchmarks.apps:queue",
         "--data", str(data), "--url", f"http://127.0.0.1:{port}", "--rate", "200",
         "--duration", "6", "--clients", "16", "--kill-every", "2",
         "--json", str(tmp_path / "lt.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    import json
    figures = json.loads((tmp_path / "lt.json").read_text())
    assert figures["worker_kills"] >= 1
    assert figures["acknowledged"] > 0
    assert figures["acknowledged_missing"] == 0
    assert "acknowledged jobs is in the store after" in out.stdout
