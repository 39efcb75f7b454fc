"""The questions gpuplan answers, as typed requests.

Each request is built once at the edge (the CLI's options, the web API's query) with
`Request.parse(...)` and passed down unchanged: api -> planner. Every numeric field carries its
physical range here, so this is the one place to tighten what is accepted; a value outside it
becomes one InputError line naming the input and the range.

Adding an option means adding a field here (with its range) and reading it where it is used.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import InputError
from .types import Engine

Context = Annotated[int, Field(ge=2, le=10_000_000, description="tokens the KV cache holds per sequence"
                                                                 " (at least a prompt and an answer token)")]
Users = Annotated[int, Field(ge=1, le=100_000, description="sequences served at once")]
Tokens = Annotated[int, Field(ge=1, le=10_000_000)]
MAX_OUTPUT_TOKENS = 131_072  # longer answers than any engine's default max_tokens allows
Nodes = Annotated[int, Field(ge=1, le=1024, description="machines the GPUs are spread over")]
RamGib = Annotated[float, Field(ge=1, le=65536, allow_inf_nan=False, description="system RAM, GiB")]
Text = Annotated[str, Field(min_length=1, max_length=1000)]
Goal = Literal["latency", "throughput", "cost"]
GOALS = ("latency", "throughput", "cost")


def _blank_is_none(v):
    return None if isinstance(v, str) and not v.strip() else v


def _engine(v):
    v = _blank_is_none(v)
    return Engine.parse(v) if isinstance(v, str) else v


OptText = Annotated[Optional[Text], BeforeValidator(_blank_is_none)]
OptEngine = Annotated[Optional[Engine], BeforeValidator(_engine)]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def parse(cls, edge: Literal["cli", "web"] = "cli", **values):
        """The request from the edge's values; a bad one raises one InputError line naming it
        as that edge spells it (`--context` on the command line, `context` on the web)."""
        try:
            return cls(**values)
        except ValidationError as e:
            raise input_error(cls, e.errors(), edge) from None


class HardwareRequest(Request):
    gpus: Optional[Text] = Field(None, description="hardware spec, e.g. '2x rtx-3090' or 'rtx-4090,rtx-3060-12gb';"
                                             " none: this machine as `gpuplan probe` sees it")
    hardware: OptText = Field(None, description="hardware file from `gpuplan probe --save` (command line only)")
    link: OptText = Field(None, description="link between the GPUs, e.g. pcie4-x8, nvlink-bridge-3090")
    ram: OptText = Field(None, description="host memory id, e.g. ddr5-6000-2ch")
    ram_gib: Optional[RamGib] = None
    nodes: Nodes = 1


class ModelRequest(Request):
    model: Text = Field(description="catalog id or alias, a .gguf file, or a config.json")
    quant: OptText = Field(None, description="weight format, e.g. Q4_K_M, Q8_0, F16, FP8, AWQ;"
                                              " none: the format the model ships in")
    context: Context = 8192
    users: Users = 1


class FitRequest(ModelRequest, HardwareRequest):
    """Does the model fit on this hardware, split the default way?"""

    engine: OptEngine = Field(None, description="none: llama.cpp for GGUF types on consumer cards and Macs,"
                                                " vLLM for checkpoints on datacenter GPUs")
    kv: OptText = Field(None, description="KV cache type: f16, q8_0, q4_0, fp8, ...; none: f16")
    # engine settings; none: the engine's own default, named in the answer (perf/engine_memory.yaml)
    flash_attn: Optional[Literal["on", "off", "auto"]] = Field(None, description="flash attention")
    swa_full: Optional[bool] = Field(None, description="llama.cpp: sliding-window layers keep the whole context")
    ubatch: Optional[int] = Field(None, ge=1, le=65536, description="llama.cpp physical batch (-ub), tokens")
    gpu_memory_utilization: Optional[float] = Field(None, ge=0.05, le=1.0, allow_inf_nan=False,
                                                    description="vLLM/SGLang share of each GPU")

    @field_validator("flash_attn", mode="before")
    @classmethod
    def _fa(cls, v):
        return v.strip().lower() if isinstance(v, str) and v.strip() else (None if isinstance(v, str) else v)

    @field_validator("kv")
    @classmethod
    def _kv(cls, v):
        if v is None:
            return v
        from .perf.memory import kv_type_bytes

        try:
            kv_type_bytes(v)
        except InputError as e:
            raise InputError(str(e), input="kv", value=v, accepted=str(e).partition("accepted: ")[2]) from None
        return v.strip().lower()


class PlanRequest(FitRequest):
    """The best plan, its alternatives, the explanation and the launch commands."""

    goal: Goal = "latency"
    min_user_tok_s: float = Field(0.0, ge=0, le=1e6, allow_inf_nan=False,
                                  description="with goal throughput: the slowest a user may be served")
    prompt_tokens: Tokens = 512
    # a planning run for several users simulates every output token of every request
    output_tokens: int = Field(256, ge=1, le=MAX_OUTPUT_TOKENS, description="answer length, tokens")
    # serving targets (planner/targets.py): with any of them, or a rate, the plan says how much load
    # each candidate holds under them
    rate: Optional[float] = Field(None, gt=0, le=1e6, allow_inf_nan=False,
                                  description="requests per second (Poisson arrivals) to plan for, instead of users")
    ttft: OptText = Field(None, description="time-to-first-token target, e.g. 2s or 500ms")
    tpot: OptText = Field(None, description="time-per-output-token target, e.g. 100ms")
    e2el: OptText = Field(None, description="end-to-end latency target per request, e.g. 30s")
    slo: OptText = Field(None, description="targets in one: 'ttft=2s,tpot=100ms,p=90' (p: the percentile)")
    trace: OptText = Field(None, description="request trace to replay on every serving candidate: CSV or JSON lines"
                                             " with arrival_s, prompt_tokens, output_tokens (command line only)")
    shared_prefix: int = Field(0, ge=0, le=10_000_000,
                               description="tokens every prompt starts with (a system prompt), part of --prompt-tokens:"
                                           " engines with prefix caching compute them once")

    @model_validator(mode="after")
    def _one_load(self):
        if self.trace is not None and self.rate is not None:
            raise InputError("--trace and --rate both say what arrives; give one", input="rate",
                             value=str(self.rate), accepted="--rate or --trace, not both")
        return self

    @model_validator(mode="after")
    def _lengths_fit_the_context(self):
        """A request longer than the context per sequence is refused by every engine (vLLM's
        max_model_len, llama-server's slot size): when the user gave the lengths, say so."""
        given = self.model_fields_set & {"prompt_tokens", "output_tokens"}
        total = self.prompt_tokens + self.output_tokens
        if given and total > self.context:
            raise InputError(f"prompt + output = {total:,} tokens exceed the context per sequence"
                             f" ({self.context:,}); give --context {total:,} or more, or shorter"
                             " --prompt-tokens / --output-tokens",
                             input="output_tokens" if "output_tokens" in given else "prompt_tokens",
                             value=str(self.output_tokens if "output_tokens" in given else self.prompt_tokens),
                             accepted=f"prompt_tokens + output_tokens <= context ({self.context:,})")
        return self

    @model_validator(mode="after")
    def _prefix_shorter_than_the_prompt(self):
        """The shared prefix is part of each prompt: something of the prompt must be the request's own."""
        prompt = min(self.prompt_tokens, self.context)  # the planner's prompt (report.workload)
        if self.trace is None and self.shared_prefix and self.shared_prefix >= prompt:
            raise InputError(f"--shared-prefix {self.shared_prefix:,} is not shorter than the prompt"
                             f" ({prompt:,} tokens, --prompt-tokens); accepted: 0 to {prompt - 1:,}",
                             input="shared_prefix", value=str(self.shared_prefix),
                             accepted=f"0 to {prompt - 1:,} (less than --prompt-tokens)")
        return self

    @field_validator("ttft", "tpot", "e2el")
    @classmethod
    def _duration(cls, v, info):
        if v is None:
            return v
        from .perf.serving_slo import parse_seconds

        try:
            parse_seconds(v, info.field_name)
        except InputError as e:
            raise InputError(str(e), input=info.field_name, value=v, accepted="a duration, e.g. 2s, 100ms, 0.5") from None
        return v.strip()

    @field_validator("slo")
    @classmethod
    def _slo(cls, v):
        if v is None:
            return v
        from .perf.serving_slo import parse_slo

        try:
            parse_slo(v)
        except InputError as e:
            raise InputError(str(e), input="slo", value=v, accepted="ttft=2s,tpot=100ms,e2el=30s,p=90") from None
        return v.strip()

    def targets(self):
        """The latency targets as planner/targets.py's Slo."""
        from .perf.serving_slo import parse_slo

        return parse_slo(self.slo, self.ttft, self.tpot, self.e2el)


class ScalingRequest(PlanRequest):
    """Charts for the recommended plan: speed against GPU count, context and users."""

    max_gpus: int = Field(8, ge=1, le=16)


class CompareRequest(Request):
    """Setups side by side, or one of the article's scenarios."""

    model: OptText = None
    setup: tuple[Text, ...] = Field((), max_length=64, description="e.g. '2x rtx-4090 pcie4-x8 layer'")
    quant: OptText = None
    context: Optional[Context] = Field(None, description="none: the scenario's, else 8192")
    users: Optional[Users] = Field(None, description="none: the scenario's, else 1")
    scenario: OptText = Field(None, description="fits-on-one, does-not-fit or serving")


class BuildsRequest(Request):
    """Popular builds for a model: fit, speed, throughput, cost per token."""

    model: Text
    quant: OptText = None
    budget: Optional[float] = Field(None, gt=0, le=1e8, allow_inf_nan=False, description="USD")
    users: Users = 1
    context: Context = 8192
    electricity: float = Field(0.15, ge=0, le=10, allow_inf_nan=False, description="USD per kWh")


class BenchRequest(Request):
    """`gpuplan bench`: how to load a server and for how long. Beyond these ranges a run allocates
    gigabytes (a 10^8-token prompt) or never ends (an infinite timeout)."""

    prompt_tokens: int = Field(512, ge=1, le=1_000_000, description="prompt length, tokens (about)")
    max_tokens: int = Field(128, ge=1, le=1_000_000, description="tokens to generate per request")
    duration: Optional[float] = Field(None, gt=0, le=86_400, allow_inf_nan=False, description="seconds per level")
    requests: Optional[int] = Field(None, ge=1, le=1_000_000, description="requests per level")
    timeout: float = Field(120.0, gt=0, le=86_400, allow_inf_nan=False, description="seconds one request may take")
    deadline: Optional[float] = Field(None, gt=0, le=7 * 86_400, allow_inf_nan=False,
                                      description="seconds the whole run may take")
    concurrency_level: int = Field(1, ge=1, le=1024, description="one level of --concurrency")
    n_gpus: int = Field(1, ge=0, le=4096, description="GPUs used (0 with --gpu cpu)")


LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


class ServeRequest(Request):
    """`gpuplan serve`: where the web page and API listen."""

    host: Text = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535, description="TCP port")
    log_level: Annotated[Literal[LOG_LEVELS], BeforeValidator(lambda v: v.lower() if isinstance(v, str) else v)] = "info"
    workers: int = Field(1, ge=1, le=64, description="worker processes (planning is CPU-bound)")
    time_budget: float = Field(60.0, gt=0, le=3600, allow_inf_nan=False,
                               description="seconds of computing one API request (a plan, a comparison) may use")


def bounds(cls, field: str) -> tuple:
    """(lo, hi, lo_open) of a field's range, for code that checks the same range itself."""
    lo = hi = None
    lo_open = False
    for m in _constraints(cls, field):
        if getattr(m, "ge", None) is not None:
            lo = m.ge
        if getattr(m, "gt", None) is not None:
            lo, lo_open = m.gt, True
        if getattr(m, "le", None) is not None:
            hi = m.le
        if getattr(m, "lt", None) is not None:
            hi = m.lt
    return lo, hi, lo_open


# Each command's request, so a value the option parser itself refuses (`--context nan`) is
# reported with the same range as one the request refuses (cli.py).
COMMAND_REQUESTS = {"fit": FitRequest, "plan": PlanRequest, "compare": CompareRequest, "builds": BuildsRequest,
                    "bench": BenchRequest, "serve": ServeRequest}


# ---------------------------------------------------------------- validation errors, one line each
def _name(field: str, edge: str) -> str:
    return "--" + field.replace("_", "-") if edge == "cli" else field


def _constraints(cls, field: str) -> list:
    """The annotated-types constraints of a field, also those inside Optional[Annotated[...]]."""
    import typing

    info = cls.model_fields.get(field)
    if info is None:
        return []
    out = list(info.metadata)
    todo = [info.annotation]
    while todo:
        t = todo.pop()
        out += list(getattr(t, "__metadata__", ()))
        todo += [a for a in typing.get_args(t) if a is not type(None)]
    for m in list(out):  # pydantic keeps a Field() inside Annotated as a FieldInfo with its own metadata
        out += list(getattr(m, "metadata", ()) or ())
    return out


def _range(cls, field: str) -> str | None:
    """'1 to 10,000,000', 'more than 0 up to 100,000,000', or None when the field has no bounds."""
    from .inputs import range_text

    return range_text(*bounds(cls, field))


def _nested(cls, field: str):
    """The model class a field holds (also inside Optional), or None."""
    import typing

    info = getattr(cls, "model_fields", {}).get(field)
    todo = [info.annotation] if info else []
    while todo:
        t = todo.pop()
        if isinstance(t, type) and issubclass(t, BaseModel):
            return t
        todo += list(typing.get_args(t))
    return None


def input_error(cls, errors: list[dict], edge: str = "cli") -> InputError:
    """The first of pydantic's errors as one line: '--context 0 is out of range; accepted: 2 to 10,000,000'
    (the format of gpuplan.inputs, whatever the input)."""
    from .inputs import not_a_number, out_of_range, too_long

    e = errors[0]
    loc = [str(x) for x in e.get("loc", ()) if x not in ("query", "body", "path") and not isinstance(x, int)]
    owner = cls
    for part in loc[:-1]:  # a nested model (a file's `cpu:` entry): its own field's bounds
        owner = _nested(owner, part) or owner
    field = ".".join(loc) if loc else "request"
    name = _name(field, edge)
    value = e.get("input")
    kind = e.get("type", "")
    bounds = _range(owner, loc[-1]) if loc else None
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        return out_of_range(name, value, bounds, input=field)
    if kind == "literal_error":
        accepted = e.get("ctx", {}).get("expected", "").replace("'", "").replace(" or ", ", ")
        return InputError(f"{name} '{value}' is not accepted; accepted: {accepted}", input=field, value=value,
                          accepted=accepted)
    if kind in ("finite_number", "float_parsing", "int_parsing", "int_from_float", "float_type", "int_type"):
        return not_a_number(name, value, kind.startswith("int"), bounds, input=field)
    if kind == "extra_forbidden":
        accepted = ", ".join(_name(f, edge) for f in owner.model_fields)
        what = "key" if edge == "file" else "option"
        return InputError(f"unknown {what} {name}; accepted: {accepted}", input=field, value=value, accepted=accepted)
    if kind == "missing":
        return InputError(f"{name} is required", input=field, accepted="a value")
    if kind in ("string_too_long", "too_long"):
        n = e.get("ctx", {}).get("max_length") or 0
        return too_long(name, len(value) if hasattr(value, "__len__") else n + 1, n,
                        "characters" if kind == "string_too_long" else "items", input=field)
    if kind == "string_type":
        shown = repr(value[:40]) if isinstance(value, str) else str(value)[:40]
        return InputError(f"{name} {shown} is not text; accepted: text", input=field,
                          value=str(value)[:40], accepted="text")
    if kind in ("string_too_short", "too_short"):
        return InputError(f"{name} is empty; give a value", input=field, accepted="a non-empty value")
    return InputError(f"{name}: {e.get('msg', 'invalid value')}", input=field, value=value)
