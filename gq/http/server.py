"""The HTTP surface (`gq worker --http HOST:PORT`): API, metrics, probes, dashboard.

aiohttp, served on the worker's own event loop (one worker process), or on a
thread of the supervisor with `processes=N` (the children do the work; the
supervisor answers for all of them). Handlers never block the loop on the store:
submits go through `Queue.asubmit` (group commit with concurrent callers); every
other store call runs on a thread (a PostgreSQL read is a network round trip).

Errors are JSON, {"error": <gq error class>, "message": <its message>}, with the
status of the table below. `/v1/*` wants `Authorization: Bearer <token>` when a
token is set (compared in constant time); `/`, `/metrics`, `/healthz` and
`/readyz` are open, as probes and scrapers expect.
"""

from __future__ import annotations

import asyncio
import hmac
import importlib.resources
import logging
import os
import signal
import socket
import threading
from datetime import datetime
from typing import Callable

import orjson
from aiohttp import web

from gq import errors as E
from gq.jobs import State

log = logging.getLogger("gq.http")

DEFAULT_HOST = "127.0.0.1"
BODY_MARGIN = 64 * 1024          # room for the submit fields around the payload
LIST_LIMIT_MAX = 1000
FAILURE_SCAN = 1000              # rows read per state when gathering recent failures
BLOCKED_DEPTH_MAX = 50           # dependency hops followed to find what blocks a job

# gq error -> HTTP status; the first matching class wins (subclasses first).
STATUS = (
    (E.PayloadTooLarge, 413),
    (E.ValidationError, 400),
    (E.QueueFull, 429),
    (E.JobNotFound, 404),
    (E.InvalidTransition, 409),          # NotRetriable is one
    (E.StorageFull, 507),
    (E.PersistenceError, 503),           # StoreUnavailable is one
    (E.DataDirError, 503),
    (E.RecordCorrupted, 500),
    (E.GQError, 503),                    # e.g. the queue is closed
)
SUBMIT_FIELDS = {"type", "payload", "priority", "delay", "run_at", "depends_on", "key", "id",
                 "max_attempts", "timeout", "lifetime"}


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


def _json(data, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status,
                        content_type="application/json")


def error_response(exc: Exception) -> web.Response:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return _json({"error": type(exc).__name__, "message": str(exc)}, status)
    raise exc


def _bad_request(message: str) -> web.Response:
    return _json({"error": "ValidationError", "message": message}, 400)


class Api:
    """The endpoints, over one gq.Queue."""

    def __init__(self, queue, *, token: str | None = None,
                 not_ready: Callable[[], str | None] | None = None):
        self.queue = queue
        self._token = token.encode() if token else None
        self._not_ready = not_ready
        # the payload's own limit is checked exactly by submit; this bounds what is
        # read at all (pretty-printed JSON can be larger than its compact form)
        self.body_limit = queue.config.max_payload_bytes * 2 + BODY_MARGIN

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.body_limit,
                              middlewares=[self._errors_and_auth])
        app.router.add_get("/", self.dashboard)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_post("/v1/jobs", self.submit)
        app.router.add_get("/v1/jobs", self.list_jobs)
        app.router.add_get("/v1/jobs/{id}", self.get_job)
        app.router.add_post("/v1/jobs/{id}/cancel", self.cancel)
        app.router.add_post("/v1/jobs/{id}/retry", self.retry)
        app.router.add_get("/v1/stats", self.stats)
        app.router.add_get("/v1/failures", self.failures)
        app.router.add_get("/v1/blocked", self.blocked)
        app.router.add_post("/v1/types/{type}/pause", self.pause)
        app.router.add_post("/v1/types/{type}/resume", self.resume)
        return app

    @web.middleware
    async def _errors_and_auth(self, request: web.Request, handler):
        if self._token is not None and request.path.startswith("/v1/"):
            given = request.headers.get("Authorization", "")
            scheme, _, credential = given.partition(" ")
            if scheme.lower() != "bearer" or \
                    not hmac.compare_digest(credential.strip().encode(), self._token):
                response = _json({"error": "Unauthorized",
                                  "message": "this endpoint wants 'Authorization: Bearer "
                                  "<token>' with the worker's --token / GQ_TOKEN"}, 401)
                response.headers["WWW-Authenticate"] = 'Bearer realm="gq"'
                return response
        try:
            return await handler(request)
        except E.GQError as exc:
            return error_response(exc)
        except web.HTTPRequestEntityTooLarge:
            return _json({"error": "PayloadTooLarge",
                          "message": f"request body is over the limit of "
                          f"{self.body_limit:,} bytes (twice the queue's "
                          "max_payload_bytes, plus room for the other fields)"}, 413)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _json({"error": exc.reason.replace(" ", ""), "message": exc.text or
                          exc.reason}, exc.status)
        except Exception as exc:   # a bug: say so in JSON, keep the traceback in the log
            log.exception("HTTP %s %s failed", request.method, request.path)
            return _json({"error": "InternalError",
                          "message": f"{type(exc).__name__}: {exc}"}, 500)

    # -- probes and metrics ----------------------------------------------------------
    async def healthz(self, request):
        return _json({"status": "ok"})

    async def readyz(self, request):
        reason = self._not_ready() if self._not_ready else None
        if reason is None:
            ready, why = await asyncio.to_thread(self.queue.readiness)
            if not ready:
                reason = why
        if reason is not None:
            return _json({"status": "not ready", "reason": reason}, 503)
        return _json({"status": "ready"})

    async def metrics(self, request):
        from gq.http import metrics_export

        body, content_type = await asyncio.to_thread(metrics_export.exposition,
                                                     self.queue.store)
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def dashboard(self, request):
        page = importlib.resources.files("gq.http").joinpath("dashboard.html").read_bytes()
        return web.Response(body=page, content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-store"})

    # -- jobs -------------------------------------------------------------------------
    async def submit(self, request):
        body = await request.read()
        try:
            job = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            return _bad_request(f"the request body is not valid JSON: {e}")
        if not isinstance(job, dict):
            return _bad_request("the request body must be a JSON object with at least "
                                "a 'type'")
        unknown = set(job) - SUBMIT_FIELDS
        if unknown:
            return _bad_request(f"unknown field(s) {', '.join(sorted(unknown))}; known: "
                                f"{', '.join(sorted(SUBMIT_FIELDS))}")
        if "type" not in job:
            return _bad_request("the job has no 'type'")
        if isinstance(job.get("run_at"), str):
            job["run_at"] = _parse_time(job["run_at"])
        job_id = await self.queue.asubmit(**job)
        return _json({"id": job_id}, 201)

    async def get_job(self, request):
        info = await asyncio.to_thread(self.queue.get, request.match_info["id"])
        return _json(info.as_dict())

    async def list_jobs(self, request):
        state = request.query.get("state") or None
        job_type = request.query.get("type") or None
        limit = _limit(request, 100)
        jobs = await asyncio.to_thread(self.queue.list, state=state, type=job_type,
                                       limit=limit)
        return _json([j.as_dict() for j in jobs])

    async def cancel(self, request):
        info = await asyncio.to_thread(self.queue.cancel, request.match_info["id"])
        return _json(info.as_dict())

    async def retry(self, request):
        info = await asyncio.to_thread(self.queue.retry, request.match_info["id"])
        return _json(info.as_dict())

    async def stats(self, request):
        return _json(await asyncio.to_thread(self.queue.stats))

    async def pause(self, request):
        job_type = request.match_info["type"]
        await asyncio.to_thread(self.queue.pause, job_type)
        return _json({"paused": sorted(await asyncio.to_thread(self.queue.paused))})

    async def resume(self, request):
        job_type = request.match_info["type"]
        await asyncio.to_thread(self.queue.resume, job_type)
        return _json({"paused": sorted(await asyncio.to_thread(self.queue.paused))})

    async def failures(self, request):
        """The latest failed attempts: failed, dead_letter, and scheduled jobs
        waiting to retry, newest first (from the first FAILURE_SCAN of each)."""
        limit = _limit(request, 50)
        return _json(await asyncio.to_thread(self._failures, limit))

    def _failures(self, limit: int) -> list:
        found = []
        for state in ("dead_letter", "failed", "scheduled"):
            found += [j for j in self.queue.list(state=state, limit=FAILURE_SCAN)
                      if j.error is not None]
        found.sort(key=lambda j: j.updated_at, reverse=True)
        return [_summary(j) for j in found[:limit]]

    async def blocked(self, request):
        """Pending jobs and what they wait on: each unfinished dependency, and the
        chain down to the job that holds them all up (the blocker). A blocker that
        failed, was cancelled or is in dead_letter will never complete: the chain
        is not satisfiable until an operator acts."""
        limit = _limit(request, 50)
        return _json(await asyncio.to_thread(self._blocked, limit))

    def _blocked(self, limit: int) -> list:
        out = []
        for job in self.queue.list(state="pending", limit=limit):
            waiting, chain = [], [job.id]
            for dep_id in job.depends_on:
                dep = self._lookup(dep_id)
                if dep is None or dep.state is not State.COMPLETED:
                    waiting.append({"id": dep_id, "type": dep and dep.type,
                                    "state": dep.state.value if dep else "missing"})
            blocker = self._follow(job, chain)
            entry = _summary(job)
            marked = self.queue.waits(job.id)      # the store's own blocked marking
            entry.update(blocked=marked["blocked"], blocked_by=marked["blocked_by"])
            entry.update(waiting_on=waiting, chain=chain,
                         blocker=_summary(blocker) if blocker else None,
                         satisfiable=blocker is None or not (blocker.state.terminal or
                                                             blocker.state is State.DEAD_LETTER))
            out.append(entry)
        return out

    def _lookup(self, job_id):
        try:
            return self.queue.get(job_id)
        except E.JobNotFound:
            return None

    def _follow(self, job, chain: list):
        """Walk the first unfinished dependency until a job that is not pending."""
        seen = {job.id}
        while job.state is State.PENDING and len(chain) <= BLOCKED_DEPTH_MAX:
            nxt = None
            for dep_id in job.depends_on:
                dep = self._lookup(dep_id)
                if dep is not None and dep.state is not State.COMPLETED:
                    nxt = dep
                    break
            if nxt is None or nxt.id in seen:
                return None
            seen.add(nxt.id)
            chain.append(nxt.id)
            job = nxt
        return job if job.state is not State.PENDING else None


def _limit(request, default: int) -> int:
    text = request.query.get("limit")
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise E.ValidationError(f"limit {text!r} is not an integer") from None
    if not 0 <= value <= LIST_LIMIT_MAX:
        raise E.ValidationError(f"limit {value} is out of range 0..{LIST_LIMIT_MAX}")
    return value


def _parse_time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise E.ValidationError(f"run_at {text!r} is neither epoch seconds nor an ISO 8601 "
                                "time with a zone (e.g. 2030-01-01T09:00:00+00:00)") from None


def _summary(job) -> dict:
    """A job without its payload and result, for lists on the dashboard."""
    d = job.as_dict()
    d.pop("payload", None)
    d.pop("result", None)
    if d.get("error"):
        d["error"] = {k: v for k, v in d["error"].items() if k != "traceback"}
    return d


# -- serving -------------------------------------------------------------------------


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
        try:
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
        from gq.http import metrics_export

        self._export = metrics_export
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
        self._export.reset_after_fork()

    def child_exited(self, pid: int) -> None:
        self._export.child_exited(pid)

    def stop(self) -> None:
        self._thread.stop()
        self._export.disable_multiprocess()
