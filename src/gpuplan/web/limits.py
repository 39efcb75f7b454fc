"""What keeps the web server answering when clients are hostile: bounded bodies, bounded
concurrency, a time budget for CPU-heavy work, errors that close the connection cleanly, and
uvicorn settings with timeouts.

- `Guard` (ASGI middleware): refuses a body over its route's cap before reading it (413), counts
  the bytes of a body sent without Content-Length, gives up on a body that stalls (408), lets
  at most UPLOAD_SLOTS uploads in at once (the rest wait QUEUE_WAIT_S, then 503) and at most
  API_SLOTS API requests compute at once; turns any exception into one 500 JSON answer; and
  sends `Connection: close` with every 400/408/413/5xx so a client never sees a dropped
  keep-alive connection.
- API computations (plans, comparisons, builds, charts) run in the server's thread pool under
  an `inputs.time_budget` of API_BUDGET_S that the planner checks between simulations and
  candidates; past it the request gets 503 and its thread is free again.
- `run_heavy`: CPU-heavy work (an uploaded measurement file, a model header) runs in a worker
  process, at most WORK_SLOTS at a time, with an `inputs.Budget` it checks and a memory cap;
  past the budget the process is killed and the client gets 503. The server's event loop keeps
  its own core and GIL, so normal requests are answered meanwhile, and a job's memory goes back
  to the system when its process ends.
- `uvicorn_settings()`: header read timeout (`GuardedH11`), keep-alive and graceful-shutdown
  timeouts, a connection limit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import weakref

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..errors import InputError
from ..inputs import Budget, OverBudget

log = logging.getLogger("gpuplan.web")
MiB = 2**20

# bodies: a config.json or measurement file is kilobytes; a GGUF header with a 262k-token
# vocabulary is ~7 MB (the inspect route's own cap, app.MAX_UPLOAD_BYTES, is 64 MiB)
# (/api/validate: a measurement file of at most 16 MiB and the model files its rows name)
BODY_CAPS = {"/api/validate": 65 * MiB, "/api/model/inspect": 65 * MiB}
DEFAULT_BODY_CAP = 1 * MiB
BODY_IDLE_S = 15.0  # a body that sends nothing for this long is given up (408)
HEADER_TIMEOUT_S = 10.0  # request line and headers must arrive within this
UPLOAD_SLOTS = 4  # uploads received and processed at once: memory is bounded by 4 bodies
API_SLOTS = 8  # other API requests computing at once (the planner is CPU-bound)
QUEUE_WAIT_S = 5.0  # how long a request waits for a slot before 503
WORK_SLOTS = 2  # CPU-heavy jobs at once (the cores of a small server)
WORK_BUDGET_S = 20.0  # computing time one upload may use
# wall time one API computation (a plan, a comparison) may use before it stops itself with 503: the
# largest legal plans (64 devices with serving targets) take ~10 s on a 2-core machine; eight
# such requests at once share the cores, hence the margin
API_BUDGET_S = 60.0
BUDGET_ENV = "GPUPLAN_API_BUDGET_S"  # `gpuplan serve --time-budget` sets it for the app (and its worker processes)
WORK_MEMORY_BYTES = 1024 * MiB  # address space of one worker process (Python + numpy need ~400 MiB)
CLOSE_STATUSES = {400, 408, 413, 500, 502, 503, 504}


def budget_from_env() -> float:
    """API_BUDGET_S, or the seconds `gpuplan serve --time-budget` put in the environment (checked there)."""
    raw = os.environ.get(BUDGET_ENV)
    if raw is None:
        return API_BUDGET_S
    from ..requests import ServeRequest

    return ServeRequest.parse("cli", time_budget=raw).time_budget


def _json_response(status: int, msg: str) -> tuple[dict, dict]:
    body = json.dumps(InputError(msg, input="request").to_dict()).encode()  # the app's error shape
    start = {"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                         (b"connection", b"close")]}
    return start, {"type": "http.response.body", "body": body}


class _BodyTooLarge(Exception):
    pass


class _BodyStalled(Exception):
    pass


class Guard:
    """The ASGI middleware described in the module docstring."""

    def __init__(self, app, body_caps: dict | None = None):
        self.app = app
        self.caps = BODY_CAPS if body_caps is None else body_caps
        self.uploads = asyncio.Semaphore(UPLOAD_SLOTS)
        self.api = asyncio.Semaphore(API_SLOTS)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        cap = self.caps.get(path.rstrip("/"), DEFAULT_BODY_CAP)
        started = False

        async def reply(status: int, msg: str):
            if not started:
                for message in _json_response(status, msg):
                    await send(message)

        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if length and (not length.isdigit() or int(length) > cap):
            return await reply(413 if length.isdigit() else 400,
                               f"request body is larger than {cap / MiB:g} MiB" if length.isdigit()
                               else "bad Content-Length header")

        received = 0
        refused: list = []  # (status, message) once the body was refused: the app's answer is replaced

        async def guarded_receive():
            nonlocal received
            try:
                message = await asyncio.wait_for(receive(), BODY_IDLE_S)
            except asyncio.TimeoutError:
                refused.append((408, f"request body stalled for {BODY_IDLE_S:g} s"))
                raise _BodyStalled from None
            received += len(message.get("body", b""))
            if received > cap:
                refused.append((413, f"request body is larger than {cap / MiB:g} MiB"))
                raise _BodyTooLarge
            return message

        async def guarded_send(message):
            nonlocal started
            if refused:  # the app answered a body error its own way (FastAPI: 400); say what it was
                if message["type"] == "http.response.start":
                    await reply(*refused[0])
                    started = True
                return
            if message["type"] == "http.response.start":
                started = True
                if message["status"] in CLOSE_STATUSES:
                    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                    message = {**message, "headers": headers + [(b"connection", b"close")]}
            await send(message)

        gate = self.uploads if scope.get("method") == "POST" else self.api if path.startswith("/api/") else None
        try:
            if gate is not None:
                try:
                    await asyncio.wait_for(gate.acquire(), QUEUE_WAIT_S)
                except asyncio.TimeoutError:
                    return await reply(503, "the server is busy; try again in a few seconds")
            try:
                await self.app(scope, guarded_receive, guarded_send)
            finally:
                if gate is not None:
                    gate.release()
        except Exception as e:  # a bug, or a refused body: answer once, keep the connection's state clean
            if refused:
                return await reply(*refused[0])
            log.exception("internal error on %s", path)
            await reply(500, f"internal error ({type(e).__name__}); this is a gpuplan bug, please report it")
            if started:
                raise


# ---------------------------------------------------------------------------- heavy work
def _child(conn, fn, args, budget_s: float, what: str, mem_bytes: int) -> None:
    """In the worker process: cap its memory, run fn, send ("ok", result) or ("err", exc)."""
    import resource

    try:
        resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))
    except (ValueError, OSError):  # not permitted here: the process boundary still frees memory
        pass
    try:
        out = ("ok", fn(*args, budget=Budget(budget_s, what)))
    except MemoryError:
        out = ("err", (OverBudget, f"{what} needs more than {mem_bytes / MiB:g} MiB of memory; "
                                   "send a smaller input", "file", None, "a smaller input"))
    except InputError as e:  # sent as plain data: an exception's keyword fields do not pickle
        out = ("err", (type(e), str(e), e.input, e.to_dict()["error"]["value"], e.accepted))
    except Exception as e:  # a bug: the parent logs it and answers 500
        import traceback

        out = ("bug", f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
    try:
        conn.send(out)
    except Exception as e:  # a result that does not pickle is a bug too
        conn.send(("bug", f"result not sendable: {type(e).__name__}: {e}"))
    conn.close()


_ctx = None


def _context():
    """forkserver: a clean process (no threads, no event loop) that has imported the web app
    once; each job is a fork of it, so starting one costs milliseconds, and its memory goes back
    to the system when it ends."""
    global _ctx
    if _ctx is None:
        import multiprocessing

        _ctx = multiprocessing.get_context("forkserver")
        _ctx.set_forkserver_preload(["gpuplan.web.warm"])
    return _ctx


def start_workers() -> None:
    """Start the fork server now (`gpuplan serve` does, before it listens): the first upload
    then does not wait the second or two its imports take."""
    _context()
    from multiprocessing import forkserver

    forkserver.ensure_running()


def _receive(conn, timeout_s: float):
    """The worker's (kind, value), or None when it sent nothing within timeout_s."""
    return conn.recv() if conn.poll(timeout_s) else None


_slots: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # per event loop


async def run_heavy(fn, *args, budget_s: float = WORK_BUDGET_S, what: str = "this request"):
    """fn(*args, budget=Budget) in a worker process, at most WORK_SLOTS at once. fn must be a
    module-level function and args plain data (they are pickled). The process is killed at
    budget_s plus a grace; a request that waited QUEUE_WAIT_S for a slot, or whose work ran out
    of time or memory, gets OverBudget (503). The server's own memory never holds the work."""
    loop = asyncio.get_running_loop()
    slots = _slots.setdefault(loop, asyncio.Semaphore(WORK_SLOTS))
    try:
        await asyncio.wait_for(slots.acquire(), QUEUE_WAIT_S)
    except asyncio.TimeoutError:
        raise OverBudget("the server is busy with other uploads; try again in a few seconds") from None
    try:
        ctx = _context()
        recv, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(send, fn, args, budget_s, what, WORK_MEMORY_BYTES), daemon=True)
        await asyncio.to_thread(proc.start)  # the first start launches the fork server (~1 s)
        send.close()
        try:
            # read in a thread with a blocking pipe: an event loop's add_reader may make the fd
            # non-blocking (uvloop does), and a result larger than the pipe's buffer then fails
            got = await asyncio.to_thread(_receive, recv, budget_s + 2.0)
        except (EOFError, OSError):
            raise OverBudget(f"{what}: the worker process stopped before it answered (out of memory?); "
                             "send a smaller input") from None
        finally:
            if proc.is_alive():
                proc.kill()  # a reader still waiting (a cancelled request) then sees EOF and ends
            await asyncio.to_thread(proc.join, 5)
            recv.close()
        if got is None:
            raise OverBudget(f"{what} needs more than its {budget_s:g} s of computing; "
                             "send fewer rows or a smaller input")
        kind, value = got
    finally:
        slots.release()
    if kind == "ok":
        return value
    if kind == "err":
        cls, msg, input_, val, accepted = value
        raise cls(msg, input=input_, value=val, accepted=accepted)
    raise RuntimeError(f"heavy work failed: {value}")


def install(app) -> None:
    """Add the Guard and the 503 answer for OverBudget to a FastAPI app."""
    from fastapi.responses import JSONResponse

    @app.exception_handler(OverBudget)
    async def _over_budget(_req, exc: OverBudget):
        return JSONResponse(exc.to_dict(), status_code=503, headers={"Retry-After": "5"})

    app.add_middleware(Guard)


# ---------------------------------------------------------------------------- uvicorn
class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol with a header read timeout: a connection that has not sent a whole
    request line and headers within HEADER_TIMEOUT_S (after connecting, or after its previous
    response) is closed. uvicorn cancels its keep-alive timer on every byte, so a client sending
    one byte at a time would otherwise hold the connection forever."""

    _header_timer = None

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(HEADER_TIMEOUT_S, self._header_timeout)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm()  # a request is in: its body has its own idle timeout (Guard)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)


def uvicorn_settings() -> dict:
    """Keyword arguments for uvicorn.run/Config that bound what a client can hold."""
    return {"http": GuardedH11, "timeout_keep_alive": 5, "timeout_graceful_shutdown": 5,
            "limit_concurrency": 256, "h11_max_incomplete_event_size": 64 * 1024, "backlog": 256}

