"""Load generator for OpenAI-compatible servers (llama.cpp, llama-cpp-python, vLLM, SGLang,
Ollama, TGI): streams /v1/completions (or /v1/chat/completions) at several concurrency levels
and times every token.

Closed loop: at concurrency c, c workers each send one request after another until the level
has sent `requests` requests or run `duration_s` seconds. Every request is bounded by
`timeout_s` (a hard asyncio bound, since a server trickling bytes never trips a read timeout)
and the whole run by `deadline_s`; whatever fails is counted with its reason and whatever was
measured before it is kept. Nothing here can hang.

Output tokens come from the server's usage fields when it sends them (stream_options
include_usage), else from finish_reason "length" (exactly max_tokens), else from counting
content chunks (one token per chunk on llama.cpp; vLLM can pack several under load).

What a server sends is checked, never trusted: every chunk is parsed into a typed model (a
chunk that does not fit ends its request as `malformed`, with the field that was wrong); an SSE
line is capped at MAX_LINE_BYTES and a stream at a few times max_tokens chunks; usage counts must
lie between the content chunks streamed and max_tokens (else `bad_usage`, counted by chunks).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass, field

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from ..inputs import finite
from ..requests import BenchRequest, bounds
from ..types import Metric
from .measurements import Measurement

_WORDS = ("the quick brown fox jumps over a lazy dog while seven small birds sing about "
          "river stones and warm summer light across green hills near an old mill").split()
GIVE_UP_AFTER = 10  # consecutive failed requests with no success: the level stops early
MAX_LINE_BYTES = 1 << 20  # one SSE line; a token chunk is ~200 bytes
MAX_SETUP_BYTES = 64 << 20  # a /tokenize or /v1/models answer (token ids of a 1M-token prompt: ~8 MB)
# option ranges: those of `gpuplan bench`'s request (requests.BenchRequest); beyond them a run
# allocates gigabytes or never ends
_FIELDS = {"prompt_tokens": "prompt_tokens", "max_tokens": "max_tokens", "timeout_s": "timeout",
           "duration_s": "duration", "deadline_s": "deadline", "requests": "requests",
           "concurrency": "concurrency_level"}
LIMITS = {k: bounds(BenchRequest, f)[:2] for k, f in _FIELDS.items()}


class _Lax(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Delta(_Lax):
    content: str | None = None


class _Choice(_Lax):
    text: str | None = None
    delta: _Delta | None = None
    finish_reason: str | None = None


class _Usage(_Lax):
    completion_tokens: int | None = None
    prompt_tokens: int | None = None


class Chunk(_Lax):
    """One streamed completion chunk, as OpenAI-compatible servers send it."""

    choices: list[_Choice] | None = None
    usage: _Usage | None = None
    error: object = None


class _Malformed(Exception):
    pass


def check_options(**values) -> None:
    """Every given option finite and in LIMITS (InputError naming the option otherwise)."""
    for name, v in values.items():
        if v is None:
            continue
        lo, hi = LIMITS[name]
        integer = name in ("prompt_tokens", "max_tokens", "requests", "concurrency")
        finite("--" + _FIELDS[name].replace("_level", "").replace("_", "-"), v, lo, hi, lo_open=not integer,
               integer=integer)


@dataclass
class RequestResult:
    ok: bool = False
    error: str | None = None  # kind: connect, http_404, http_500, timeout, dropped, malformed, deadline...
    detail: str = ""
    start: float = 0.0  # perf_counter seconds
    end: float = 0.0
    ttft_s: float | None = None
    itl_s: list[float] = field(default_factory=list)
    output_tokens: int = 0
    token_source: str = "chunks"  # usage | finish_length | chunks
    prompt_tokens: int | None = None
    malformed_chunks: int = 0
    content_chunks: int = 0  # chunks with text, whatever the token count says

    @property
    def output_tok_s(self) -> float | None:
        dt = self.end - self.start
        return self.output_tokens / dt if self.output_tokens and dt > 0 else None

    @property
    def decode_tok_s(self) -> float | None:
        """Generation speed after the first token (TTFT excluded)."""
        gen = sum(self.itl_s)  # first to last content chunk
        return (self.output_tokens - 1) / gen if self.output_tokens > 1 and gen > 0 else None


def _pct(values, q) -> float | None:
    if not values:
        return None
    import numpy as np

    return float(np.percentile(values, q))


def _stats(values) -> dict:
    return {"p50": _pct(values, 50), "p90": _pct(values, 90), "p99": _pct(values, 99),
            "mean": (sum(values) / len(values)) if values else None}


@dataclass
class LevelResult:
    concurrency: int
    wall_s: float
    requests: list[RequestResult]
    stopped_early: str | None = None

    def counts(self) -> dict:
        c = {"ok": 0, "error": 0, "timeout": 0, "dropped": 0}
        for r in self.requests:
            if r.ok:
                c["ok"] += 1
            elif r.error in ("timeout", "deadline"):
                c["timeout"] += 1
            elif r.error == "dropped":
                c["dropped"] += 1
            else:
                c["error"] += 1
        return c

    def reasons(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.requests:
            if not r.ok:
                key = f"{r.error}: {r.detail}" if r.detail else str(r.error)
                out[key] = out.get(key, 0) + 1
        return out

    def summary(self) -> dict:
        ok = [r for r in self.requests if r.ok]
        tokens = sum(r.output_tokens for r in self.requests)  # partial streams count too
        prompt = [r.prompt_tokens for r in ok if r.prompt_tokens]
        return {
            "concurrency": self.concurrency, "wall_s": self.wall_s, **self.counts(),
            "reasons": self.reasons(), "stopped_early": self.stopped_early,
            "output_tokens": tokens,
            "throughput_tok_s": tokens / self.wall_s if self.wall_s > 0 else None,
            "request_rate_s": len(ok) / self.wall_s if self.wall_s > 0 else None,
            "ttft_s": _stats([r.ttft_s for r in ok if r.ttft_s is not None]),
            "itl_s": _stats([x for r in ok for x in r.itl_s]),
            "user_tok_s": _stats([r.output_tok_s for r in ok if r.output_tok_s]),
            "decode_tok_s": _stats([r.decode_tok_s for r in ok if r.decode_tok_s]),
            "prefill_tok_s": _stats([r.prompt_tokens / r.ttft_s for r in ok
                                     if r.prompt_tokens and r.ttft_s]),
            "prompt_tokens": _stats(prompt),
            "output_tokens_per_request": _stats([r.output_tokens for r in ok]),
            "token_sources": sorted({r.token_source for r in ok}),
        }


@dataclass
class BenchResult:
    url: str
    model: str
    chat: bool
    prompt_tokens_target: int
    max_tokens: int
    prompt_check: str  # how the prompt length was checked
    prompt_words: int
    prompt_tokens_measured: int | None
    levels: list[LevelResult]
    started: str
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False  # Ctrl-C ended the run; the levels hold what was measured

    def to_json(self) -> dict:
        return {"url": self.url, "model": self.model, "chat": self.chat,
                "prompt_tokens_target": self.prompt_tokens_target, "max_tokens": self.max_tokens,
                "prompt_check": self.prompt_check, "prompt_words": self.prompt_words,
                "prompt_tokens_measured": self.prompt_tokens_measured, "started": self.started, "notes": self.notes,
                "interrupted": self.interrupted,
                "levels": [lv.summary() for lv in self.levels],
                "requests": {str(lv.concurrency): [{**asdict(r), "start": r.start, "end": r.end}
                                                   for r in lv.requests] for lv in self.levels}}

    def to_measurements(self, model_id: str, quant: str, gpu: str, n_gpus: int, engine: str,
                        split: str = "none", interconnect: str = "none",
                        n_gpu_layers: int | None = None, host_mem: str = "",
                        source: str = "gpuplan bench", levels: list | None = None) -> list[Measurement]:
        """throughput rows per level (batch = concurrency); decode and prefill at concurrency 1.
        levels: only these (default: all)."""
        base = dict(engine=engine, model=model_id, quant=quant, gpu=gpu, n_gpus=n_gpus,
                    split=split, interconnect=interconnect, n_gpu_layers=n_gpu_layers,
                    host_mem=host_mem, source=source, date=self.started[:7])
        rows = []
        for lv in self.levels if levels is None else levels:
            s = lv.summary()
            if not s["ok"]:
                continue
            n_prompt = round(s["prompt_tokens"]["p50"] or self.prompt_tokens_target)
            n_gen = round(s["output_tokens_per_request"]["p50"])
            note = f"{self.url}; {s['ok']} requests; tokens from {'/'.join(s['token_sources'])}"
            rows.append(Measurement(**base, n_prompt=n_prompt, n_gen=n_gen, batch=lv.concurrency,
                                    metric=Metric.THROUGHPUT, tok_s=s["throughput_tok_s"],
                                    note=f"{note}; closed loop, {lv.wall_s:.1f} s"))
            if lv.concurrency == 1 and s["decode_tok_s"]["p50"]:
                rows.append(Measurement(**base, n_prompt=0, n_gen=n_gen, n_depth=n_prompt, batch=1,
                                        metric=Metric.DECODE, tok_s=s["decode_tok_s"]["p50"],
                                        note=f"{note}; median per request, first token excluded"))
            if lv.concurrency == 1 and s["prefill_tok_s"]["p50"]:
                rows.append(Measurement(**base, n_prompt=n_prompt, n_gen=0, batch=1,
                                        metric=Metric.PREFILL, tok_s=s["prefill_tok_s"]["p50"],
                                        note=f"{note}; prompt tokens / TTFT (includes HTTP and one decode step)"))
        return rows


def base_url(url: str) -> str:
    u = url.strip().rstrip("/")
    for suffix in ("/v1/chat/completions", "/v1/completions", "/v1"):
        if u.endswith(suffix):
            return u[: -len(suffix)]
    return u


def make_prompt(n_words: int, salt: int) -> str:
    # A distinct number first: prefix caches (llama.cpp, vLLM APC) cannot reuse a previous prompt.
    body = " ".join(_WORDS[i % len(_WORDS)] for i in range(max(n_words - 2, 1)))
    return f"Note {salt}. {body}"


class LoadGen:
    def __init__(self, url: str, model: str | None = None, *, chat: bool = False,
                 prompt_tokens: int = 512, max_tokens: int = 128, timeout_s: float = 60.0,
                 progress: bool | None = None):
        check_options(prompt_tokens=prompt_tokens, max_tokens=max_tokens, timeout_s=timeout_s)
        self.base = base_url(url)
        self.model = model
        self.chat = chat
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.hints = True  # ignore_eos/min_tokens/cache_prompt; dropped if the server rejects them
        self.words = prompt_tokens  # words per prompt, adjusted by the tokenizer check
        self.prompt_check = "none: server usage.prompt_tokens where sent"
        self.prompt_measured: int | None = None  # tokens in the prompt, by the server's tokenizer
        self.notes: list[str] = []
        self.interrupted = False

    # -- setup ------------------------------------------------------------------------------
    async def _get_json(self, client: httpx.AsyncClient, method: str, path: str, **kw):
        """A setup request's JSON answer, read up to MAX_SETUP_BYTES; None when it is not 200 or
        not JSON."""
        async with client.stream(method, self.base + path, timeout=min(self.timeout_s, 10), **kw) as r:
            if r.status_code != 200:
                return None
            buf = bytearray()
            async for b in r.aiter_bytes():
                buf += b
                if len(buf) > MAX_SETUP_BYTES:
                    return None
        try:
            return json.loads(buf)
        except (ValueError, RecursionError):
            return None

    async def _count_tokens(self, client: httpx.AsyncClient, text: str) -> int | None:
        body = {"model": self.model or "", "content": text, "prompt": text, "input": text}
        for path in ("/tokenize", "/extras/tokenize/count", "/extras/tokenize"):
            try:
                d = await self._get_json(client, "POST", path, json=body)
            except httpx.TimeoutException:
                return None  # a server this slow to tokenize will not answer the others sooner
            except httpx.HTTPError:
                continue
            if not isinstance(d, dict):
                continue
            count, tokens = d.get("count"), d.get("tokens")
            n = count if type(count) is int else len(tokens) if isinstance(tokens, list) else 0
            if n > 0:
                self.prompt_check = f"{path} on the server"
                return n
        return None

    async def prepare(self, client: httpx.AsyncClient) -> None:
        if self.model is None:
            try:
                d = await self._get_json(client, "GET", "/v1/models")
                self.model = str(d["data"][0]["id"])[:1000]
            except httpx.TimeoutException:
                self.model = "default"
                return  # the server does not answer; the requests will report it
            except (httpx.HTTPError, KeyError, IndexError, TypeError):
                self.model = "default"
        # Scale the word count to the tokenizer (converges in 1-2 steps). Real tokenizers give
        # 1-2 tokens a word of this prompt; a count far outside is not believed, and the words
        # stay within [1/8, 4] x the target, so a server answering nonsense cannot make the
        # prompt grow without bound.
        lo, hi = max(1, self.prompt_tokens // 8), self.prompt_tokens * 4
        for _ in range(3):
            n = await self._count_tokens(client, make_prompt(self.words, 0))
            if n is not None and not 0.125 <= n / self.words <= 8:
                self.notes.append(f"tokenizer counted {n} tokens for {self.words} words; not believed")
                self.prompt_check = "none: the server's token count was not believable"
                self.words, n = self.prompt_tokens, None
            self.prompt_measured = n
            if not n or abs(n - self.prompt_tokens) <= max(2, self.prompt_tokens // 100):
                break
            self.words = min(hi, max(lo, round(self.words * self.prompt_tokens / n)))

    def _body(self, salt: int) -> dict:
        prompt = make_prompt(self.words, salt)
        body: dict = {"model": self.model, "max_tokens": self.max_tokens, "temperature": 0,
                      "stream": True, "stream_options": {"include_usage": True}}
        if self.chat:
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        if self.hints:
            # llama.cpp/vLLM: ignore_eos; llama-cpp-python/vLLM: min_tokens; llama.cpp: no prompt cache
            body.update(ignore_eos=True, min_tokens=self.max_tokens, cache_prompt=False)
        return body

    # -- one request ------------------------------------------------------------------------
    @staticmethod
    async def _lines(resp: httpx.Response):
        """The stream's lines, each at most MAX_LINE_BYTES (httpx's aiter_lines buffers a line
        of any length)."""
        buf = bytearray()
        async for data in resp.aiter_bytes():
            buf += data
            while (i := buf.find(b"\n")) >= 0:
                yield bytes(buf[:i]).rstrip(b"\r").decode("utf-8", "replace")
                del buf[: i + 1]
            if len(buf) > MAX_LINE_BYTES:
                raise _Malformed(f"an SSE line longer than {MAX_LINE_BYTES >> 20} MiB")
        if buf:
            yield bytes(buf).decode("utf-8", "replace")

    def _check_usage(self, rec: RequestResult, words: int) -> None:
        """usage counts must fit what was streamed: chunks <= completion_tokens <= max_tokens,
        and prompt_tokens near what was sent; else the request is `bad_usage` and counted by
        its chunks."""
        if rec.token_source != "usage":
            return
        n = rec.output_tokens
        if not rec.content_chunks <= n <= self.max_tokens:
            rec.error = "bad_usage"
            rec.detail = (f"usage.completion_tokens {n} outside [{rec.content_chunks} chunks streamed, "
                          f"max_tokens {self.max_tokens}]")
        elif rec.prompt_tokens is not None and not 1 <= rec.prompt_tokens <= 4 * words + 256:
            rec.error = "bad_usage"
            rec.detail = f"usage.prompt_tokens {rec.prompt_tokens} for a prompt of {words} words"
        if rec.error:
            rec.output_tokens, rec.token_source = rec.content_chunks, "chunks"
            rec.prompt_tokens = self.prompt_measured

    async def _request(self, client: httpx.AsyncClient, rec: RequestResult, salt: int) -> None:
        path = "/v1/chat/completions" if self.chat else "/v1/completions"
        rec.prompt_tokens = self.prompt_measured  # replaced by usage.prompt_tokens when sent
        rec.start = time.perf_counter()
        last = None
        done = finished = False
        max_chunks = 4 * self.max_tokens + 64  # a stream longer than this is not obeying max_tokens
        async with client.stream("POST", self.base + path, json=self._body(salt)) as resp:
            if resp.status_code != 200:
                text = (await resp.aread())[:200].decode("utf-8", "replace").replace("\n", " ")
                rec.error, rec.detail = f"http_{resp.status_code}", text
                return
            try:
                async for line in self._lines(resp):
                    if not line.startswith("data:"):
                        continue  # blank separators, ": ping" comments, event: lines
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        done = True
                        break
                    try:
                        raw = json.loads(payload)
                    except (ValueError, RecursionError):
                        rec.malformed_chunks += 1
                        continue
                    if not isinstance(raw, dict):
                        rec.malformed_chunks += 1
                        continue
                    try:
                        chunk = Chunk.model_validate(raw)
                    except ValidationError as e:
                        err = e.errors()[0]
                        where = ".".join(str(x) for x in err["loc"])
                        raise _Malformed(f"chunk field {where}: {err['msg']}") from None
                    if chunk.error is not None:
                        rec.error, rec.detail = "server_error", str(chunk.error)[:200]
                        return
                    usage = chunk.usage
                    if usage and usage.completion_tokens is not None:
                        rec.output_tokens = usage.completion_tokens
                        rec.prompt_tokens = usage.prompt_tokens if usage.prompt_tokens is not None else rec.prompt_tokens
                        rec.token_source = "usage"
                    for ch in chunk.choices or []:
                        text = ch.text if ch.text is not None else (ch.delta.content if ch.delta else None)
                        if text:
                            now = time.perf_counter()
                            if last is None:
                                rec.ttft_s = now - rec.start
                            else:
                                rec.itl_s.append(now - last)
                            last = now
                            rec.content_chunks += 1
                            if rec.token_source == "chunks":
                                rec.output_tokens += 1
                        if ch.finish_reason:
                            finished = True
                            if ch.finish_reason == "length" and rec.token_source == "chunks":
                                rec.token_source, rec.output_tokens = "finish_length", self.max_tokens
                    if rec.content_chunks > max_chunks:
                        raise _Malformed(f"more than {max_chunks} content chunks for max_tokens {self.max_tokens}")
            except _Malformed as e:
                rec.end = time.perf_counter()
                rec.error, rec.detail = "malformed", str(e)[:200]
                if rec.token_source != "chunks":
                    rec.output_tokens, rec.token_source = rec.content_chunks, "chunks"
                return
        rec.end = time.perf_counter()
        self._check_usage(rec, self.words)
        if rec.error:
            return
        if not (done or finished):
            rec.error, rec.detail = "dropped", f"stream ended after {rec.output_tokens} tokens"
        elif not finished and rec.output_tokens < self.max_tokens:
            # [DONE] with no finish_reason: the server cut the request short (llama-cpp-python
            # does this to a running stream when another request arrives, interrupt_requests)
            rec.error, rec.detail = "truncated", "[DONE] before any finish_reason"
        elif rec.malformed_chunks:
            rec.error, rec.detail = "malformed", f"{rec.malformed_chunks} chunk(s) not JSON"
        elif rec.output_tokens == 0:
            rec.error, rec.detail = "empty", "no tokens in the stream"
        else:
            rec.ok = True

    async def _bounded(self, client, rec: RequestResult, salt: int) -> None:
        try:
            await asyncio.wait_for(self._request(client, rec, salt), self.timeout_s)
        except asyncio.TimeoutError:
            rec.error, rec.detail = "timeout", f"no complete answer within {self.timeout_s:g} s"
        except httpx.ConnectError as e:
            rec.error, rec.detail = "connect", str(e) or "connection refused"
        except httpx.TimeoutException:
            rec.error, rec.detail = "timeout", f"no data within {self.timeout_s:g} s"
        except (httpx.RemoteProtocolError, httpx.ReadError) as e:
            rec.error, rec.detail = "dropped", f"{type(e).__name__}: {e}"[:200]
        except httpx.HTTPError as e:
            rec.error, rec.detail = "http", f"{type(e).__name__}: {e}"[:200]
        except (ValueError, TypeError, OverflowError, UnicodeError) as e:
            # whatever else a broken server provokes ends this request, never the level
            rec.error, rec.detail = "malformed", f"{type(e).__name__}: {e}"[:200]
        finally:
            if not rec.end:
                rec.end = time.perf_counter()

    # -- one level --------------------------------------------------------------------------
    async def run_level(self, client, c: int, requests: int | None, duration_s: float | None,
                        deadline: float, on_progress=None) -> LevelResult:
        recs: list[RequestResult] = []
        t0 = time.perf_counter()
        state = {"sent": 0, "fails": 0, "stop": None}

        async def worker():
            while state["stop"] is None:
                if requests is not None and state["sent"] >= requests:
                    return
                if duration_s is not None and time.perf_counter() - t0 >= duration_s:
                    return
                state["sent"] += 1
                rec = RequestResult()
                recs.append(rec)
                await self._bounded(client, rec, salt=state["sent"] + 1000 * c)
                if rec.error == "http_400" and self.hints and not any(r.ok for r in recs):
                    self.hints = False  # a strict server: retry without the engine-specific hints
                    self.notes.append(f"server rejected ignore_eos/min_tokens hints: {rec.detail}")
                    recs.remove(rec)
                    state["sent"] -= 1
                    continue
                state["fails"] = 0 if rec.ok else state["fails"] + 1
                if state["fails"] >= GIVE_UP_AFTER and not any(r.ok for r in recs):
                    state["stop"] = f"gave up after {GIVE_UP_AFTER} failed requests"
                if on_progress:
                    on_progress(c, recs)

        tasks = [asyncio.create_task(worker()) for _ in range(c)]
        try:
            _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.perf_counter()))
            stop = "overall deadline reached"
        except asyncio.CancelledError:  # Ctrl-C: keep what this level measured
            self.interrupted, pending, stop = True, [t for t in tasks if not t.done()], "interrupted"
        if pending:
            state["stop"] = stop
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for r in recs:
                if not r.ok and r.error is None:
                    r.error, r.detail = "deadline", f"cancelled: {stop}"
                    r.end = r.end or time.perf_counter()
        return LevelResult(c, time.perf_counter() - t0, recs, state["stop"])

    async def run(self, levels: list[int], requests: int | None = 8, duration_s: float | None = None,
                  deadline_s: float | None = None, on_level=None) -> BenchResult:
        """on_level(result_so_far, level) after each level (also the one Ctrl-C cut short):
        `gpuplan bench` appends that level's rows to its CSV file there."""
        for c in levels:
            check_options(concurrency=c)
        check_options(requests=requests, duration_s=duration_s, deadline_s=deadline_s)
        started = time.strftime("%Y-%m-%dT%H:%M:%S")
        if deadline_s is None:  # every request is bounded, so by default this never binds
            deadline_s = 15 + sum(duration_s + self.timeout_s if duration_s
                                  else -(-(requests or 1) // c) * self.timeout_s for c in levels)
        end = time.perf_counter() + deadline_s
        limits = httpx.Limits(max_connections=max(levels) + 2, max_keepalive_connections=max(levels) + 2)
        timeout = httpx.Timeout(self.timeout_s, connect=min(self.timeout_s, 10))
        out: list[LevelResult] = []

        def result() -> BenchResult:
            return BenchResult(self.base, self.model or "default", self.chat, self.prompt_tokens,
                               self.max_tokens, self.prompt_check, self.words, self.prompt_measured,
                               out, started, self.notes)

        async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
            try:
                await asyncio.wait_for(self.prepare(client), max(1.0, min(30.0, deadline_s / 4)))
            except asyncio.TimeoutError:
                self.notes.append("prompt length check timed out; trusting usage.prompt_tokens")
            except asyncio.CancelledError:
                self.interrupted = True
            with _Progress(self.progress, levels, requests, duration_s) as prog:
                for c in levels:
                    if self.interrupted:
                        self.notes.append(f"level {c} not run: interrupted")
                        continue
                    if time.perf_counter() >= end:
                        self.notes.append(f"level {c} not run: overall deadline reached")
                        continue
                    out.append(await self.run_level(client, c, requests, duration_s, end, prog.update))
                    if on_level:
                        on_level(result(), out[-1])
        return result()


class _Progress:
    """rich progress on a terminal; silent otherwise (CI logs, pipes)."""

    def __init__(self, enabled: bool, levels, requests, duration_s):
        self.enabled, self.tasks = enabled, {}
        self.total = requests if duration_s is None else None
        if enabled:
            from rich.progress import BarColumn, Progress, TextColumn

            self.p = Progress(TextColumn("c={task.fields[c]:>3}"), BarColumn(),
                              TextColumn("{task.completed} done  {task.fields[info]}"),
                              transient=False, redirect_stdout=False)

    def __enter__(self):
        if self.enabled:
            self.p.start()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self.p.stop()

    def update(self, c: int, recs: list[RequestResult]) -> None:
        if not self.enabled:
            return
        if c not in self.tasks:
            self.tasks[c] = self.p.add_task("", total=self.total, c=c, info="")
        done = [r for r in recs if r.end]
        ok = [r for r in done if r.ok]
        tok_s = [r.output_tok_s for r in ok if r.output_tok_s]
        info = f"ok {len(ok)}  failed {len(done) - len(ok)}" + (
            f"  {sum(tok_s) / len(tok_s):.1f} tok/s per user" if tok_s else "")
        self.p.update(self.tasks[c], completed=len(done), info=info)


def run_bench(url: str, levels: list[int], **kw) -> BenchResult:
    """Synchronous entry point: run_bench(url, [1, 4], model=..., requests=8). Ctrl-C ends the
    run with what was measured (result.interrupted)."""
    run_kw = {k: kw.pop(k) for k in ("requests", "duration_s", "deadline_s", "on_level") if k in kw}
    gen = LoadGen(url, **kw)
    res = asyncio.run(gen.run(levels, **run_kw))
    res.interrupted = gen.interrupted
    return res
