"""Serving the HTTP API (gq/http/api.py) of `gq worker --http HOST:PORT`.

aiohttp, served on the worker's own event loop (one worker process), or on a
thread of the supervisor with `processes=N` (the children do the work; the
supervisor answers for all of them).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
from typing import Callable

from aiohttp import web

from gq import errors as E
from gq.http import metrics_export
from gq.http.api import Api

log = logging.getLogger("gq.http")

DEFAULT_HOST = "127.0.0.1"


def parse_bind(text: str) -> tuple[str, int]:
    """'HOST:PORT', ':PORT' or 'PORT' (host 127.0.0.1), '[::1]:PORT'."""
    text = str(text).strip()
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]") or DEFAULT_HOST
    try:
        number = int(port)
    except ValueError:
        raise E.ValidationError(f"--http {text!r}: expected HOST:PORT (e.g. "
                                "127.0.0.1:8080) or a port number") from None
    if not 0 <= number <= 65535:
        raise E.ValidationError(f"--http {text!r}: port {number} is out of range 0..65535")
    return host, number


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket, bound before anything else starts, so a taken
    port is one clear error at startup."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        raise E.GQError(f"cannot serve HTTP on {host}:{port}: {e.strerror or e}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
    except OSError as e:
        sock.close()
        raise E.GQError(f"cannot serve HTTP on {host}:{port}: {e.strerror or e}") from None
    sock.setblocking(False)
    return sock


class HttpServer:
    """The API on the current event loop, on `bind` ('HOST:PORT')."""

    def __init__(self, api: Api, bind: str):
        self.api = api
        self.host, self.port = parse_bind(bind)
        self._runner: web.AppRunner | None = None
        self._socket: socket.socket | None = None

    async def start(self) -> "HttpServer":
        self._socket = _listen(self.host, self.port)
        self.port = self._socket.getsockname()[1]
        self._runner = web.AppRunner(self.api.app(), access_log=None,
                                     handle_signals=False)
        await self._runner.setup()
        await web.SockSite(self._runner, self._socket).start()
        where = f"[{self.host}]" if ":" in self.host else self.host
        log.info("HTTP API, metrics and dashboard on http://%s:%d/", where, self.port,
                 extra={"http_host": self.host, "http_port": self.port})
        return self

    def listening_fd(self) -> int | None:
        return self._socket.fileno() if self._socket is not None else None

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        if self._socket is not None:
            self._socket.close()


class HttpThread:
    """An HttpServer on a thread with an event loop of its own: the supervisor
    of `processes=N` blocks in os.wait(), so its HTTP cannot share that thread."""

    def __init__(self, api: Api, bind: str):
        self.server = HttpServer(api, bind)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="gq-http", daemon=True)

    def start(self) -> "HttpThread":
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise self._error
        return self

    def _main(self) -> None:
        # stop signals belong to the supervisor's main thread (its os.wait())
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        try:   # imported here: uvloop is optional (a dependency on POSIX only)
            import uvloop
            loop = uvloop.new_event_loop()
        except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
            loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self.server.start())
        except BaseException as e:  # noqa: BLE001 - handed to start()
            self._error = e
            self._started.set()
            loop.close()
            return
        self._started.set()
        try:
            loop.run_forever()
            loop.run_until_complete(self.server.stop())
        finally:
            loop.close()

    def listening_fd(self) -> int | None:
        """The listening socket's descriptor (a forked child closes its copy)."""
        return self.server.listening_fd()

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and self._thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(10)


async def serve_worker_http(worker) -> HttpServer:
    """One worker process: the API on its own event loop. Not ready while it drains."""
    api = Api(worker.queue, token=worker.http_token,
              not_ready=lambda: "shutting down: draining running jobs"
              if worker.stopping else None)
    return await HttpServer(api, worker.http).start()


class SupervisorHttp:
    """`processes=N`: the supervisor serves HTTP for all its children, with the
    metrics summed over them (gq.http.metrics_export's multi-process mode)."""

    def __init__(self, worker, not_ready: Callable[[], str | None]):
        metrics_export.enable_multiprocess(worker.queue.path)   # before any fork
        api = Api(worker.queue, token=worker.http_token, not_ready=not_ready)
        try:
            self._thread = HttpThread(api, worker.http).start()
        except BaseException:
            metrics_export.disable_multiprocess()
            raise

    def after_fork_in_child(self) -> None:
        """In a new child: drop the copy of the listening socket, count in files
        of its own."""
        fd = self._thread.listening_fd()
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
        metrics_export.reset_after_fork()

    def child_exited(self, pid: int) -> None:
        metrics_export.child_exited(pid)

    def stop(self) -> None:
        self._thread.stop()
        metrics_export.disable_multiprocess()
