"""Planning against latency targets: the largest load (concurrent users, or requests/s) each
candidate plan holds with its TTFT and TPOT within targets, which limit binds there, and the
curve of throughput and latency percentiles against load. Every figure comes from the serving
simulator (perf/serving.py) running the engine's own scheduler rules on the plan."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..errors import InputError
from ..inputs import OverBudget, check_budget
from ..perf.serving import SimResult, StopRule, simulate, stats_ms
from ..perf.serving_slo import Slo, parse_seconds, parse_slo  # noqa: F401 (re-exported)
from ..results_serving import LatencyStats, ServingAnswer, ServingCapacity, ServingPoint, StepBreakdown
from ..perf.serving_engines import Scheduler, kv_pool_tokens, scheduler_for
from ..perf.serving_load import Load
from ..perf.serving_step import StepCost
from ..types import Engine, Hardware, LoadedModel, Plan

ROUNDS = 3  # requests per user in a planning run: the first round warms up, the rest are measured
COHORTS = 32  # the first round's users start in this many groups, spread over one request's time
# Users' requests differ in length (lognormal, sigma): identical requests would march in lockstep
# through prefill-first schedulers, which real traffic does not do
SPREAD = 0.3
# ... rounded to 1/QUANTA of their mean: requests then finish in a few dozen groups per round, which
# bounds a run's events whatever the number of users (the percentiles move by less than a step)
QUANTA = 24
MAX_USERS = 65536
# planning runs of more users than this simulate them in identical groups (group_for). 48, not
# more: over the 26 candidates of Llama 3.1 70B FP8 on 8x H100 and 8B BF16 on 2x A100 (2026-12-01),
# capacities against runs of 512 simulated users differ by median 6.0% / 4.5% at 48 and 6.1% / 1.6%
# at 128 (the search itself stops within 1/8), at under half the time
SIM_USERS = 48
# ... and never in groups so large that the KV pool holds fewer than this many of them: against
# runs of every user (Llama 2 7B FP8, one H100, 256 and 512 users, 4 engines) the grouped runs'
# throughput is within 1.6% and TTFT/TPOT median and p90 within 15.4% at 32 (38% at 8)
KV_GROUPS = 32


# ---------------------------------------------------------------- one plan's engine


@dataclass(frozen=True)
class Setup:
    plan: Plan
    sched: Scheduler
    kv_tokens: int
    cost: StepCost

    @property
    def replicas(self) -> int:
        return max(self.plan.replicas, 1)


def setup_for(model: LoadedModel, hw: Hardware, plan: Plan, context: int, users: int = 1,
              date: str | None = None, sched: Scheduler | None = None) -> Setup:
    """The engine a plan runs: its documented scheduler defaults, its KV pool on this hardware,
    and its step costs. llama.cpp-style engines get `users` slots of `context` tokens."""
    dev = hw.devices[plan.device_ids[0]]
    per = max(1, math.ceil(users / max(plan.replicas, 1)))
    if sched is None:
        if plan.engine in (Engine.LLAMA_CPP, Engine.OLLAMA) or plan.engine.value in ("mlx", "exllamav2"):
            sched = scheduler_for(plan.engine, dev, date, parallel=per, n_ctx=context * per)
        else:
            sched = scheduler_for(plan.engine, dev, date, tp=plan.tp, offline=False, max_model_len=context)
    kv, _ = kv_pool_tokens(model, hw, plan, sched)
    return Setup(plan, sched, kv, StepCost(model, hw, plan, sched, date=date))


def _step_time_guess(s: Setup, users: int, prompt: int, output: int) -> float:
    """One request's time at `users` concurrent (no queueing): for spreading the users' starts."""
    b = max(users, 1)
    dec = float(s.cost.decode(b, prompt + output / 2.0))
    pf = float(s.cost.time(prompt, 1, 0.0, 0.0, prompt * (prompt + 1) / 2.0))
    return pf + output * dec


def run_users(s: Setup, users: int, prompt: int, output: int, spread: float = SPREAD,
              slo: Slo | None = None, shared_prefix: int = 0) -> tuple[SimResult, int]:
    """Closed loop: `users` users over all replicas, each sending ROUNDS requests back to back.
    With a TTFT target, a run sure to miss it stops early. `shared_prefix`: tokens every prompt
    starts with (a system prompt), which engines with prefix caching compute once."""
    per = max(1, math.ceil(users / s.replicas))
    stagger = _step_time_guess(s, per, prompt, output)
    g = group_for(s, per, prompt, output)
    n = max(1, round(per / g))
    g = per / n if g > 1 else 1.0
    load = Load("users", prompt, output, users=n, requests=ROUNDS * n, spread=spread,
                stagger_s=stagger, cohorts=min(COHORTS, n) if COHORTS else 0,
                quantum=max(1, round(output / QUANTA)), shared_prefix=shared_prefix)
    stop = None
    if slo is not None and (slo.ttft_s is not None or slo.tpot_s is not None):
        stop = StopRule(slo.ttft_s, share=(100.0 - slo.percentile) / 100.0, first=n, tpot_s=slo.tpot_s)
    return simulate(s.cost, s.sched, load, s.kv_tokens, stop=stop, group=g), per


def group_for(s: Setup, per: int, prompt: int, output: int) -> float:
    """Users per simulated user in a planning run of `per` users: past SIM_USERS, users go in
    identical groups (perf/serving.py simulate(group=...)), as long as the KV pool still holds
    KV_GROUPS groups' requests (twice over) and the engine's sequence limit 8 groups: where the
    pool is what requests queue for, admission and preemption stay fine-grained."""
    if per <= SIM_USERS or s.sched.kv_rule == "fixed":
        return 1.0
    g = min(per / SIM_USERS, s.kv_tokens / (KV_GROUPS * 2.0 * (prompt + output)), s.sched.max_seqs / 8.0)
    return g if g >= 1.5 else 1.0


def run_rate(s: Setup, rate: float, prompt: int, output: int, requests: int | None = None, spread: float = SPREAD,
             seed: int = 0, shared_prefix: int = 0) -> SimResult:
    """Open loop: Poisson arrivals at `rate` requests/s over all replicas (each gets its share),
    for long enough that the arrivals span several request lifetimes (a steady window)."""
    per_rate = rate / s.replicas
    if requests is None:
        life = _step_time_guess(s, max(1, min(s.sched.max_seqs, int(per_rate * 10) + 1)), prompt, output)
        requests = int(min(max(240, per_rate * 4 * life), 1200))
    load = Load("rate", prompt, output, rate=per_rate, requests=requests, spread=spread, seed=seed,
                quantum=max(1, round(output / QUANTA)), shared_prefix=shared_prefix)
    return simulate(s.cost, s.sched, load, s.kv_tokens)


def _pct(v, p: float) -> float:
    import numpy as np

    return float(np.percentile(v, p)) if len(v) else float("inf")


def _measured(res: SimResult, per_users: int | None):
    """(ttft, tpot, e2el) arrays of the measured requests: after the first round (closed loop)."""
    mask = res.index >= per_users if per_users else slice(None)
    t, p, e = res.ttft[mask], res.tpot[mask], res.e2el[mask]
    if len(t) == 0:
        t, p, e = res.ttft, res.tpot, res.e2el
    return t, p, e


def meets(res: SimResult, slo: Slo, per_users: int | None) -> bool:
    if res.aborted:
        return False
    t, p, e = _measured(res, per_users)
    ok = True
    if slo.ttft_s is not None:
        ok &= _pct(t, slo.percentile) <= slo.ttft_s
    if slo.tpot_s is not None:
        ok &= _pct(p, slo.percentile) <= slo.tpot_s
    if slo.e2el_s is not None:
        ok &= _pct(e, slo.percentile) <= slo.e2el_s
    return bool(ok)


def point(res: SimResult, replicas: int, per_users: int | None = None, users: int | None = None,
          rate: float | None = None, slo: Slo | None = None, whole: bool = False) -> ServingPoint:
    """One load level as the serving benchmark reports it. Throughput while the load was full
    (open loop: while requests arrive), or with `whole` over the whole run (a replayed trace)."""
    t, p, e = _measured(res, per_users)
    thr = res.output_throughput if whole else res.steady_output_throughput
    scale = thr / res.output_throughput if res.output_throughput else 1.0
    return ServingPoint(
        users=users, rate_rps=rate,
        request_throughput=round(res.request_throughput * scale * replicas, 3),
        output_throughput=round(thr * replicas, 1),
        total_token_throughput=round(res.total_token_throughput * scale * replicas, 1),
        ttft_ms=LatencyStats(**stats_ms(t)), tpot_ms=LatencyStats(**stats_ms(p[p > 0])),
        itl_ms=LatencyStats(**res.itl_ms), e2el_ms=LatencyStats(**stats_ms(e)),
        mean_batch=round(res.mean_batch, 1), kv_peak_fraction=round(res.peak_kv_fraction, 3),
        preemptions=res.preemptions,
        meets_targets=meets(res, slo, per_users) if slo is not None and slo.any else None)


def step_breakdown(s: Setup, batch: int, context: int) -> StepBreakdown:
    b = s.cost.breakdown(max(batch, 1), float(context))
    total = sum(b.values())
    names = {"weights": "memory bandwidth (weights)", "kv_cache": "memory bandwidth (KV cache)",
             "compute": "compute", "communication": "interconnect", "fixed": "fixed launch costs",
             "engine_overhead": "engine overhead per step"}
    bound = names[max(b, key=b.get)]
    return StepBreakdown(batch=max(batch, 1), context=int(context), step_ms=round(total * 1e3, 3),
                         weights_ms=round(b["weights"] * 1e3, 3), kv_cache_ms=round(b["kv_cache"] * 1e3, 3),
                         compute_ms=round(b["compute"] * 1e3, 3),
                         communication_ms=round(b["communication"] * 1e3, 3),
                         fixed_ms=round(b["fixed"] * 1e3, 3),
                         engine_overhead_ms=round(b["engine_overhead"] * 1e3, 3), bound=bound)


def _binding(s: Setup, res: SimResult, slo: Slo, per_users: int | None, prompt: int, output: int) -> str:
    """What stops the plan from holding more load, read from the first level that fails."""
    t, p, e = _measured(res, per_users)
    # a run stopped early missed the TTFT target (requests waited) or the TPOT one (slow steps)
    slow = res.aborted and res.slow_stop
    ttft_bad = slo.ttft_s is not None and ((res.aborted and not slow) or _pct(t, slo.percentile) > slo.ttft_s)
    tpot_bad = slo.tpot_s is not None and (slow or _pct(p, slo.percentile) > slo.tpot_s)
    step = step_breakdown(s, round(res.mean_batch), prompt + output // 2)
    if ttft_bad and res.kv_limited:
        return "KV cache blocks (requests wait for room, TTFT target missed)"
    if ttft_bad and res.seq_limited:
        return f"engine's sequence limit ({s.sched.max_seqs} running; the rest queue, TTFT target missed)"
    if tpot_bad:
        return f"TPOT target: decode steps are bound by {step.bound}"
    if ttft_bad:
        return f"TTFT target: prompt work queues behind {step.bound}"
    return f"e2e latency target ({step.bound})"


def _search_int(ok, guess: int, hi_cap: int) -> int:
    """Largest n in [1, hi_cap] with ok(n), for ok true up to some n and false after it (0 when
    ok(1) fails): steps of 1.5x from `guess` to a bracket, then bisection to 1/16."""
    n = max(1, min(guess, hi_cap))
    if ok(n):
        lo, hi = n, None
        while hi is None:
            nxt = min(max(n + 1, int(n * 1.5)), hi_cap)
            if nxt == n:
                return n
            if ok(nxt):
                lo = n = nxt
            else:
                hi = nxt
    else:
        hi = n
        lo = 0
        while lo == 0 and n > 1:
            n = max(1, int(n / 1.5))
            if ok(n):
                lo = n
            else:
                hi = n
        if lo == 0:
            return 0
    while hi - lo > max(1, lo // 8):
        mid = (lo + hi) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo


def _excess(res: SimResult, slo: Slo, per_users: int | None) -> float:
    """How far a run is from its targets: the largest measured/target ratio (<= 1 meets them)."""
    if res.aborted:
        return 2.0
    t, p, e = _measured(res, per_users)
    r = 0.0
    for lim, v in ((slo.ttft_s, t), (slo.tpot_s, p), (slo.e2el_s, e)):
        if lim is not None:
            r = max(r, _pct(v, slo.percentile) / lim)
    return r


def _search_excess(f, guess: int, hi_cap: int) -> tuple[int, int | None]:
    """Largest n in [1, hi_cap] with f(n) <= 1, for f growing with n: a bracket from `guess`, then
    interpolation on f inside it (a few runs), to 1/8 of the answer. Returns (n, the smallest n
    seen that misses, or None)."""
    lo, hi = 0, None
    n = max(1, min(guess, hi_cap))
    fl = fh = None
    for _ in range(12):
        v = f(n)
        if v <= 1.0:
            lo, fl = n, v
        else:
            hi, fh = n, v
        if hi is not None and hi - lo <= max(1, lo // 8):
            break
        if hi is None:
            if n >= hi_cap:
                break
            # at least the tolerance further (creeping up by the ratio alone can take a run per user)
            n = min(hi_cap, max(n + max(1, n // 8), int(n * (1.0 / max(v, 0.3)) if v > 0 else n * 2)))
            continue
        if lo == 0:
            if hi == 1:
                break
            n = max(1, int(hi / max(fh, 1.2) ** 1.5))  # latency grows faster than load near the limit
            continue
        # interpolate the crossing of f = 1 between the bracket ends, kept off the ends; bisect
        # when the miss is a run stopped early (its 2.0 says only "missed", not by how much)
        x = lo + (1.0 - fl) * (hi - lo) / max(fh - fl, 1e-9) if fh < 2.0 else (lo + hi) / 2
        n = int(min(max(x, lo + (hi - lo) / 8), hi - (hi - lo) / 8))
        n = min(max(n, lo + 1), hi - 1)
    return lo, hi


def _guess_users(s: Setup, slo: Slo, prompt: int, output: int, shared_prefix: int = 0) -> int:
    """Where to start looking, per replica: the fewest of the sequences the KV pool holds, the
    engine's sequence limit and the batch whose decode step still meets the TPOT target."""
    own = prompt - shared_prefix if shared_prefix and s.sched.prefix_cache in SHARING else prompt
    kv = max(1, int(s.kv_tokens / (own + 0.75 * output)))
    n = min(kv, s.sched.max_seqs)
    if slo.tpot_s is not None:
        def step(b):
            return float(s.cost.decode(b, prompt + output / 2.0))
        lo, hi = 1, n
        goal = 0.8 * slo.tpot_s  # prompt work between decode steps stretches TPOT past one step
        if step(1) > goal:
            return 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if step(mid) <= goal:
                lo = mid
            else:
                hi = mid
        n = lo
    return max(n, 1)


class _Runs:
    """Simulations of one plan per replica, by users per replica (replicas split the load
    round-robin, so one replica's run stands for all)."""

    def __init__(self, model, hw, plan: Plan, context: int, prompt: int, output: int, date: str | None,
                 slo: Slo | None = None, shared_prefix: int = 0):
        self.slo = slo
        self.shared_prefix = shared_prefix
        self.model, self.hw, self.plan, self.context, self.prompt, self.output, self.date = \
            model, hw, plan, context, prompt, output, date
        self.base = replace(plan, replicas=1)
        self.setup = setup_for(model, hw, self.base, context, 1, date)
        self.fixed_kv = self.setup.sched.kv_rule == "fixed"  # llama.cpp: a slot per user
        self.runs: dict[int, tuple[Setup, SimResult]] = {}

    def get(self, per: int) -> tuple[Setup, SimResult]:
        if per not in self.runs:
            check_budget()  # a web request's time budget (inputs.time_budget), between simulations
            s = setup_for(self.model, self.hw, self.base, self.context, per, self.date) if self.fixed_kv \
                else self.setup
            res, _ = run_users(s, per, self.prompt, self.output, slo=self.slo, shared_prefix=self.shared_prefix)
            self.runs[per] = (s, res)
        return self.runs[per]


_RUNS: dict = {}


def _runs_for(model, hw, plan, context, prompt, output, date, slo: Slo | None = None, shared_prefix: int = 0) -> _Runs:
    key = (id(model), id(hw), replace(plan, replicas=1), context, prompt, output, date, slo, shared_prefix)
    r = _RUNS.get(key)
    if r is None or r.model is not model or r.hw is not hw:
        if len(_RUNS) > 256:
            _RUNS.clear()
        r = _RUNS[key] = _Runs(model, hw, plan, context, prompt, output, date, slo, shared_prefix)
    return r


def capacity_users(model, hw, plan: Plan, slo: Slo, prompt: int, output: int, context: int,
                   curve_to: int | None = None, date: str | None = None, levels: list[int] | None = None,
                   with_curve: bool = True, guess: int | None = None, shared_prefix: int = 0) -> ServingCapacity:
    """Most concurrent users the plan holds under `slo` (all replicas together); without targets,
    the users where throughput stops growing (the knee). The search starts from `guess` users per
    replica (default: _guess_users)."""
    runs = _runs_for(model, hw, plan, context, prompt, output, date, slo if slo.any else None, shared_prefix)
    reps = max(plan.replicas, 1)
    base = runs.setup
    common = dict(strategy=plan.strategy, engine=plan.engine.value, replicas=reps, tp=plan.tp, pp=plan.pp,
                  kv_pool_tokens_per_replica=base.kv_tokens, max_seqs_per_replica=base.sched.max_seqs)
    if base.kv_tokens < prompt + output:
        return ServingCapacity(**common, max_users=0, binding="KV cache: one request does not fit")
    notes = [prefix_note(base.sched, shared_prefix)] if shared_prefix else []
    guess = guess or _guess_users(base, slo, prompt, output, shared_prefix)
    if slo.any:
        def f(per):
            return _excess(runs.get(per)[1], slo, per)

        per_cap, fail = _search_excess(f, guess, MAX_USERS)
        fail = fail or min(per_cap + max(1, per_cap // 8), MAX_USERS)
        s, res = runs.get(fail)
        binding = _binding(s, res, slo, fail, prompt, output)
    else:
        def grows(per):  # 1.5x the users still adds at least 5% throughput
            a = runs.get(per)[1].steady_output_throughput
            b = runs.get(max(per + 1, int(per * 1.5)))[1].steady_output_throughput
            return b > 1.05 * a

        per_cap = max(_search_int(grows, guess, MAX_USERS // 2), 1)
        s, res = runs.get(per_cap)
        step = step_breakdown(s, round(res.mean_batch), prompt + output // 2)
        binding = ("KV cache blocks (more users only queue)" if res.kv_limited else
                   f"engine's sequence limit ({s.sched.max_seqs})" if res.seq_limited else
                   f"throughput saturates: steps bound by {step.bound}")
        notes.append("no latency target given: capacity is where 1.5x the users adds under 5% throughput")
    at = step = None
    if per_cap >= 1:
        s, res = runs.get(per_cap)
        at = point(res, reps, per_cap, users=per_cap * reps, slo=slo)
        step = step_breakdown(s, round(res.mean_batch), prompt + output // 2)
    curve = users_curve(model, hw, plan, slo, prompt, output, context, per_cap * reps, curve_to, date,
                        levels, shared_prefix) if with_curve else []
    return ServingCapacity(**common, max_users=max(per_cap, 0) * reps, at_capacity=at,
                           binding=binding if per_cap >= 1 else "even one user misses the targets: " + binding,
                           step=step, curve=curve, notes=notes)


def users_curve(model, hw, plan: Plan, slo: Slo, prompt: int, output: int, context: int, cap: int,
                upto: int | None = None, date: str | None = None, levels: list[int] | None = None,
                shared_prefix: int = 0) -> list[ServingPoint]:
    """Throughput and latency percentiles against concurrent users (all replicas): whole runs."""
    runs = _runs_for(model, hw, plan, context, prompt, output, date, shared_prefix=shared_prefix)
    reps = max(plan.replicas, 1)
    out = []
    for u in sorted(set(levels or _levels(max(cap, 1), upto))):
        per = max(1, math.ceil(u / reps))
        s, res = runs.get(per)
        out.append(point(res, reps, per, users=per * reps, slo=slo))
    return out


def capacity_rate(model, hw, plan: Plan, slo: Slo, prompt: int, output: int, context: int,
                  date: str | None = None, requests: int | None = None, shared_prefix: int = 0) -> ServingCapacity:
    """Highest Poisson request rate the plan holds under `slo` (and without a growing queue)."""
    s = setup_for(model, hw, plan, context, 64, date)
    cache: dict[float, SimResult] = {}

    def sim(r: float) -> SimResult:
        key = round(r, 6)
        if key not in cache:
            check_budget()
            cache[key] = run_rate(s, r, prompt, output, requests, shared_prefix=shared_prefix)
        return cache[key]

    def stable(res: SimResult) -> bool:
        """The queue does not grow: the last quarter of the requests wait no longer for their
        first token than the first quarter (beyond a step or two)."""
        import numpy as np

        if res.completed < 8:
            return False
        order = np.argsort(res.arrival, kind="stable")
        t = res.ttft[order]
        q = max(len(t) // 4, 1)
        first, last = float(np.median(t[:q])), float(np.median(t[-q:]))
        return last <= 1.5 * first + 0.05

    def ok(r: float) -> bool:
        res = sim(r)
        return stable(res) and (meets(res, slo, None) if slo.any else True)

    # a first guess from the decode throughput at the engine's batch limit, then bracket and bisect
    b = min(s.sched.max_seqs, max(s.kv_tokens // max(prompt + output, 1), 1))
    r = s.replicas * b / max(_step_time_guess(s, b, prompt, output), 1e-6)
    if ok(r):
        lo, hi = r, 2 * r
        for _ in range(24):
            if not ok(hi):
                break
            lo, hi = hi, 2 * hi
    else:
        lo, hi = r / 2, r
        for _ in range(24):
            if ok(lo):
                break
            lo, hi = lo / 2, lo
        else:
            lo = 0.0
    for _ in range(8):
        if lo <= 0 or hi - lo < 0.03 * hi:
            break
        mid = (lo + hi) / 2
        if ok(mid):
            lo = mid
        else:
            hi = mid
    res = sim(hi)
    binding = "requests arrive faster than the engine completes them (the queue grows)" \
        if not stable(res) else _binding(s, res, slo, None, prompt, output)
    at = point(sim(lo), s.replicas, rate=round(lo, 3), slo=slo) if lo > 0 else None
    curve = [point(sim(r), s.replicas, rate=round(r, 3), slo=slo)
             for r in sorted({round(lo * f, 6) for f in (0.25, 0.5, 0.75, 1.0)} | {round(hi, 6)}) if r > 0]
    return ServingCapacity(strategy=plan.strategy, engine=plan.engine.value, replicas=s.replicas, tp=plan.tp,
                           pp=plan.pp, kv_pool_tokens_per_replica=s.kv_tokens,
                           max_seqs_per_replica=s.sched.max_seqs, max_rate_rps=round(lo, 3), at_capacity=at,
                           binding=binding, step=step_breakdown(s, round(res.mean_batch), prompt + output // 2),
                           curve=curve, notes=[prefix_note(s.sched, shared_prefix)] if shared_prefix else [])


def _levels(cap: int, upto: int | None) -> list[int]:
    top = max(2 * cap, upto or 1)
    out, u = [], 1
    while u <= top:
        out.append(u)
        u *= 2
    out += [cap] + ([upto] if upto else [])
    return [x for x in out if x >= 1]


def plan_for_targets(model: LoadedModel, hw: Hardware, plans: list[Plan], slo: Slo, prompt: int, output: int,
                     context: int, users: int | None = None, rate: float | None = None,
                     date: str | None = None, shared_prefix: int = 0) -> ServingAnswer:
    """Capacity of every candidate plan under the targets; the best holds the most load."""
    if rate is not None and not (rate > 0 and math.isfinite(rate)):
        raise InputError(f"--rate {rate} is not accepted; give a positive number of requests/s")
    mode = "rate" if rate is not None else "users"
    out: list[ServingCapacity] = []
    found: dict = {}  # engine, and (tp, pp) -> users found / first guess, per candidate searched
    for plan in plans:
        try:
            if mode == "rate":
                out.append(capacity_rate(model, hw, plan, slo, prompt, output, context, date,
                                         shared_prefix=shared_prefix))
            else:
                guess, raw = _calibrated_guess(model, hw, plan, slo, prompt, output, context, date, found,
                                               shared_prefix)
                cap = capacity_users(model, hw, plan, slo, prompt, output, context, curve_to=users, date=date,
                                     with_curve=False, guess=guess, shared_prefix=shared_prefix)
                out.append(cap)
                if cap.max_users and raw:
                    r = cap.max_users / max(plan.replicas, 1) / raw
                    found.setdefault(plan.engine, []).append(r)
                    found.setdefault((plan.tp, plan.pp), []).append(r)
        except OverBudget:  # the request's time is spent: no candidate gets an answer
            raise
        except InputError as e:
            out.append(ServingCapacity(strategy=plan.strategy, engine=plan.engine.value, replicas=plan.replicas,
                                       tp=plan.tp, pp=plan.pp, kv_pool_tokens_per_replica=0, max_seqs_per_replica=0,
                                       binding=str(e)))
    key = (lambda c: c.max_rate_rps or 0.0) if mode == "rate" else (lambda c: c.max_users or 0)
    best = max(range(len(out)), key=lambda i: (key(out[i]), -i)) if out else None
    if best is not None and mode == "users" and (out[best].max_users or 0) > 0:
        out[best].curve = users_curve(model, hw, plans[best], slo, prompt, output, context, out[best].max_users,
                                      users, date, shared_prefix=shared_prefix)
    ans = ServingAnswer(mode=mode, targets={"ttft_s": slo.ttft_s, "tpot_s": slo.tpot_s, "e2el_s": slo.e2el_s,
                                            "percentile": slo.percentile},
                        prompt_tokens=prompt, output_tokens=output, requested=rate if mode == "rate" else users,
                        candidates=out, best=best)
    ans.explanation = _explain(ans) + ([shared_prefix_line(shared_prefix, prompt)] if shared_prefix else [])
    return ans


def _calibrated_guess(model, hw, plan: Plan, slo: Slo, prompt: int, output: int, context: int, date,
                      found: dict[tuple, list[float]], shared_prefix: int = 0) -> tuple[int | None, int]:
    """Where a candidate's search starts: _guess_users (the decode step alone) scaled by how far
    the simulated capacity fell from it for the candidates searched before (the same engine
    first, else the same TP x PP; a guess at the engine's sequence limit only by the same
    engine's), a little under that (a search that starts just below the answer brackets it in
    two runs). Returns (the start, or None for the default; the unscaled guess)."""
    if not slo.any:
        return None, 0
    base = _runs_for(model, hw, plan, context, prompt, output, date, slo, shared_prefix).setup
    if base.kv_tokens < prompt + output:
        return None, 0
    raw = _guess_users(base, slo, prompt, output, shared_prefix)
    ratios = found.get((plan.tp, plan.pp)) if raw < 0.9 * base.sched.max_seqs else None
    ratios = ratios or found.get(plan.engine)
    if not ratios:
        return None, raw
    r = sorted(ratios)[len(ratios) // 2]
    return max(1, int(raw * r * 0.97)), raw


def _explain(ans: ServingAnswer) -> list[str]:
    if ans.best is None:
        return ["no candidate plan fits"]
    c = ans.candidates[ans.best]
    tgt = ", ".join(f"{k[:-2].upper()} <= {v * 1e3:g} ms" for k, v in ans.targets.items()
                    if k.endswith("_s") and v is not None)
    pct = f"p{ans.targets['percentile']:g}"
    lines = []
    held = c.max_users if ans.mode == "users" else c.max_rate_rps
    if not held:  # not one user (or no rate) holds under the targets on any candidate
        lines.append(f"no candidate holds {'even one user' if ans.mode == 'users' else 'any request rate'}"
                     + (f" with {pct} {tgt}" if tgt else "") + f"; the best, {c.strategy} ({c.engine}): {c.binding}.")
    elif ans.mode == "users":
        lines.append(f"{c.strategy} ({c.engine}) holds {c.max_users} concurrent user{'s' if c.max_users != 1 else ''}"
                     + (f" with {pct} {tgt}" if tgt else "") + f"; beyond that: {c.binding}.")
    else:
        lines.append(f"{c.strategy} ({c.engine}) holds {c.max_rate_rps:g} requests/s"
                     + (f" with {pct} {tgt}" if tgt else "") + f"; beyond that: {c.binding}.")
    if ans.requested:
        n = int(ans.requested) if ans.mode == "users" else ans.requested
        unit = (f"{n} user{'s' if n != 1 else ''}" if ans.mode == "users" else f"{n:g} requests/s")
        lines.append(f"{unit}: {'within' if (held or 0) >= ans.requested else 'beyond'} what this plan holds.")
    if c.step:
        s = c.step
        lines.append(f"a decode step of {s.batch} sequences at {s.context} tokens takes {s.step_ms:.1f} ms: "
                     f"weights {s.weights_ms:.1f} + KV {s.kv_cache_ms:.1f} + compute {s.compute_ms:.1f} + "
                     f"communication {s.communication_ms:.1f} + fixed {s.fixed_ms:.1f} + engine "
                     f"{s.engine_overhead_ms:.1f} ms (bound by {s.bound})")
    return lines


# ---------------------------------------------------------------- shared prefixes

SHARING = ("blocks", "blocks-partial")  # engines whose running sequences share the prefix's KV blocks


def prefix_note(sched: Scheduler, shared_prefix: int) -> str:
    """What the engine does with a prefix every request shares (perf/serving_prefix.py)."""
    how = {"blocks": "computed once; its KV blocks are cached and shared by every running sequence",
           "blocks-partial": "computed once; its KV blocks (a partly filled last one copied) are cached and"
                             " shared by every running sequence",
           "slots": "each slot reuses it from its previous request (or from the host-RAM prompt cache);"
                    " every slot holds its own copy"}.get(sched.prefix_cache or "",
                                                         "computed for every request (no prefix caching by default)")
    return f"shared prefix of {shared_prefix:,} tokens on {sched.engine}: {how}"


def shared_prefix_line(shared_prefix: int, prompt: int) -> str:
    return (f"every prompt starts with the same {shared_prefix:,} of its {prompt:,} tokens: engines with prefix caching"
            " (vLLM V1, SGLang, TensorRT-LLM by default; llama-server per slot) compute them once, LMDeploy by"
            " default for every request")


# ---------------------------------------------------------------- the plan command's serving answer

SERVING_ENGINES = (Engine.VLLM, Engine.SGLANG, Engine.TRT_LLM, Engine.LMDEPLOY)


def serving_plans(model: LoadedModel, hw: Hardware, plans: list[Plan], context: int, prompt: int,
                  output: int, engine: Engine | None = None) -> list[Plan]:
    """The candidates a serving question compares: fitting plans that use every device (replicas x
    TP x PP fill the box; a plan on part of it only holds less), each with every engine that can run
    it and whose KV pool holds one request (only `engine`, when the user named one)."""
    from .. import engines as eng_mod
    from ..types import Workload

    full = [p for p in plans if len(p.device_ids) * max(p.replicas, 1) == hw.n] or plans
    out: list[Plan] = []
    seen = set()
    wl = Workload(context=context, prompt_tokens=prompt, output_tokens=output)
    for p in full:
        variants = [p]
        if p.engine not in (Engine.LLAMA_CPP, Engine.OLLAMA):
            variants += [replace(p, engine=e) for e in SERVING_ENGINES if e != p.engine]
        for v in variants:
            key = (v.engine, v.split, v.tp, v.pp, v.replicas, len(v.device_ids), v.kv_type)
            if key in seen:
                continue
            if v is not p and _unsupported(eng_mod, v, model, hw, wl):
                continue
            seen.add(key)
            out.append(v)
    if engine is not None and any(p.engine == engine for p in out):
        out = [p for p in out if p.engine == engine]
    return out


def _unsupported(eng_mod, plan, model, hw, wl) -> bool:
    entry = getattr(eng_mod, "ENGINES", {}).get(plan.engine.value)
    if entry is None:
        return True
    try:
        return bool(entry.supports(plan, model, hw, wl))
    except TypeError:  # engine modules of the older two-argument interface
        return bool(entry.supports(plan, model))


def at_users(model, hw, plan: Plan, users: int, prompt: int, output: int, context: int,
             date: str | None = None, shared_prefix: int = 0) -> ServingCapacity:
    """One plan at `users` concurrent users (no targets): throughput, latency percentiles, the step
    at that load and its breakdown, and the curve up to twice the users."""
    runs = _runs_for(model, hw, plan, context, prompt, output, date, shared_prefix=shared_prefix)
    reps = max(plan.replicas, 1)
    per = max(1, math.ceil(users / reps))
    s, res = runs.get(per)
    step = step_breakdown(s, round(res.mean_batch), prompt + output // 2)
    binding = ("KV cache blocks: requests wait for room" if res.kv_limited else
               f"engine's sequence limit ({s.sched.max_seqs} running)" if res.seq_limited else
               f"decode steps bound by {step.bound}")
    return ServingCapacity(strategy=plan.strategy, engine=plan.engine.value, replicas=reps, tp=plan.tp, pp=plan.pp,
                           kv_pool_tokens_per_replica=s.kv_tokens, max_seqs_per_replica=s.sched.max_seqs,
                           at_capacity=point(res, reps, per, users=per * reps), binding=binding, step=step,
                           curve=users_curve(model, hw, plan, Slo(), prompt, output, context, users, users, date,
                                             shared_prefix=shared_prefix),
                           notes=[prefix_note(s.sched, shared_prefix)] if shared_prefix else [])


def serving_answer(model: LoadedModel, hw: Hardware, plans: list[Plan], context: int, prompt: int, output: int,
                   users: int = 1, rate: float | None = None, slo: Slo | None = None,
                   date: str | None = None, engine: Engine | None = None,
                   shared_prefix: int = 0) -> ServingAnswer | None:
    """The plan command's serving section. With latency targets or a request rate: the most load
    every candidate (replicas x TP x PP x engine, on all the devices) holds under them. Without
    targets but with several users: the recommended plan (plans[0]) at those users, its step and the
    curve. Nothing for one user and no targets."""
    slo = slo or Slo()
    if not plans:
        return None
    if slo.any or rate is not None:
        cands = serving_plans(model, hw, plans, context, prompt, output, engine)
        return plan_for_targets(model, hw, cands, slo, prompt, output, context, users=users, rate=rate, date=date,
                                shared_prefix=shared_prefix)
    if users <= 1:
        return None
    c = at_users(model, hw, plans[0], users, prompt, output, context, date, shared_prefix)
    ans = ServingAnswer(mode="users", targets={"ttft_s": None, "tpot_s": None, "e2el_s": None, "percentile": 90.0},
                        prompt_tokens=prompt, output_tokens=output, requested=users, candidates=[c], best=0)
    p = c.at_capacity
    # one-token answers have no time per output token (vLLM's benchmark reports none either)
    tpot = (f", TPOT p50 {p.tpot_ms.median:,.1f} / p90 {p.tpot_ms.p90:,.1f} / p99 {p.tpot_ms.p99:,.1f} ms"
            if p.tpot_ms.median is not None else ", no TPOT (one-token answers)")
    lines = [f"{users} users on {c.strategy} ({c.engine}): {p.output_throughput:,.0f} tok/s in all, TTFT p50 "
             f"{p.ttft_ms.median:,.0f} / p90 {p.ttft_ms.p90:,.0f} / p99 {p.ttft_ms.p99:,.0f} ms{tpot}; {c.binding}."]
    s = c.step
    lines.append(f"a decode step of {s.batch} sequences at {s.context} tokens takes {s.step_ms:.1f} ms: "
                 f"weights {s.weights_ms:.1f} + KV {s.kv_cache_ms:.1f} + compute {s.compute_ms:.1f} + "
                 f"communication {s.communication_ms:.1f} + fixed {s.fixed_ms:.1f} + engine {s.engine_overhead_ms:.1f} ms")
    if shared_prefix:
        lines += [shared_prefix_line(shared_prefix, prompt), *c.notes]
    ans.explanation = lines
    return ans


def plan_throughput(model: LoadedModel, hw: Hardware, plan: Plan, users: int, prompt: int, output: int,
                    context: int, date: str | None = None):
    """The plan's total output tokens/s for `users` concurrent users, from the serving simulator
    (the engine's scheduler and KV pool, replicas splitting the users), as a speed Estimate with the
    decode step at that load as its breakdown."""
    from ..types import Estimate, Metric

    runs = _runs_for(model, hw, plan, context, prompt, output, date)
    reps = max(plan.replicas, 1)
    per = max(1, math.ceil(users / reps))
    # past what the engine can run at once (its sequence limit or its KV pool), more users only
    # queue: throughput is that of a few times the limit, so the run stops there
    base = runs.setup
    held = max(1, base.kv_tokens // max(prompt + output, 1))
    per_sim = per if runs.fixed_kv else min(per, max(64, 3 * min(base.sched.max_seqs, held)))
    s, res = runs.get(per_sim)
    b = s.cost.breakdown(max(1, round(res.mean_batch)), float(prompt + output // 2))
    step = step_breakdown(s, round(res.mean_batch), prompt + output // 2)
    roof = s.cost.roofline_step(max(1, round(res.mean_batch)), float(prompt + output // 2))
    value = res.steady_output_throughput * reps
    limit = reps * max(1, round(res.mean_batch)) / roof if roof > 0 else 0.0
    if res.completed == 0:
        notes = ("serving simulator: no request fits the engine's KV cache",)
    else:
        notes = (f"serving simulator: {per} users per replica"
                 + (f" (simulated at {per_sim}: the rest queue)" if per_sim < per else "")
                 + f", {res.mean_batch:.0f} decoding at once on average, "
                 f"TTFT p50 {res.ttft_ms['median'] or 0:.0f} ms, TPOT p50 {res.tpot_ms['median'] or 0:.1f} ms",)
    return Estimate(value=value, metric=Metric.THROUGHPUT, seconds=b, bound=step.bound,
                    roofline_fraction=min(value / limit, 1.0) if limit else 0.0, notes=notes)
