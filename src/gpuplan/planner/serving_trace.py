"""`plan --trace FILE`: replay the user's own requests (arrival time, prompt and output tokens,
read by perf/serving_load.read_trace) on every serving candidate, with the serving simulator, and
say which one answers them best and whether it meets the latency targets.

Replicas share the trace round-robin (request i goes to replica i mod r, as a load balancer
spreading requests evenly would send them); one replica's share is simulated and the throughput
(over the whole replay, from the first arrival to the last answer) counted for all of them. Requests longer than the context per sequence are refused, as the
engines refuse them (vLLM/SGLang max_model_len, llama-server's slot size), and counted.

A prefix the requests share (a system prompt) comes from the trace's prefix_tokens column, or from
`shared_prefix` (plan --shared-prefix) for every request; engines with prefix caching compute it
once (perf/serving_prefix.py)."""

from __future__ import annotations

from ..inputs import OverBudget, check_budget
from ..perf.serving import Targets, simulate
from ..perf.serving_load import Load
from ..perf.serving_slo import Slo
from ..results_serving import ServingAnswer, ServingCapacity
from ..types import Hardware, LoadedModel, Plan
from .targets import _binding, meets, point, setup_for, step_breakdown

MAX_TRACE_REQUESTS = 100_000  # a replay simulates every token of every request


def replay(model: LoadedModel, hw: Hardware, plans: list[Plan], trace: tuple, slo: Slo, context: int,
           users: int = 1, date: str | None = None, shared_prefix: int = 0) -> ServingAnswer:
    """Every candidate plan serving `trace` ((arrival_s, prompt, output), ...): latency
    percentiles, throughput, goodput and whether the targets hold; the best answers the most
    requests within the targets: of those that meet them (all, without targets), the one with the
    lowest p90 end-to-end latency."""
    trace = with_prefix(trace, shared_prefix)
    kept = [r for r in trace if r[1] + r[2] <= context]
    refused = len(trace) - len(kept)
    n = len(kept)
    if n == 0:
        from ..errors import InputError

        raise InputError(f"every request of the trace is longer than the context per sequence ({context:,} tokens);"
                         " give a larger --context", input="context", value=str(context),
                         accepted="at least the longest prompt + output of the trace")
    prompt = round(sum(r[1] for r in kept) / n)
    output = round(sum(r[2] for r in kept) / n)
    span = max(r[0] for r in kept) - min(r[0] for r in kept)
    targets = Targets(slo.ttft_s, slo.tpot_s, slo.e2el_s)
    out: list[ServingCapacity] = []
    for plan in plans:
        check_budget()
        reps = max(plan.replicas, 1)
        share = tuple(sorted(kept, key=lambda r: r[0])[::reps])
        try:
            s = setup_for(model, hw, plan, context, users, date)
            res = simulate(s.cost, s.sched, Load("trace", trace=share), s.kv_tokens, targets=targets)
        except Exception as e:  # noqa: BLE001 - InputError: this plan cannot run the trace; say why
            from ..errors import InputError

            if not isinstance(e, InputError) or isinstance(e, OverBudget):
                raise
            out.append(ServingCapacity(strategy=plan.strategy, engine=plan.engine.value, replicas=reps, tp=plan.tp,
                                       pp=plan.pp, kv_pool_tokens_per_replica=0, max_seqs_per_replica=0,
                                       binding=str(e)))
            continue
        at = point(res, reps, rate=round(n / span, 3) if span > 0 else None, slo=slo, whole=True)
        notes = list(res.notes)
        if res.goodput is not None:
            notes.append(f"goodput {res.goodput * reps:.2f} requests/s within the targets")
        ok = meets(res, slo, None) if slo.any else None
        binding = ("within the targets" if ok else _binding(s, res, slo, None, prompt, output)) if slo.any else (
            "KV cache blocks: requests wait for room" if res.kv_limited else
            f"engine's sequence limit ({s.sched.max_seqs} running)" if res.seq_limited else
            f"decode steps bound by {step_breakdown(s, round(res.mean_batch), prompt + output // 2).bound}")
        out.append(ServingCapacity(strategy=plan.strategy, engine=plan.engine.value, replicas=reps, tp=plan.tp,
                                   pp=plan.pp, kv_pool_tokens_per_replica=s.kv_tokens,
                                   max_seqs_per_replica=s.sched.max_seqs, at_capacity=at, binding=binding,
                                   step=step_breakdown(s, round(res.mean_batch), prompt + output // 2), notes=notes))

    def key(i: int):  # meets the targets, then the lowest p90 end-to-end latency
        p = out[i].at_capacity
        if p is None:
            return (0, 0, -float("inf"), -i)
        e2e = p.e2el_ms.p90 if p.e2el_ms.p90 is not None else float("inf")
        return (1, 1 if p.meets_targets in (True, None) else 0, -e2e, -i)

    best = max(range(len(out)), key=key) if out else None
    ans = ServingAnswer(mode="trace", targets={"ttft_s": slo.ttft_s, "tpot_s": slo.tpot_s, "e2el_s": slo.e2el_s,
                                               "percentile": slo.percentile},
                        prompt_tokens=prompt, output_tokens=output, requested=float(len(trace)), candidates=out,
                        best=best)
    ans.explanation = _explain(ans, n, refused, span, context)
    shared = [r[3] for r in kept if len(r) > 3 and r[3]]
    if shared:
        ans.explanation.append(f"{len(shared):,} of the {n:,} requests start with the shared prefix ({min(shared):,} to"
                               f" {max(shared):,} tokens): engines with prefix caching (vLLM V1, SGLang, TensorRT-LLM"
                               " by default; llama-server per slot) compute it once, LMDeploy by default every time")
    return ans


def with_prefix(trace: tuple, shared_prefix: int) -> tuple:
    """The trace with every request starting with `shared_prefix` shared tokens (0: as it is). A
    trace with its own prefix_tokens column, or a request no longer than the prefix, is refused."""
    if not shared_prefix:
        return trace
    from ..errors import InputError

    if any(len(r) > 3 for r in trace):
        raise InputError("the trace has a prefix_tokens column and --shared-prefix gives one too; give one",
                         input="shared_prefix", value=str(shared_prefix),
                         accepted="--shared-prefix or a prefix_tokens column, not both")
    short = min(r[1] for r in trace)
    if shared_prefix >= short:
        raise InputError(f"--shared-prefix {shared_prefix:,} is not shorter than the trace's shortest prompt"
                         f" ({short:,} tokens); accepted: 0 to {short - 1:,}", input="shared_prefix",
                         value=str(shared_prefix), accepted=f"0 to {short - 1:,}")
    return tuple((a, p, o, shared_prefix) for a, p, o in trace)


def _explain(ans: ServingAnswer, n: int, refused: int, span: float, context: int) -> list[str]:
    rate = f", {n / span:.2f} requests/s" if span > 0 else ", all at once"
    lines = [f"trace: {n:,} requests over {span:,.1f} s{rate}, prompt {ans.prompt_tokens:,} and output "
             f"{ans.output_tokens:,} tokens on average"]
    if refused:
        lines.append(f"{refused:,} request(s) longer than the context per sequence ({context:,} tokens) are refused"
                     " by the engines and left out")
    if ans.best is None or ans.candidates[ans.best].at_capacity is None:
        lines.append("no candidate plan can serve the trace")
        return lines
    c = ans.candidates[ans.best]
    p = c.at_capacity
    verdict = "" if p.meets_targets is None else (" and meets the targets" if p.meets_targets else
                                                  ", but misses the targets")
    lines.append(f"{c.strategy} ({c.engine}) answers it fastest (p90 end-to-end {p.e2el_ms.p90 / 1e3:,.1f} s)"
                 f"{verdict}: TTFT p50 {p.ttft_ms.median:,.0f} / p90 "
                 f"{p.ttft_ms.p90:,.0f} ms, TPOT p50 {p.tpot_ms.median or 0:,.1f} / p90 {p.tpot_ms.p90 or 0:,.1f} ms, "
                 f"{p.output_throughput:,.0f} output tok/s" + ("." if p.meets_targets else f"; {c.binding}."))
    return lines
