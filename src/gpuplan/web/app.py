"""The HTTP API and the page: a thin layer over gpuplan.api.

Safety: the server never reads a path a client names. `model` must be a catalog id (paths are
refused), the hardware file of the command line is not a web parameter, and uploads live in a
temp file only while they are parsed, in a worker process with a time and memory budget
(web/limits.py). Bad input gives 4xx with {"error": {"input", "value",
"message", "accepted"}} (the CLI's --json error); 500 means a bug (logged).

Each answer route takes its request model as its query (built once here, validated against the
ranges in gpuplan.requests) and declares its result model, so /openapi.json and /docs show both.
"""

from __future__ import annotations

import asyncio
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
from ..inputs import time_budget
from ..requests import BuildsRequest, CompareRequest, FitRequest, PlanRequest, ScalingRequest
from ..results import BuildsResult, CompareResult, ErrorResult, FitResult, PlanResult, ScalingResult
from . import limits

log = logging.getLogger("gpuplan.web")
STATIC = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 64 * 2**20  # a GGUF header with a 262k-token vocabulary is ~7 MB; 64 MiB is ample
VALIDATE_MAX_BYTES = 16 * 2**20  # the published measurement sets are ~200 KB each
VALIDATE_MAX_ROWS = 50_000  # they have ~900 rows; every row is a prediction
MAX_MODEL_UPLOADS = 4  # model files sent with one measurement file
MAX_DEVICES = 64  # more devices than this in one web request is a typo or an attempt to burn CPU
MAX_NODES = 64
MAX_SETUPS = 12
CATALOG_KINDS = ("gpus", "models", "links", "host-memory", "quants", "builds")

Str = Annotated[Optional[str], Query(max_length=300)]
Context = Annotated[int, Query(ge=2, le=10_000_000)]  # the upload route's own query (a multipart form)
Users = Annotated[int, Query(ge=1, le=100_000)]


@lru_cache(maxsize=512)
def _cached_bytes(name: str, req, given: frozenset) -> bytes:
    """api results as JSON, by their (frozen, hashable) request and which of its fields the client
    gave (an answer says which values it assumed): the planner is pure and the catalog is loaded
    once, so a page reload or a shared link costs nothing. Errors are raised, never cached. The
    work runs under limits.API_BUDGET_S of computing (503 past it, the planner stops itself)."""
    with time_budget(limits.API_BUDGET_S, f"this {name} request",
                     "ask for fewer devices or setups, a shorter context or a smaller load"):
        return getattr(api, name)(req).model_dump_json().encode()


def _cached(name: str, req) -> Response:
    return Response(_cached_bytes(name, req, frozenset(req.model_fields_set)), media_type="application/json")


def _err(status: int, msg: str, **facts) -> JSONResponse:
    return JSONResponse(InputError(msg, **facts).to_dict(), status_code=status)


def query_model(cls):
    """The web edge's query for a request: the same fields and ranges, without the fields that
    name files on the server (the hardware file, a request trace)."""
    from pydantic import ConfigDict, create_model

    fields = {k: (v.annotation, v) for k, v in cls.model_fields.items() if k not in ("hardware", "trace")}
    return create_model(cls.__name__.replace("Request", "Query"), __doc__=cls.__doc__,
                        __config__=ConfigDict(extra="forbid", frozen=True), **fields)


FitQuery, PlanQuery, ScalingQuery, CompareQuery, BuildsQuery = (
    query_model(c) for c in (FitRequest, PlanRequest, ScalingRequest, CompareRequest, BuildsRequest))
QUERIES = {FitQuery: FitRequest, PlanQuery: PlanRequest, ScalingQuery: ScalingRequest,
           CompareQuery: CompareRequest, BuildsQuery: BuildsRequest}
ROUTE_REQUEST = {"/api/fit": FitRequest, "/api/plan": PlanRequest, "/api/scaling": ScalingRequest,
                 "/api/compare": CompareRequest, "/api/builds": BuildsRequest, "/api/model/inspect": FitRequest}


def _request(q, **override):
    """The api request from the validated query (only the fields the client gave count as given)."""
    values = q.model_dump(exclude_unset=True) | override
    return QUERIES[type(q)].parse("web", **values)


def _model_id(model: str) -> str:
    """A catalog id (or alias) only: the CLI also takes .gguf/config.json paths, the server must not.
    The name is kept as the client gave it (an Instruct alias stays in the launch commands)."""
    from .. import catalog

    m = model.strip()
    if not m:
        raise InputError("model is empty; give a catalog id such as meta-llama/Meta-Llama-3-8B", input="model",
                         accepted="a catalog id")
    if m.lower().endswith((".gguf", ".json")) or m.startswith(("/", ".", "~", "\\")) or ".." in m or "\\" in m:
        raise InputError(f"model '{m}': the web API takes catalog ids only, not file paths; "
                         "upload a GGUF header or config.json to /api/model/inspect instead", input="model",
                         value=m, accepted="a catalog id (see /api/catalog/models)")
    catalog.model(m)  # InputError with close names when unknown
    return m


def _gpus(gpus: Optional[str]) -> str:
    """The web always names its hardware (it must not plan for the server's own machine)."""
    if not gpus or not gpus.strip():
        raise InputError("gpus is empty; give e.g. '2x rtx-3090' or 'rtx-4090,rtx-3060-12gb'", input="gpus",
                         accepted="a hardware spec such as 2x rtx-3090")
    from ..sources.hardware import parse_hardware

    hw = parse_hardware(gpus)  # validates the spec; the api parses it again (cheap)
    if len(hw.devices) > MAX_DEVICES:
        raise InputError(f"gpus '{gpus}' names {len(hw.devices)} devices; the web API accepts up to {MAX_DEVICES}",
                         input="gpus", value=gpus, accepted=f"up to {MAX_DEVICES} devices")
    return gpus


def _readable(exc: RequestValidationError, path: str) -> InputError:
    from ..requests import input_error

    cls = ROUTE_REQUEST.get(path, PlanRequest)
    return input_error(cls, list(exc.errors()) or [{"msg": "invalid request"}], "web")


def _copy_limited(upload: UploadFile, path: str, cap: int, hint: str) -> None:
    """Stream the upload (spooled by the form parser) into a file, 1 MiB at a time, refusing
    more than cap bytes: the worker process reads it from there."""
    upload.file.seek(0)
    total = 0
    with open(path, "wb") as f:
        while chunk := upload.file.read(2**20):
            total += len(chunk)
            if total > cap:
                raise _TooLarge(cap, hint)
            f.write(chunk)


async def _saved(upload: UploadFile, suffix: str, cap: int, hint: str) -> str:
    fd, tmp = tempfile.mkstemp(suffix=suffix)
    os.close(fd)
    try:
        await asyncio.to_thread(_copy_limited, upload, tmp, cap, hint)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def _validate_job(tmp: str, uploads: tuple = (), budget=None) -> dict:
    """In a worker process. Rows name catalog models, or the model files uploaded with them
    (uploads: (file name, temp path) pairs): a client's file never makes the server open a path."""
    models = {name: _upload_loader(path, name) for name, path in uploads}
    return api.validate_file([tmp], allow_model_paths=False, budget=budget, models=models,
                             max_rows=VALIDATE_MAX_ROWS, max_bytes=VALIDATE_MAX_BYTES)


def _upload_loader(path: str, name: str):
    """function(quant) -> LoadedModel for an uploaded GGUF header or config.json, read once."""
    from ..inputs import read_bytes
    from .inspect import load_upload

    data: list = []
    loaded: dict = {}  # quant -> LoadedModel, or the InputError it gave (rows share one file)

    def load(quant: str):
        if quant not in loaded:
            try:
                if not data:
                    data.append(read_bytes(path, f"upload '{name}'", MAX_UPLOAD_BYTES))
                # a GGUF row's quant must be the file's own, as on the CLI (resolve_model)
                loaded[quant] = load_upload(data[0], name, quant or None)
            except InputError as e:
                loaded[quant] = e
        if isinstance(loaded[quant], InputError):
            raise loaded[quant]
        return loaded[quant]

    return load


def _inspect_job(tmp: str, name: str, quant, req, budget=None) -> dict:
    """In a worker process: the model from the uploaded header, and its fit when a FitRequest
    (gpus given) comes with it."""
    from ..inputs import read_bytes
    from .inspect import describe, load_upload

    model = load_upload(read_bytes(tmp, f"upload '{name}'", MAX_UPLOAD_BYTES), name, quant)
    out = describe(model)
    if req is not None:
        budget.check()
        out["fit"] = _fit_loaded(model, req).model_dump(mode="json")
    return out


class _TooLarge(Exception):
    def __init__(self, cap: int, hint: str):
        super().__init__(f"upload is larger than {cap / 2**20:g} MiB; {hint}")


def create_app() -> FastAPI:
    limits.API_BUDGET_S = limits.budget_from_env()  # `gpuplan serve --time-budget`
    app = FastAPI(title="gpuplan", version="0.1.0", docs_url=None, redoc_url=None,
                  description="Will this LLM fit, how should it be split, how fast will it run, which flags start it.")

    @app.exception_handler(InputError)
    async def _input_error(_req: Request, exc: InputError):
        return JSONResponse(exc.to_dict(), status_code=422)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(req: Request, exc: RequestValidationError):
        return JSONResponse(_readable(exc, req.url.path).to_dict(), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_req: Request, exc: StarletteHTTPException):
        return _err(exc.status_code, str(exc.detail))

    @app.exception_handler(_TooLarge)
    async def _too_large(_req: Request, exc: _TooLarge):
        return _err(413, str(exc), input="file", accepted="a smaller upload")

    @app.exception_handler(Exception)
    async def _bug(req: Request, exc: Exception):
        log.exception("internal error on %s", req.url.path)
        return _err(500, f"internal error ({type(exc).__name__}); this is a gpuplan bug, please report it")

    limits.install(app)

    # ------------------------------------------------------------ answers
    errors = {422: {"model": ErrorResult, "description": "a bad input: which one, and what is accepted"}}

    @app.get("/api/fit", summary="Memory per device and verdict for the default split", response_model=FitResult,
             responses=errors)
    def fit(q: Annotated[FitQuery, Query()]):
        return _cached("fit", _request(q, model=_model_id(q.model), gpus=_gpus(q.gpus)))

    @app.get("/api/plan", summary="The best plan, its alternatives, assumptions, explanation and launch commands",
             response_model=PlanResult, responses=errors)
    def plan(q: Annotated[PlanQuery, Query()]):
        if q.nodes > MAX_NODES:
            raise InputError(f"nodes {q.nodes} is out of range; the web API accepts 1 to {MAX_NODES}", input="nodes",
                             value=q.nodes, accepted=f"1 to {MAX_NODES}")
        return _cached("plan", _request(q, model=_model_id(q.model), gpus=_gpus(q.gpus)))

    @app.get("/api/compare", summary="Several hardware setups side by side", response_model=CompareResult,
             responses=errors)
    def compare(q: Annotated[CompareQuery, Query()]):
        if len(q.setup) > MAX_SETUPS:
            raise InputError(f"{len(q.setup)} setups; the web API accepts up to {MAX_SETUPS}", input="setup",
                             accepted=f"up to {MAX_SETUPS} setups")
        over = {"setup": tuple(_gpus(s) for s in q.setup)}
        if q.model:
            over["model"] = _model_id(q.model)
        return _cached("compare", _request(q, **over))

    @app.get("/api/builds", summary="Catalog builds ranked for a model: speed against price",
             response_model=BuildsResult, responses=errors)
    def builds(q: Annotated[BuildsQuery, Query()]):
        return _cached("builds", _request(q, model=_model_id(q.model)))

    @app.get("/api/scaling", summary="Chart data for the recommended plan: speed against GPU count, context, users",
             response_model=ScalingResult, responses=errors)
    def scaling(q: Annotated[ScalingQuery, Query()]):
        return _cached("scaling", _request(q, model=_model_id(q.model), gpus=_gpus(q.gpus)))

    @app.get("/api/catalog/{kind}", summary="List a catalog: " + ", ".join(CATALOG_KINDS))
    def catalog_list(kind: str, search: Str = None):
        if kind not in CATALOG_KINDS:
            raise InputError(f"unknown catalog '{kind[:40]}'; accepted: {', '.join(CATALOG_KINDS)}")
        return api.catalog_list(kind, search)

    # ------------------------------------------------------------ uploads
    @app.post("/api/validate", summary="Check predictions against an uploaded measurement CSV/JSON file; rows may"
                                       " name model files (GGUF header or config.json) sent with it")
    async def validate(file: UploadFile = File(...), models: Optional[list[UploadFile]] = File(None)):
        name = Path(file.filename or "upload.csv").name[:200]
        suffix = Path(name).suffix.lower()
        if suffix not in (".csv", ".json", ".jsonl", ".md"):
            raise InputError(f"upload '{name}': expected a measurement .csv/.json file or llama-bench "
                             "-o json/jsonl/csv/md output", input="file", value=name,
                             accepted=".csv, .json, .jsonl or .md")
        models = models or []
        names = [Path(m.filename or "").name[:200] for m in models]
        if len(models) > MAX_MODEL_UPLOADS:
            raise InputError(f"{len(models)} model files; accepted: at most {MAX_MODEL_UPLOADS}", input="models",
                             value=len(models), accepted=f"at most {MAX_MODEL_UPLOADS} model files")
        bad = next((n for n in names if not n.lower().endswith((".gguf", ".json"))), None)
        if bad is not None or len(set(names)) != len(names):
            raise InputError(f"model file '{bad}' is not a .gguf or .json file name" if bad is not None else
                             f"model files {', '.join(names)}: two have the same name; rows name them by it",
                             input="models", value=", ".join(names)[:200],
                             accepted="distinct .gguf or .json file names (the rows' model column names them)")
        tmps: list[str] = []
        try:
            tmp = await _saved(file, suffix, min(VALIDATE_MAX_BYTES, MAX_UPLOAD_BYTES),
                               "the published measurement files are well under 1 MiB")
            tmps.append(tmp)
            for m in models:
                tmps.append(await _saved(m, ".upload", MAX_UPLOAD_BYTES,
                                         "send only the start of a GGUF file (its header), or a config.json"))
            uploads = tuple(zip(names, tmps[1:]))
            try:
                res = await limits.run_heavy(_validate_job, tmp, uploads, what=f"upload '{name}'")
            except InputError as e:  # the same kind (OverBudget stays a 503), the uploads' names
                for t, n in zip(tmps, [name, *names]):
                    e = _renamed(e, t, n)
                raise e from None
        finally:
            for t in tmps:
                os.unlink(t)
        for t, n in zip(tmps, [name, *names]):
            res = _scrub(res, t, n)
        return res

    @app.post("/api/model/inspect", summary="Architecture and sizes from a GGUF header (a prefix will do) "
                                              "or a config.json; with gpus, also the fit")
    async def inspect_model(file: UploadFile = File(...), quant: Str = None, gpus: Str = None,
                            context: Context = 8192, users: Users = 1, kv: Str = None,
                            engine: Str = None, link: Str = None, ram: Str = None):
        name = Path(file.filename or "upload").name[:200]
        req = None
        if gpus:  # checked before the upload is read: a bad query costs nothing
            req = FitRequest.parse("web", model=name, quant=quant, gpus=_gpus(gpus), context=context,
                                   users=users, kv=kv, engine=engine, link=link, ram=ram)
        tmp = await _saved(file, ".upload", MAX_UPLOAD_BYTES,
                           "send only the start of a GGUF file (its header), or a config.json")
        try:
            return await limits.run_heavy(_inspect_job, tmp, name, quant, req, what=f"upload '{name}'")
        except InputError as e:
            raise _renamed(e, tmp, name) from None
        finally:
            os.unlink(tmp)

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


def _fit_loaded(model, req):
    """fit for an uploaded model (api.fit takes a name; this takes the LoadedModel)."""
    from ..planner.fit import fit_loaded
    from ..sources.hardware import resolve_hardware

    return fit_loaded(model, resolve_hardware(req), req)


def _renamed(e: InputError, tmp: str, name: str) -> InputError:
    """The same error (its kind: OverBudget stays a 503) naming the upload, not the temp file."""
    return type(e)(_scrub(str(e), tmp, name), input=e.input, value=_scrub(e.value, tmp, name),
                   accepted=e.accepted)


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
