"""The HTTP API and the page: a thin layer over gpuplan.api.

Safety: the server never reads a path a client names. `model` must be a catalog id (paths are
refused), the api's `hardware` file argument is not exposed, and uploads live in a temp file only
while they are parsed. Bad input gives 4xx with {"error": "..."}; 500 means a bug (logged).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Optional

from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import api
from ..errors import InputError

log = logging.getLogger("gpuplan.web")
STATIC = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 64 * 2**20  # a GGUF header with a 262k-token vocabulary is ~7 MB; 64 MiB is ample
MAX_DEVICES = 64  # more devices than this in one web request is a typo or an attempt to burn CPU
CATALOG_KINDS = ("gpus", "models", "links", "host-memory", "quants", "builds")

Str = Annotated[Optional[str], Query(max_length=300)]
Context = Annotated[int, Query(ge=1, le=10_000_000)]
Users = Annotated[int, Query(ge=1, le=100_000)]


@lru_cache(maxsize=512)
def _cached_bytes(name: str, *args) -> bytes:
    """api results as JSON, by their arguments: the planner is pure and the catalog is loaded once,
    so a page reload or a shared link costs nothing. Errors are raised, never cached."""
    res = getattr(api, name)(*(list(a) if isinstance(a, tuple) else a for a in args))
    return json.dumps(res, separators=(",", ":"), allow_nan=False, default=_json_default).encode()


def _json_default(o):
    if hasattr(o, "model_dump"):
        return o.model_dump()
    if hasattr(o, "value"):
        return o.value
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def _cached(name: str, *args) -> Response:
    return Response(_cached_bytes(name, *args), media_type="application/json")


def _err(status: int, msg: str) -> JSONResponse:
    return JSONResponse({"error": msg}, status_code=status)


def _model_id(model: str) -> str:
    """A catalog id (or alias) only: the CLI also takes .gguf/config.json paths, the server must not."""
    from .. import catalog

    m = model.strip()
    if not m:
        raise InputError("model is empty; give a catalog id such as meta-llama/Meta-Llama-3-8B")
    if m.lower().endswith((".gguf", ".json")) or m.startswith(("/", ".", "~", "\\")) or ".." in m or "\\" in m:
        raise InputError(f"model '{m}': the web API takes catalog ids only, not file paths; "
                         "upload a GGUF header or config.json to /api/model/inspect instead")
    return catalog.model(m).id  # InputError with close names when unknown


def _gpus(gpus: Optional[str]) -> str:
    if not gpus or not gpus.strip():
        raise InputError("gpus is empty; give e.g. '2x rtx-3090' or 'rtx-4090,rtx-3060-12gb'")
    from ..sources.hardware import parse_hardware

    hw = parse_hardware(gpus)  # validates the spec; the api parses it again (cheap)
    if len(hw.devices) > MAX_DEVICES:
        raise InputError(f"gpus '{gpus}' names {len(hw.devices)} devices; the web API accepts up to {MAX_DEVICES}")
    return gpus


def _readable(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors():
        loc = [str(x) for x in e.get("loc", ()) if x not in ("query", "body", "path")]
        parts.append(f"{'.'.join(loc) or 'request'}: {e.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


async def _read_limited(upload: UploadFile) -> bytes:
    data = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise _TooLarge()
    return data


class _TooLarge(Exception):
    pass


class _BodyLimit:
    """Refuse a request whose Content-Length is over the upload limit before reading it (plain ASGI,
    so it costs nothing on GET requests)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            length = dict(scope.get("headers") or []).get(b"content-length", b"")
            if length.isdigit() and int(length) > MAX_UPLOAD_BYTES + 2**20:
                resp = _err(413, f"request body is larger than {MAX_UPLOAD_BYTES // 2**20} MiB")
                return await resp(scope, receive, send)
        await self.app(scope, receive, send)


def create_app() -> FastAPI:
    app = FastAPI(title="gpuplan", version="0.1.0", docs_url=None, redoc_url=None,
                  description="Will this LLM fit, how should it be split, how fast will it run, which flags start it.")

    @app.exception_handler(InputError)
    async def _input_error(_req: Request, exc: InputError):
        return _err(422, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_req: Request, exc: RequestValidationError):
        return _err(422, _readable(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_req: Request, exc: StarletteHTTPException):
        return _err(exc.status_code, str(exc.detail))

    @app.exception_handler(_TooLarge)
    async def _too_large(_req: Request, _exc: _TooLarge):
        return _err(413, f"upload is larger than {MAX_UPLOAD_BYTES // 2**20} MiB; "
                         "send only the start of a GGUF file (its header), or a config.json")

    @app.exception_handler(Exception)
    async def _bug(req: Request, exc: Exception):
        log.exception("internal error on %s", req.url.path)
        return _err(500, f"internal error ({type(exc).__name__}); this is a gpuplan bug, please report it")

    app.add_middleware(_BodyLimit)

    # ------------------------------------------------------------ answers
    @app.get("/api/fit", summary="Memory per device and verdict for the default split")
    def fit(model: str = Query(max_length=300), gpus: Str = None, quant: Str = None, context: Context = 8192,
            users: Users = 1, engine: Str = None, kv: Annotated[str, Query(max_length=20)] = "f16",
            link: Str = None, ram: Str = None):
        return _cached("fit", _model_id(model), _gpus(gpus), quant, context, users, engine, kv, link, ram)

    @app.get("/api/plan", summary="The best plan, its alternatives, explanation and launch commands")
    def plan(model: str = Query(max_length=300), gpus: Str = None, quant: Str = None, context: Context = 8192,
             users: Users = 1, engine: Str = None, goal: Annotated[str, Query(max_length=20)] = "latency",
             min_user_tok_s: Annotated[float, Query(ge=0, le=1e6)] = 0.0, link: Str = None, ram: Str = None,
             nodes: Annotated[int, Query(ge=1, le=64)] = 1,
             prompt_tokens: Annotated[int, Query(ge=1, le=10_000_000)] = 512,
             output_tokens: Annotated[int, Query(ge=1, le=10_000_000)] = 256,
             ram_gib: Annotated[Optional[float], Query(ge=1, le=65536)] = None):
        return _cached("plan", _model_id(model), _gpus(gpus), quant, context, users, engine, goal, min_user_tok_s, link,
                        ram, nodes, None, prompt_tokens, output_tokens, ram_gib)

    @app.get("/api/compare", summary="Several hardware setups side by side")
    def compare(setup: Annotated[list[str], Query(max_length=12)], model: Str = None, quant: Str = None,
                context: Context = 8192, users: Users = 1, scenario: Str = None):
        setups = [_gpus(s) for s in setup]
        return _cached("compare", _model_id(model) if model else None, tuple(setups), quant, context, users, scenario)

    @app.get("/api/builds", summary="Catalog builds ranked for a model: speed against price")
    def builds(model: str = Query(max_length=300), quant: Str = None,
               budget: Annotated[Optional[float], Query(gt=0, le=1e8)] = None, users: Users = 1,
               context: Context = 8192, electricity: Annotated[float, Query(ge=0, le=100)] = 0.15):
        return _cached("builds", _model_id(model), quant, budget, users, context, electricity)

    @app.get("/api/scaling", summary="Chart data: speed against GPU count, context and users")
    def scaling(model: str = Query(max_length=300), gpu: str = Query(max_length=100), quant: Str = None,
                context: Context = 8192, users: Users = 1, max_gpus: Annotated[int, Query(ge=1, le=16)] = 8,
                link: Str = None):
        return _cached("scaling", _model_id(model), gpu, quant, context, users, max_gpus, link)

    @app.get("/api/catalog/{kind}", summary="List a catalog: " + ", ".join(CATALOG_KINDS))
    def catalog_list(kind: str, search: Str = None):
        if kind not in CATALOG_KINDS:
            raise InputError(f"unknown catalog '{kind[:40]}'; accepted: {', '.join(CATALOG_KINDS)}")
        return api.catalog_list(kind, search)

    # ------------------------------------------------------------ uploads
    @app.post("/api/validate", summary="Check predictions against an uploaded measurement CSV/JSON file")
    async def validate(file: UploadFile = File(...)):
        data = await _read_limited(file)
        name = Path(file.filename or "upload.csv").name
        suffix = Path(name).suffix.lower()
        if suffix not in (".csv", ".json", ".jsonl", ".md"):
            raise InputError(f"upload '{name}': expected a measurement .csv/.json file or llama-bench -o json/jsonl/csv/md output")
        fd, tmp = tempfile.mkstemp(suffix=suffix)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            from starlette.concurrency import run_in_threadpool

            try:
                res = await run_in_threadpool(api.validate_file, [tmp])
            except InputError as e:
                raise InputError(_scrub(str(e), tmp, name)) from None
        finally:
            os.unlink(tmp)
        return _scrub(res, tmp, name)

    @app.post("/api/model/inspect", summary="Architecture and sizes from a GGUF header (a prefix will do) "
                                              "or a config.json; with gpus, also the fit")
    async def inspect_model(file: UploadFile = File(...), quant: Str = None, gpus: Str = None,
                            context: Context = 8192, users: Users = 1, kv: Annotated[str, Query(max_length=20)] = "f16",
                            engine: Str = None, link: Str = None, ram: Str = None):
        from starlette.concurrency import run_in_threadpool

        from .inspect import describe, load_upload

        data = await _read_limited(file)
        name = Path(file.filename or "upload").name
        model = await run_in_threadpool(load_upload, data, name, quant)
        out = describe(model)
        if gpus:
            out["fit"] = await run_in_threadpool(_fit_loaded, model, _gpus(gpus), context, users, kv, engine,
                                                 link, ram)
        return out

    # ------------------------------------------------------------ page and docs
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/docs", include_in_schema=False)
    def docs():  # swagger-ui served from the package: the page works with no internet
        return get_swagger_ui_html(openapi_url="/openapi.json", title="gpuplan API",
                                   swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
                                   swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
                                   swagger_favicon_url="/static/vendor/swagger-ui/favicon-32x32.png")

    return app


def _fit_loaded(model, gpus, context, users, kv, engine, link, ram) -> dict:
    """api.fit for an uploaded model (api.fit takes a name; this takes the LoadedModel)."""
    from ..commands.common import check_range, default_engine, resolve_hardware
    from ..commands.fit import default_plan, fit_result
    from ..perf.memory import kv_type_bytes
    from ..types import Workload

    check_range("context", context, 1, 10_000_000)
    kv_type_bytes(kv)
    hw = resolve_hardware(gpus, None, link, ram)
    wl = Workload(context=context, users=users)
    return fit_result(model, hw, default_plan(model, hw, default_engine(model, engine), kv.lower(), wl), wl)


def _scrub(obj, tmp: str, name: str):
    """Replace the temp path in any message with the uploaded file's name."""
    if isinstance(obj, str):
        return obj.replace(tmp, name)
    if isinstance(obj, list):
        return [_scrub(x, tmp, name) for x in obj]
    if isinstance(obj, dict):
        return {k: _scrub(v, tmp, name) for k, v in obj.items()}
    return obj


app = create_app()  # for `uvicorn gpuplan.web.app:app`
