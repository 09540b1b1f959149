"""The HTTP API (`gq worker --http HOST:PORT`): routes and handlers over one
gq.Queue, for the JSON API, metrics, probes and the dashboard (served by
gq/http/server.py).

Handlers never block the loop on the store: submits go through `Queue.asubmit`
(group commit with concurrent callers); every other store call runs on a thread
(a PostgreSQL read is a network round trip).

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
from typing import Callable

import orjson
from aiohttp import web

from gq import errors as E
from gq import results
from gq.http import metrics_export
from gq.jobs import State
from gq.store.rules import ENDED_STATES
from gq.submission import SUBMIT_FIELDS, parse_time

log = logging.getLogger("gq.http")

BODY_MARGIN = 64 * 1024          # room for the submit fields around the payload
LIST_LIMIT_MAX = 1000
RESULT_WAIT_MAX = 60.0           # a result request waits at most this long (then 202)
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
        app.router.add_get("/v1/jobs/{id}/result", self.result)
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
            job["run_at"] = parse_time(job["run_at"], "run_at")
        job_id = await self.queue.asubmit(**job)
        return _json({"id": job_id}, 201)

    async def get_job(self, request):
        info = await asyncio.to_thread(self.queue.get, request.match_info["id"])
        return _json(info.as_dict())

    async def result(self, request):
        """Wait up to ?timeout= seconds (default and most RESULT_WAIT_MAX) for the
        job to end: 200 with the job once it ended (its state says how: result or
        error), 202 with it while it has not (ask again)."""
        info = await results.await_ended(self.queue.store, request.match_info["id"],
                                         _timeout(request))
        return _json(info.as_dict(), 200 if info.state.code in ENDED_STATES else 202)

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


def _timeout(request) -> float:
    text = request.query.get("timeout")
    if text is None:
        return RESULT_WAIT_MAX
    try:
        value = float(text)
    except ValueError:
        raise E.ValidationError(f"timeout {text!r} is not a number of seconds") from None
    if not 0 <= value <= RESULT_WAIT_MAX:
        raise E.ValidationError(f"timeout {value:g} is out of range 0..{RESULT_WAIT_MAX:g} "
                                "seconds; ask again for a longer wait")
    return value


def _summary(job) -> dict:
    """A job without its payload and result, for lists on the dashboard."""
    d = job.as_dict()
    d.pop("payload", None)
    d.pop("result", None)
    if d.get("error"):
        d["error"] = {k: v for k, v in d["error"].items() if k != "traceback"}
    return d
