"""`gpuplan plan`: solve a PlanRequest (candidates, ranking, verdicts) and turn the answer into a
PlanResult, the JSON contract of DESIGN.md plus the assumptions behind it."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..requests import PlanRequest
from ..results import (METRIC_WORDS, Assumptions, Candidate as CandidateResult, EngineVerdict, MemoryRow,
                       PlanDevice, PlanResult, PlanShape, Ratio, StrAssumption, Workload as WorkloadResult)
from ..types import Hardware, LoadedModel, Split, Workload
from .defaults import default_lengths
from .search import Candidate, candidates, kv_level, rank


def _gb(x: float) -> float:
    return round(x / 1e9, 2)


def _r(x: float | None, nd: int = 1):
    return None if x is None else round(x, nd)


def describe_hw(hw: Hardware, ids) -> str:
    from collections import Counter

    names = Counter(hw.devices[i].name for i in ids)
    return " + ".join(f"{n}x {name}" if n > 1 else name for name, n in names.items())


def memory_rows(mem) -> list[MemoryRow]:
    return [MemoryRow(name=m.name, weights_gb=_gb(m.weights), kv_cache_gb=_gb(m.kv_cache),
                      overhead_gb=_gb(m.overhead), total_gb=_gb(m.total), capacity_gb=_gb(m.capacity),
                      free_gb=_gb(m.free)) for m in mem]


def plan_shape(c: Candidate, hw: Hardware, n_layers: int) -> PlanShape:
    from ..perf.memory import layers_per_device

    p = c.plan
    layers = None
    if p.split == Split.LAYER and p.shares:
        layers = layers_per_device(p.gpu_layers if p.gpu_layers is not None else n_layers, p.shares)
    return PlanShape(strategy=p.description, split=p.split.value, engine=p.engine.value,
                     devices=[PlanDevice(index=i, id=hw.devices[i].id, share=p.shares[j] if p.shares else None)
                              for j, i in enumerate(p.device_ids)],
                     tp=p.tp, pp=p.pp, replicas=p.replicas, gpu_layers=p.gpu_layers, kv_type=p.kv_type,
                     experts_on_host=p.experts_on_host, n_cpu_moe=p.n_cpu_moe,
                     flash_attention=_settings(p).flash_attn,
                     hardware=describe_hw(hw, p.device_ids) + (f" (x{p.replicas} replicas)" if p.replicas > 1 else ""),
                     layers_per_device=layers)


def _settings(plan):
    from ..perf.engine_profiles import settings

    return settings(plan, host_layers=plan.gpu_layers is not None)


def candidate_result(c: Candidate, hw: Hardware, n_layers: int, cls=CandidateResult, **extra):
    """A candidate as the contract has it; speeds only when it fits."""
    ok = c.fits and c.decode is not None
    return cls(fits=c.fits, plan=plan_shape(c, hw, n_layers),
               decode_tok_s=_r(c.decode.value) if ok else None,
               decode_tok_s_range=[_r(v) for v in c.decode.range] if ok and c.decode.range else None,
               decode_range_measurements=c.decode.range_n if ok else None,
               decode_range_class=c.decode.range_class if ok else None,
               prefill_tok_s=_r(c.prefill.value) if ok else None,
               prefill_tok_s_range=[_r(v) for v in c.prefill.range] if ok and c.prefill.range else None,
               throughput_tok_s=_r(c.throughput.value) if ok else None,
               per_user_tok_s=_r(c.per_user_tok_s) if ok else None,
               concurrent_per_replica=c.concurrent, bound=c.decode.bound if ok else None,
               roofline_fraction=_r(c.decode.roofline_fraction, 3) if ok else None,
               breakdown_ms_per_token={k: round(v * 1e3, 3) for k, v in c.decode.seconds.items()} if ok else {},
               memory=memory_rows(c.memory), verdict=c.verdict or (c.reason or ""),
               reason=None if c.fits else c.reason, **extra)


# ---------------------------------------------------------------- verdicts, from the printed figures


def ranking_metric(wl: Workload) -> str:
    if wl.goal == "latency":
        return "decode_tok_s" if wl.users <= 1 else "per_user_tok_s"
    return "throughput_tok_s" if wl.goal == "throughput" else "score"


def figure(c: Candidate, metric: str) -> float:
    """The figure as printed (rounded as in the results), so a ratio of them is the printed ratio."""
    v = {"decode_tok_s": lambda: c.decode.value, "per_user_tok_s": lambda: c.per_user_tok_s,
         "throughput_tok_s": lambda: c.throughput.value, "score": lambda: c.score}[metric]()
    return round(v, 2 if metric == "score" else 1)


def fig_text(v: float, metric: str) -> str:
    """A figure as printed: one decimal for tok/s, two for the cost score."""
    return f"{v:,.2f}" if metric == "score" else f"{v:,.1f}"


def ratio(value: float, baseline: float, metric: str, baseline_is: str) -> Ratio | None:
    if not baseline:
        return None
    return Ratio(ratio=round(value / baseline, 2), metric=metric, value=value, baseline=baseline,
                 baseline_is=baseline_is)


def _verdicts(ranked: list[Candidate], wl: Workload) -> dict[int, Ratio]:
    """Verdict text on every candidate, and each fitting alternative's ratio to the recommended one."""
    out: dict[int, Ratio] = {}
    if not ranked or not ranked[0].fits:
        for c in ranked:
            c.verdict = c.reason or "does not fit"
        return out
    best = ranked[0]
    best.verdict = "recommended"
    metric = ranking_metric(wl)
    base = figure(best, metric)
    for c in ranked[1:]:
        if not c.fits:
            c.verdict = c.reason or "does not fit"
            continue
        r = ratio(figure(c, metric), base, metric, "the recommended plan")
        if r is None:
            c.verdict = "the recommended plan scores 0"
            continue
        out[id(c)] = r
        figs = f"({METRIC_WORDS[metric]} {fig_text(r.value, metric)} vs {fig_text(r.baseline, metric)})"
        more = c.n_devices - best.n_devices
        if r.ratio >= 1.0 and more > 0:
            c.verdict = f"{r.ratio:.2f}x the recommended plan {figs} with {more} more GPU(s): not worth the extra card(s)"
        elif r.ratio >= 1.0 and kv_level(c) < kv_level(best):
            c.verdict = f"{r.ratio:.2f}x {figs}: as good, with a full-precision KV cache"
        elif r.ratio >= 1.0 and kv_level(c) > kv_level(best):
            c.verdict = (f"{r.ratio:.2f}x {figs}: a gain the quantized KV cache does not earn"
                         f" (it needs {100 * _min_gain():.0f}% per level)")
        elif r.ratio >= 1.0:
            c.verdict = f"{r.ratio:.2f}x {figs}: as good; the recommended plan is simpler"
        else:
            c.verdict = f"{r.ratio:.2f}x the recommended plan {figs}"
    return out


def _min_gain() -> float:
    from .defaults import KV_QUANT_MIN_GAIN

    return KV_QUANT_MIN_GAIN


def _kv_why(ranked: list[Candidate], wl: Workload) -> str | None:
    """Why a quantized KV cache was chosen: the f16 one does not fit, or it is a real gain."""
    best = ranked[0]
    if not best.fits or kv_level(best) == 0:
        return None
    metric = ranking_metric(wl)
    full = [c for c in ranked if c.fits and kv_level(c) < kv_level(best)]
    if not full:
        same = next((c for c in ranked if not c.fits and kv_level(c) == 0 and c.plan.device_ids == best.plan.device_ids
                     and c.plan.split == best.plan.split), None)
        short = f" ({same.reason})" if same and same.reason else ""
        return (f"{best.plan.kv_type}: no plan with a 16-bit KV cache fits {wl.users} x {wl.context:,} tokens on"
                f" this hardware{short}")
    r = ratio(figure(best, metric), figure(full[0], metric), metric, "the best plan with a 16-bit KV cache")
    return (f"{best.plan.kv_type}: {r.ratio:.2f}x the best plan with a 16-bit KV cache ({full[0].plan.description},"
            f" {METRIC_WORDS[metric]} {fig_text(r.value, metric)} vs {fig_text(r.baseline, metric)}); a quantized cache must gain at least"
            f" {_min_gain():.0%} per level")


# ---------------------------------------------------------------- solving a request
@dataclass
class Solution:
    req: PlanRequest
    model: LoadedModel
    hw: Hardware
    wl: Workload
    ranked: list[Candidate]
    engine_why: StrAssumption
    ratios: dict[int, Ratio] = field(default_factory=dict)
    others: list[EngineVerdict] = field(default_factory=list)

    @property
    def best(self) -> Candidate:
        return self.ranked[0]


def engine_options_of(req) -> dict:
    """The request's engine settings as Plan fields (flash attention, sliding-window cache, -ub,
    vLLM's memory share); unset ones stay the engine's defaults."""
    from ..perf.engine_profiles import engine_options

    return engine_options(req.flash_attn, req.swa_full, req.ubatch, req.gpu_memory_utilization)


def workload(req: PlanRequest) -> Workload:
    """The request's workload. Lengths the user gave must fit the context (PlanRequest refuses
    them otherwise); the default 512 + 256 that do not fit a short context are cut to it in the
    same 2:1 proportion (and the explanation says so: _lengths_note)."""
    prompt, output = req.prompt_tokens, req.output_tokens
    if not req.model_fields_set & {"prompt_tokens", "output_tokens"}:
        prompt, output = default_lengths(req.context, prompt, output)
    return Workload(context=req.context, prompt_tokens=min(prompt, req.context), output_tokens=output,
                    users=req.users, goal=req.goal, min_user_tok_s=req.min_user_tok_s)


def _lengths_note(req: PlanRequest, wl: Workload) -> str | None:
    if (wl.prompt_tokens, wl.output_tokens) == (req.prompt_tokens, req.output_tokens):
        return None
    return (f"The default request ({req.prompt_tokens} prompt + {req.output_tokens} answer tokens) is longer than"
            f" the {wl.context:,}-token context: planned with {wl.prompt_tokens} + {wl.output_tokens}; give"
            " --prompt-tokens / --output-tokens to choose.")


def solve(req: PlanRequest, hw: Hardware | None = None, model: LoadedModel | None = None) -> Solution:
    from ..sources.hardware import resolve_hardware
    from ..sources.resolve import resolve_model
    from .defaults import engine_choice

    model = model or resolve_model(req.model, req.quant)
    hw = hw or resolve_hardware(req)
    wl = workload(req)
    engine, why, others = engine_choice(model, hw, req.engine)
    opts = engine_options_of(req)
    ranked = rank(candidates(model, hw, wl, [engine], req.kv, opts), wl, hw)
    sol = Solution(req, model, hw, wl, ranked, why, _verdicts(ranked, wl))
    for e in others:  # another engine that would turn the verdict around is worth a line
        if sol.best.fits and not _heavier(e, engine):
            continue  # it needs no more memory than this one: it fits too
        alt = rank(candidates(model, hw, wl, [e], req.kv, opts), wl, hw)
        if alt and alt[0].fits != sol.best.fits:
            a = alt[0]
            note = (f"with {e.value} it would fit: {a.plan.description} on {describe_hw(hw, a.plan.device_ids)},"
                    f" {a.decode.value:.1f} tok/s for one user (--engine {e.value})" if a.fits else
                    f"{e.value} would not fit ({a.reason}); {sol.best.plan.engine.value} does")
            sol.others.append(EngineVerdict(engine=e.value, fits=a.fits,
                                            decode_tok_s=_r(a.decode.value) if a.fits else None, note=note))
    return sol


def _heavier(e, than) -> bool:
    """Whether engine e takes more of each card than `than` (vLLM's reserve and CUDA graphs)."""
    from ..perf.engine_profiles import profile
    from .defaults import reserve_fraction

    a, b = profile(e), profile(than)
    return reserve_fraction(e) > reserve_fraction(than) or \
        a.cuda_graphs_mib + a.gpu_context_mib > b.cuda_graphs_mib + b.gpu_context_mib


def plan_assumptions(sol: Solution) -> Assumptions:
    from .defaults import assumptions

    best = sol.best
    return assumptions(sol.model, sol.hw, best.plan, sol.wl, sol.engine_why, sol.req.quant, sol.req.kv,
                       _kv_why(sol.ranked, sol.wl), concurrent=best.concurrent or sol.wl.users,
                       context_given="context" in sol.req.model_fields_set, others=sol.others)


def plan_result(sol: Solution) -> PlanResult:
    from .. import engines
    from .defaults import engine_unavailable
    from .explain import explanation

    req, model, hw, wl, best = sol.req, sol.model, sol.hw, sol.wl, sol.best
    n = model.spec.n_layers
    launch, unsupported = {}, {}
    serving = serving_section(sol) if best.fits else None
    if serving is not None:
        serving.launch = _serving_launch(sol, serving)
    if best.fits:
        ref = req.model if req.model.lower().endswith(".gguf") else None
        # the plan carries its slots (the KV cache room the memory table holds): commands start that
        # many (the serving answer carries its own command, sized for the load it found)
        launch = engines.launch_for(best.plan, model, hw, wl, ref)
        unsupported = engines.explain_unsupported(best.plan, model, hw, wl)
        for name in list(launch):  # an engine that cannot run on this hardware gets no command
            why = engine_unavailable(name, hw)
            if why:
                del launch[name]
                unsupported[name] = why
    commands = {name: cmd.text for name, cmd in launch.items()}
    alternatives = [candidate_result(c, hw, n, vs_recommended=sol.ratios.get(id(c))) for c in sol.ranked[1:]]
    lines = explanation(model, hw, wl, sol.ranked)
    note = _lengths_note(req, wl)
    if note:
        lines.insert(0, note)
    lines += [o.note[0].upper() + o.note[1:] + "." for o in sol.others]
    kv_why = _kv_why(sol.ranked, wl)
    if kv_why:
        lines.insert(0, f"KV cache {kv_why}.")
    from .search import meets

    met = meets(best, wl)
    if best.fits and not met:
        lines.insert(0, f"No plan serves each of {wl.users} user(s) at {wl.min_user_tok_s:g} tok/s (--min-user-tok-s): "
                        f"the closest, shown here, gives {best.per_user_tok_s:.1f} tok/s per user.")
    if wl.context > model.spec.max_context:
        lines.insert(0, f"{wl.context:,} tokens of context is beyond {model.spec.id}'s {model.spec.max_context:,}"
                        " (its max_position_embeddings): engines refuse it unless RoPE scaling is configured.")
    if best.fits and not commands:
        why = unsupported.get(best.plan.engine.value) or "no engine gpuplan renders runs this plan"
        lines.append(f"No launch command: {why}.")
    ttft = round(wl.prompt_tokens / best.prefill.value, 3) if best.fits and best.prefill else None
    from ..perf.engine_profiles import described

    eng = described(best.plan)
    return candidate_result(
        best, hw, n, cls=PlanResult, meets_constraints=met, model=model.spec.id, model_label=model.label, quant=model.quant.id,
        goal=wl.goal, workload=WorkloadResult(context=wl.context, users=wl.users, prompt_tokens=wl.prompt_tokens,
                                              output_tokens=wl.output_tokens, min_user_tok_s=wl.min_user_tok_s),
        assumptions=plan_assumptions(sol), commands=commands, launch=launch, unsupported_engines=unsupported,
        alternatives=alternatives, explanation=lines, time_to_first_token_s=ttft,
        engine_settings=eng["settings"], engine_defaults=eng["defaults_assumed"], serving=serving)


def _asks_for_load(serving) -> bool:
    """A serving answer about how much load the plans hold (targets, a rate, a trace), not one
    about the users asked for."""
    if serving is None:
        return False
    return serving.mode != "users" or any(v is not None for k, v in serving.targets.items() if k.endswith("_s"))


def _serving_launch(sol: Solution, serving) -> dict:
    """The command that starts the serving answer's best candidate, with its engine's sequence
    limit set to the load the simulator found it holds (targets, a rate or a trace only)."""
    from .. import engines
    from .defaults import engine_unavailable
    from .targets import serving_plans

    if serving.best is None or not _asks_for_load(serving):
        return {}
    wl = sol.wl
    plans = [c.plan for c in sol.ranked if c.fits]
    cands = serving_plans(sol.model, sol.hw, plans, wl.context, wl.prompt_tokens, wl.output_tokens, sol.req.engine)
    c = serving.candidates[serving.best]
    match = [p for p in cands if (p.strategy, p.engine.value) == (c.strategy, c.engine)]
    if not match or c.at_capacity is None or engine_unavailable(c.engine, sol.hw):
        return {}
    p = match[0]
    seqs = -(-(c.max_users or 0) // c.replicas) if serving.mode == "users" else c.max_seqs_per_replica
    ref = sol.req.model if sol.req.model.lower().endswith(".gguf") else None
    out = engines.launch_for(p, sol.model, sol.hw, wl, ref, paged_seqs={c.engine: seqs} if seqs else None)
    return {c.engine: out[c.engine]} if c.engine in out else {}


def serving_section(sol: Solution):
    """The serving simulator's answer (planner/targets.py): the recommended plan at the users asked
    for, or with latency targets / a request rate the load every candidate holds under them."""
    from .targets import serving_answer

    req, wl = sol.req, sol.wl
    slo = req.targets()
    plans = [c.plan for c in sol.ranked if c.fits]
    if req.trace is not None:
        from ..perf.serving_load import read_trace
        from .serving_trace import MAX_TRACE_REQUESTS, replay
        from .targets import serving_plans

        trace = read_trace(req.trace, max_requests=MAX_TRACE_REQUESTS)
        if not plans:
            return None
        cands = serving_plans(sol.model, sol.hw, plans, wl.context, wl.prompt_tokens, wl.output_tokens, req.engine)
        return replay(sol.model, sol.hw, cands, trace, slo, wl.context, users=wl.users,
                      shared_prefix=req.shared_prefix)
    if wl.users <= 1 and not slo.any and req.rate is None:
        return None
    return serving_answer(sol.model, sol.hw, plans, wl.context, wl.prompt_tokens, wl.output_tokens,
                          users=wl.users, rate=req.rate, slo=slo, engine=req.engine, shared_prefix=req.shared_prefix)


def plan(req: PlanRequest) -> PlanResult:
    return plan_result(solve(req))

