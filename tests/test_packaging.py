"""The package refuses to run without its compiled core, and says how to fix it."""

import subprocess
import sys

BLOCK_CORE = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.startswith("gq._core."):
            raise ImportError(f"No module named {name!r} (simulated: extension not built)")
sys.meta_path.insert(0, Block())
import gq
"""


def test_import_without_compiled_core_fails_clearly():
    out = subprocess.run([sys.executable, "-c", BLOCK_CORE], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0
    assert "gq's compiled core (gq._core) failed to import" in out.stderr
    assert "pip install ." in out.stderr
    assert "no pure-Python fallback" in out.stderr


def test_public_names():
    import gq
    for name in ["Queue", "Worker", "Job", "JobInfo", "State", "Category", "GQError",
                 "ValidationError", "PayloadTooLarge", "QueueFull", "CycleError",
                 "UnknownDependency", "StorageFull", "StoreUnavailable", "InvalidTransition",
                 "NotRetriable", "JobNotFound", "TemporaryError", "PermanentError"]:
        assert getattr(gq, name) is not None, name
    assert [s.value for s in gq.State] == ["pending", "scheduled", "running", "completed",
                                           "failed", "dead_letter", "cancelled"]
