"""Plan search: generate candidate plans, filter by memory (each rejection has a reason a
person can read), estimate speed, rank by the user's goal."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..engines.placement import MAX_GPUS as LLAMA_MAX_GPUS
from ..errors import InputError
from ..inputs import check_budget
from ..perf import speed
from ..perf.engine_profiles import LLAMA_FAMILY
from ..perf.memory import device_memory, fits
from ..types import DeviceMemory, Engine, Estimate, Hardware, LoadedModel, Plan, Split, Workload
from .shares import proportional_shares

GOALS = ("latency", "throughput", "cost")
SIMPLER_WITHIN = 0.03  # prefer fewer GPUs when the faster plan gains less than this


@dataclass
class Candidate:
    plan: Plan
    memory: list[DeviceMemory]
    fits: bool
    reason: str | None = None
    decode: Estimate | None = None
    prefill: Estimate | None = None
    throughput: Estimate | None = None
    per_user_tok_s: float = 0.0
    concurrent: int = 0
    verdict: str = ""
    score: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def n_devices(self) -> int:
        return len(self.plan.device_ids) * max(self.plan.replicas, 1)


def _groups(hw: Hardware) -> list[tuple[int, ...]]:
    """Which devices to use: for identical cards 1, 2, 4, ... and all of them; for mixed cards
    each single card, the biggest first, and growing sets of the biggest. Several nodes: the
    user deploys across all of them, so every plan spans all devices."""
    n = hw.n
    if n == 1:
        return [(0,)]
    if hw.nodes > 1:
        return [tuple(range(n))]
    per_node = n // hw.nodes
    order = sorted(range(n), key=lambda i: (-hw.memory_gib[i], -hw.devices[i].memory_bandwidth_gb_s, i))
    ks = sorted({k for k in (1, 2, 3, 4, 6, 8, 16, 32, 64, per_node, n) if k <= n})
    groups = {tuple(sorted(order[:k])) for k in ks}
    if len({d.id for d in hw.devices}) > 1:
        seen = set()
        for i in order:
            if hw.devices[i].id not in seen:
                seen.add(hw.devices[i].id)
                groups.add((i,))
    return sorted(groups, key=lambda g: (len(g), g))


def _valid_tp(model: LoadedModel, k: int) -> str | None:
    from ..sources.arch import tp_problem  # heads, KV heads and SSM heads, from the per-layer description

    return tp_problem(model.spec, k)


def enumerate_plans(model: LoadedModel, hw: Hardware, wl: Workload, engines: list[Engine],
                    kv: str = "f16", options: dict | None = None) -> list[Plan]:
    """Every plan for these engines; `options` are the user's engine settings (Plan fields)."""
    plans = _enumerate(model, hw, wl, engines, kv)
    return [replace(p, **options) for p in plans] if options else plans


def _enumerate(model: LoadedModel, hw: Hardware, wl: Workload, engines: list[Engine], kv: str) -> list[Plan]:
    plans: list[Plan] = []
    for eng in engines:
        llama = eng in LLAMA_FAMILY
        for g in _groups(hw):
            k = len(g)
            if k == 1:
                plans.append(Plan(split=Split.NONE, engine=eng, device_ids=g, kv_type=kv))
                continue
            if llama and k <= LLAMA_MAX_GPUS:  # 15 GPUs + the CPU fill ggml's 16 backends
                plans.append(Plan(split=Split.LAYER, engine=eng, device_ids=g, kv_type=kv))
                plans.append(Plan(split=Split.ROW, engine=eng, device_ids=g, kv_type=kv))
            else:
                per_node = k // hw.nodes if k == hw.n and hw.nodes > 1 else k
                pp = k // per_node
                plans.append(Plan(split=Split.TENSOR, engine=eng, device_ids=g, tp=per_node, pp=pp, kv_type=kv))
                if eng == Engine.VLLM and hw.nodes == 1:
                    plans.append(Plan(split=Split.TENSOR, engine=eng, device_ids=g, tp=1, pp=k, kv_type=kv))
                if eng == Engine.EXLLAMAV2:
                    plans.append(Plan(split=Split.LAYER, engine=eng, device_ids=g, kv_type=kv))
            # replicas: r copies over k/r devices each (same-model cards only)
            if len({hw.devices[i].id for i in g}) == 1 and hw.nodes == 1:
                for r in (2, 3, 4, 8):
                    if r <= k and k % r == 0:
                        sub = g[: k // r]
                        if len(sub) == 1:
                            base = Plan(split=Split.NONE, engine=eng, device_ids=sub, kv_type=kv)
                        elif llama:
                            base = Plan(split=Split.LAYER, engine=eng, device_ids=sub, kv_type=kv)
                        else:
                            base = Plan(split=Split.TENSOR, engine=eng, device_ids=sub, tp=len(sub), kv_type=kv)
                        plans.append(replace(base, replicas=r))
    return plans


def _offload_variant(model, hw, plan, wl) -> Plan | None:
    """The most layers on the GPU(s) that still fit, the rest in RAM (llama.cpp -ngl)."""
    lo, hi = 0, model.spec.n_layers
    if not fits(device_memory(model, hw, replace(plan, gpu_layers=0), wl)):
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(device_memory(model, hw, replace(plan, gpu_layers=mid), wl)):
            lo = mid
        else:
            hi = mid
    return replace(plan, gpu_layers=lo)


def _n_cpu_moe_variant(model, hw, plan, wl) -> Plan | None:
    """The fewest MoE layers whose experts go to RAM (--n-cpu-moe N) for the rest to fit on the
    card(s): the standard answer for a MoE model on a small GPU, which fills it instead of
    leaving it nearly empty as --cpu-moe does."""
    spec = model.spec
    n_moe = spec.n_layers - spec.n_dense_layers

    def ok(n: int) -> bool:
        v = replace(plan, n_cpu_moe=n)
        v = _with_shares(model, hw, replace(v, shares=()), wl) if v.split == Split.LAYER else v
        return fits(device_memory(model, hw, v, wl))

    if n_moe < 2 or not ok(n_moe):
        return None
    lo, hi = 0, n_moe  # ok(hi) holds, ok(lo) does not (the plan did not fit as it was)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return replace(plan, n_cpu_moe=hi) if hi < n_moe else None


def _with_shares(model, hw, plan, wl) -> Plan:
    if plan.split in (Split.LAYER, Split.ROW) and len(plan.device_ids) > 1 and not plan.shares:
        return replace(plan, shares=proportional_shares(model, hw, plan, wl))
    return plan


def _reason(model, hw, plan, mem) -> str:
    from .defaults import shortfall

    return f"does not fit: {shortfall(mem, plan.engine)}"


def evaluate(model: LoadedModel, hw: Hardware, plan: Plan, wl: Workload, date=None) -> Candidate:
    """Memory first: how many sequences of `wl.context` tokens fit per replica (users beyond
    that queue, as in any serving engine); then speed for one user and for the whole load."""
    from ..perf.predict import max_batch_for

    from ..perf.serving_engines import kv_tokens_held

    reps = max(plan.replicas, 1)
    per_rep = -(-wl.users // reps)
    # paged engines (vLLM, SGLang, TensorRT-LLM, LMDeploy) hold what each sequence has so far, at
    # most its prompt and output, and need room for one full-context sequence; llama.cpp slots
    # reserve the whole context each
    held = kv_tokens_held(plan.engine, wl.context, wl.prompt_tokens, wl.output_tokens)
    room = max_batch_for(model, hw, plan, held)
    if held < wl.context and max_batch_for(model, hw, plan, wl.context, limit=1) < 1:
        room = 0
    conc = max(1, min(per_rep, room))
    plan = replace(plan, slots=conc)  # the commands size their KV cache by it
    # the table holds what the sequences hold, and at least one full-context sequence (paged
    # engines check that one max_model_len sequence fits at start-up)
    per_seq = held if held >= wl.context else max(held, -(-wl.context // conc))
    mem = device_memory(model, hw, plan, replace(wl, users=conc * reps, context=per_seq))
    ok = fits(mem)
    cand = Candidate(plan=plan, memory=mem, fits=ok, reason=None if ok else _reason(model, hw, plan, mem))
    if plan.split == Split.TENSOR and plan.tp > 1:
        bad = _valid_tp(model, plan.tp)
        if bad:
            cand.fits, cand.reason = False, f"tensor parallel {plan.tp} not possible: {bad}"
            return cand
    cand.concurrent = conc
    if not ok:  # a plan that cannot start has no speed
        return cand
    if conc < per_rep:
        cand.notes.append(f"{per_rep} users per copy of the model, KV cache room for {conc} at"
                          f" {held} tokens each: the rest queue")
    cand.decode = speed.decode(model, hw, plan, depth=wl.prompt_tokens, n_gen=wl.output_tokens, date=date)
    cand.prefill = speed.prefill(model, hw, plan, prompt=wl.prompt_tokens, date=date)
    if wl.users > 1:  # several users: the serving simulator runs the engine's scheduler on the plan
        from .targets import plan_throughput

        cand.throughput = plan_throughput(model, hw, plan, wl.users, wl.prompt_tokens, wl.output_tokens,
                                          wl.context, date)
    else:
        cand.throughput = speed.throughput(model, hw, plan, wl.users, wl.prompt_tokens, wl.output_tokens,
                                           max_batch=conc, date=date)
    # users beyond what fits wait their turn, so each user's share counts everyone
    cand.per_user_tok_s = min(cand.decode.value, cand.throughput.value / max(wl.users, 1))
    return cand


def candidates(model: LoadedModel, hw: Hardware, wl: Workload, engines: list[Engine],
               kv: str | None = None, options: dict | None = None) -> list[Candidate]:
    """Every plan for these engines; a plan that does not fit also tries a quantized KV cache
    (unless the user gave --kv), MoE experts in RAM (all or the fewest layers' that make the rest
    fit) and layers in RAM, where the engine can. options: the user's engine settings."""
    out: list[Candidate] = []
    for plan in enumerate_plans(model, hw, wl, engines, kv or "f16", options):
        check_budget()
        plan = _with_shares(model, hw, plan, wl)
        c = evaluate(model, hw, plan, wl)
        out.append(c)
        llama = plan.engine in LLAMA_FAMILY
        if not c.fits and plan.split in (Split.NONE, Split.LAYER) and plan.replicas == 1:
            variants = []
            if model.spec.n_experts and llama:
                variants.append(replace(plan, experts_on_host=True))
                some = _n_cpu_moe_variant(model, hw, plan, wl)
                if some is not None:
                    variants.append(some)
            if kv is None:
                for q in (("q8_0", "q4_0") if llama else ("fp8",)):
                    variants.append(replace(plan, kv_type=q))
            unified = any(hw.devices[i].kind == "cpu" or hw.devices[i].unified for i in plan.device_ids)
            if llama and not unified:  # a Mac or a CPU has no separate RAM to offload to
                off = _offload_variant(model, hw, plan, wl)
                if off is not None and off.gpu_layers > 0:
                    variants.append(off)
            for v in variants:
                v = _with_shares(model, hw, replace(v, shares=()), wl) if v.split == Split.LAYER else v
                cv = evaluate(model, hw, v, wl)
                if cv.fits:
                    out.append(cv)
    return out


def _price(hw: Hardware, plan: Plan) -> float:
    used = [hw.devices[i] for i in plan.device_ids] * max(plan.replicas, 1)
    return sum(d.used_price_usd or d.launch_price_usd or 0.0 for d in used)


def kv_level(c: Candidate) -> int:
    from .defaults import KV_LEVEL

    return KV_LEVEL.get(c.plan.kv_type, 2)


def meets(c: Candidate, wl: Workload) -> bool:
    """Whether a plan fits and serves each user at least --min-user-tok-s (every goal)."""
    return c.fits and c.per_user_tok_s >= wl.min_user_tok_s


def rank(cands: list[Candidate], wl: Workload, hw: Hardware) -> list[Candidate]:
    """Best first by the goal's score. A quantized KV cache must earn its place: each level below
    16 bits (q8_0/fp8, then 4-5 bit) needs KV_QUANT_MIN_GAIN more score to rank above a plan with a
    better cache. Plans slower per user than wl.min_user_tok_s rank after those that meet it, the
    closest first. Among plans within SIMPLER_WITHIN of the best (and no worse a cache), the one with
    the fewest GPUs, then without RAM offload, wins. A plan described exactly like a better one is
    dropped (the alternatives never list the same thing twice)."""
    from .defaults import KV_QUANT_MIN_GAIN

    if wl.goal not in GOALS:
        raise InputError(f"goal '{wl.goal}' is not accepted; accepted: {', '.join(GOALS)}", input="goal",
                         value=wl.goal, accepted=", ".join(GOALS))
    for c in cands:
        if not c.fits:
            c.score = -1.0
            continue
        if wl.goal == "latency":
            c.score = c.decode.value if wl.users <= 1 else c.per_user_tok_s
        elif wl.goal == "throughput":
            c.score = c.throughput.value
        else:
            price = _price(hw, c.plan)
            c.score = c.throughput.value / price * 1000 if price else c.throughput.value

    def effective(c: Candidate) -> float:
        return c.score / (1 + KV_QUANT_MIN_GAIN) ** kv_level(c)

    fitting = sorted([c for c in cands if c.fits and meets(c, wl)], key=lambda c: -effective(c))
    # fitting plans that serve a user slower than --min-user-tok-s: after every plan that meets
    # it, the closest first (when none meets it, the closest is the answer, and says so)
    short = sorted([c for c in cands if c.fits and not meets(c, wl)], key=lambda c: -c.per_user_tok_s)
    if fitting:
        best = fitting[0]
        # a row split synchronises inside every layer: within SIMPLER_WITHIN a layer split is simpler
        def plainness(c):
            return c.n_devices, c.plan.gpu_layers is not None, c.plan.split == Split.ROW

        simpler = [c for c in fitting if effective(c) >= effective(best) * (1 - SIMPLER_WITHIN)
                   and kv_level(c) <= kv_level(best)
                   and plainness(c) < plainness(best)]
        if simpler:
            pick = min(simpler, key=lambda c: (plainness(c), -effective(c)))
            fitting.remove(pick)
            fitting.insert(0, pick)
    rest = sorted([c for c in cands if not c.fits], key=lambda c: min(m.free for m in c.memory), reverse=True)
    seen, out = set(), []
    for c in fitting + short + rest:
        key = (c.plan.description, c.plan.engine, tuple(sorted(hw.devices[i].id for i in c.plan.device_ids)))
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out
