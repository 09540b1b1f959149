"""Helpers of the HTTP tests: a tiny stdlib HTTP client and a worker serving
HTTP on a free loopback port in this process."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

import orjson

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "worker"))

from worker_harness import InProcessWorker, wait_until  # noqa: E402


class Reply:
    def __init__(self, status: int, body: bytes, headers):
        self.status = status
        self.body = body
        self.headers = headers

    @property
    def json(self):
        return orjson.loads(self.body)

    def __repr__(self) -> str:
        return f"<Reply {self.status} {self.body[:300]!r}>"


def call(base: str, method: str, path: str, body=None, token: str | None = None,
         raw: bytes | None = None, headers: dict | None = None) -> Reply:
    data = raw if raw is not None else (None if body is None else orjson.dumps(body))
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return Reply(r.status, r.read(), r.headers)
    except urllib.error.HTTPError as e:
        return Reply(e.code, e.read(), e.headers)


class Served:
    """A worker serving HTTP on 127.0.0.1 (a free port), in this process."""

    def __init__(self, queue, **options):
        self.queue = queue
        self.worker = InProcessWorker(queue, "uvloop", http="127.0.0.1:0", **options)

    def start(self) -> "Served":
        self.worker.start()
        wait_until(lambda: self.worker.worker._http_server is not None
                   or self.worker.error is not None, 10, what="the HTTP server")
        if self.worker.error is not None:
            raise self.worker.error
        self.base = f"http://127.0.0.1:{self.worker.worker._http_server.port}"
        return self

    def __call__(self, method: str, path: str, body=None, **kw) -> Reply:
        return call(self.base, method, path, body, **kw)
