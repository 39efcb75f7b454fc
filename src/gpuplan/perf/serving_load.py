"""What arrives at a server: a fixed number of users (each sends its next request when the
last one finishes), a Poisson stream at a rate, everything at once (offline), static batches,
or a trace of (arrival, prompt, output) triples read from a file. Deterministic: the same load
and seed give the same requests.

A shared prefix (a system prompt every request starts with) is part of each prompt: with
`shared_prefix` P the first P tokens of every prompt are the same, and with a length spread only
the rest of the prompt varies. A trace may give each request its own `prefix_tokens`: how many of
its first tokens are that one common prefix (0: none)."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

KINDS = ("users", "rate", "offline", "batch", "trace")


@dataclass(frozen=True)
class Load:
    kind: str  # users | rate | offline | batch | trace
    prompt: int = 512
    output: int = 128
    users: int = 1  # users: concurrent users; offline: requests; batch: batch size
    rate: float = 0.0  # requests per second (rate)
    requests: int = 0  # requests in all (0: chosen from the kind)
    spread: float = 0.0  # lognormal sigma of prompt and output lengths (0: every request the same)
    seed: int = 0
    stagger_s: float = 0.0  # users: their first requests spread over this many seconds
    cohorts: int = 0  # users: first requests start in this many groups (0: each user on its own)
    quantum: int = 1  # lengths drawn with `spread` are rounded to multiples of this many tokens
    trace: tuple = ()  # ((arrival_s, prompt, output), ...) or ((arrival_s, prompt, output, prefix_tokens), ...)
    shared_prefix: int = 0  # tokens every prompt starts with (a system prompt); 0: none
    # requests are chat messages and the shared prefix is what comes before the last user message (the
    # system prompt in its template): llama-server checkpoints there on sliding-window models (tests/
    # test_serving_prefix.py); False: raw completion prompts
    chat: bool = True

    def __post_init__(self):
        if self.kind not in KINDS:
            raise InputError(f"load kind '{self.kind}' is not accepted; accepted: {', '.join(KINDS)}")
        if self.kind != "trace" and (self.prompt < 1 or self.output < 1):
            raise InputError("prompt and output lengths must be at least 1 token")
        if self.kind == "rate" and not (self.rate > 0 and math.isfinite(self.rate)):
            raise InputError(f"request rate {self.rate} is not accepted; give a positive number of requests/s")
        if self.kind in ("users", "offline", "batch") and self.users < 1:
            raise InputError(f"{self.kind}: the number of users must be at least 1")
        if self.shared_prefix < 0 or (self.kind != "trace" and self.shared_prefix >= self.prompt):
            raise InputError(f"a shared prefix of {self.shared_prefix} tokens is not accepted for prompts of"
                             f" {self.prompt} tokens; accepted: 0 to {self.prompt - 1}")


def _count(load: Load) -> int:
    return load.requests or {"users": 4 * load.users, "rate": 200, "offline": load.users,
                             "batch": load.users}[load.kind]


def requests_of(load: Load) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(arrival_s, prompt, output) arrays. Closed-loop kinds (users, batch) give arrival -1 for
    requests that are released by an earlier request's completion."""
    if load.kind == "trace":
        if not load.trace:
            raise InputError("the trace has no requests")
        a = np.array([t[0] for t in load.trace], dtype=float)
        p = np.array([t[1] for t in load.trace], dtype=np.int64)
        o = np.array([t[2] for t in load.trace], dtype=np.int64)
        order = np.argsort(a, kind="stable")
        return a[order] - a.min(), p[order], o[order]
    n = _count(load)
    rng = np.random.default_rng(load.seed)
    if load.spread > 0:  # lognormal with the given means
        s = load.spread
        q = max(int(load.quantum), 1)
        if load.shared_prefix:  # the prefix is fixed; the rest of each prompt varies
            P = load.shared_prefix
            rest = np.round((load.prompt - P) * rng.lognormal(-s * s / 2, s, n) / q) * q
            p = (P + np.maximum(min(q, load.prompt - P), rest)).astype(np.int64)
        else:
            p = np.maximum(q, np.round(load.prompt * rng.lognormal(-s * s / 2, s, n) / q) * q).astype(np.int64)
        o = np.maximum(q, np.round(load.output * rng.lognormal(-s * s / 2, s, n) / q) * q).astype(np.int64)
    else:
        p = np.full(n, load.prompt, dtype=np.int64)
        o = np.full(n, load.output, dtype=np.int64)
    if load.kind == "rate":
        gaps = rng.exponential(1.0 / load.rate, n)
        gaps[0] = 0.0
        a = np.cumsum(gaps)
    elif load.kind == "offline":
        a = np.zeros(n)
    else:
        a = np.full(n, -1.0)
        first = min(load.users, n)
        if load.stagger_s > 0:
            slot = np.arange(first) * load.stagger_s / first
            if load.cohorts > 0:  # users start in groups: fewer distinct events, the same spread
                g = np.floor(np.arange(first) * load.cohorts / first)
                slot = g * load.stagger_s / load.cohorts
            a[:first] = slot
        else:
            a[:first] = 0.0
    return a, p, o


def prefixes_of(load: Load) -> np.ndarray | None:
    """Tokens of each request's prompt (in requests_of's order) that are the shared prefix; None
    when no request has one (the simulator then runs exactly as without prefixes)."""
    if load.kind == "trace":
        if not any(len(t) > 3 and t[3] for t in load.trace):
            return None
        a = np.array([t[0] for t in load.trace], dtype=float)
        pf = np.array([t[3] if len(t) > 3 else 0 for t in load.trace], dtype=np.int64)
        return pf[np.argsort(a, kind="stable")]
    if not load.shared_prefix:
        return None
    return np.full(_count(load), load.shared_prefix, dtype=np.int64)


ACCEPTED = "CSV or JSON lines with arrival_s, prompt_tokens, output_tokens (and optionally prefix_tokens)"
MAX_TOKENS = 10_000_000  # prompt or output tokens of one request


def read_trace(path: str | Path, max_requests: int = 100_000) -> tuple:
    """A trace file: CSV with columns arrival_s (or timestamp), prompt_tokens, output_tokens, or
    JSON lines with the same keys; arrival times in seconds (any origin). An optional
    prefix_tokens column says how many of a request's first prompt tokens are the prefix the
    requests share (a system prompt; 0 or empty: none, less than its prompt); rows then carry it
    as a fourth value. Read with the size cap and special-file refusal of every input file
    (inputs.read_text); at most `max_requests` rows."""
    from ..inputs import load_json, read_text

    try:
        text = read_text(path, "trace file")
    except InputError as e:
        raise InputError(str(e), input="trace", value=str(path), accepted=ACCEPTED) from None
    rows = []
    try:
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) > max_requests + 1:
            raise ValueError(f"{len(lines):,} lines; at most {max_requests:,} requests are replayed")
        if text.lstrip().startswith("{"):
            items = [load_json(line, "trace line") for line in lines]
        else:
            items = list(csv.DictReader(lines))
        with_prefix = any(isinstance(r, dict) and r.get("prefix_tokens") not in (None, "") for r in items)
        for i, r in enumerate(items):
            if not isinstance(r, dict):
                raise ValueError(f"row {i}: not an object with arrival_s, prompt_tokens, output_tokens")
            a = r.get("arrival_s", r.get("timestamp", r.get("arrival")))
            pr = r.get("prompt_tokens", r.get("prompt", r.get("input_tokens")))
            out = r.get("output_tokens", r.get("output"))
            if a is None or pr is None or out is None:
                raise ValueError(f"row {i}: needs arrival_s, prompt_tokens and output_tokens")
            try:
                a, pr_f, out_f = float(a), float(pr), float(out)
            except (TypeError, ValueError):
                raise ValueError(f"row {i}: arrival_s, prompt_tokens and output_tokens must be numbers") from None
            if not (math.isfinite(a) and a >= 0 and math.isfinite(pr_f) and math.isfinite(out_f)
                    and 1 <= pr_f <= MAX_TOKENS and 1 <= out_f <= MAX_TOKENS):
                raise ValueError(f"row {i}: arrival_s must be a number >= 0, prompt_tokens and output_tokens"
                                 f" 1..{MAX_TOKENS:,}")
            if not with_prefix:
                rows.append((a, int(pr_f), int(out_f)))
                continue
            pf = r.get("prefix_tokens")
            try:
                pf_f = 0.0 if pf in (None, "") else float(pf)
            except (TypeError, ValueError):
                raise ValueError(f"row {i}: prefix_tokens must be a number") from None
            if not (math.isfinite(pf_f) and 0 <= pf_f < int(pr_f)):
                raise ValueError(f"row {i}: prefix_tokens must be 0 up to prompt_tokens - 1 ({int(pr_f) - 1:,})")
            rows.append((a, int(pr_f), int(out_f), int(pf_f)))
    except (ValueError, json.JSONDecodeError, InputError, csv.Error) as e:
        raise InputError(f"trace file {path}: {e}; accepted: {ACCEPTED}", input="trace", value=str(path),
                         accepted=ACCEPTED) from None
    if not rows:
        raise InputError(f"trace file {path} has no requests", input="trace", value=str(path), accepted=ACCEPTED)
    return tuple(rows)
