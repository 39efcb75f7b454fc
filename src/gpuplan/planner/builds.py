"""`gpuplan builds`: what each popular build does for this model — fit, speed, throughput,
and what a token costs in hardware and electricity. With a budget, builds over it are listed
apart (never mixed into the answer)."""

from __future__ import annotations

from .. import catalog
from ..requests import BuildsRequest
from ..results import BuildRow, BuildsResult
from ..types import Workload
from .defaults import DEFAULT_REQUEST, default_lengths

HOURS_3Y = 3 * 365 * 24  # hardware written off over three years of continuous use
GIB = 2**30


def vram_gb(hw) -> float:
    """GPU memory the build has for the model (GB): VRAM of every GPU, or what macOS lets an
    Apple chip's GPU wire of its unified memory."""
    total = 0.0
    for d, gib in zip(hw.devices, hw.memory_gib):
        if d.unified:
            total += gib * GIB * (d.gpu_share(gib) or 0.75)
        elif d.kind == "gpu":
            total += gib * GIB
    return round(total / 1e9, 1)


def builds(req: BuildsRequest) -> BuildsResult:
    from ..sources.hardware import parse_hardware
    from ..sources.resolve import resolve_model
    from .defaults import engine_choice
    from .search import candidates, rank

    model = resolve_model(req.model, req.quant)
    context, users = req.context, req.users
    prompt, output = default_lengths(context)
    wl = Workload(context=context, prompt_tokens=prompt, output_tokens=output, users=users,
                  goal="latency" if users <= 1 else "throughput")
    rows = []
    for b in catalog.builds().values():
        hw = parse_hardware(b.gpus, link=b.link, ram=b.host_memory)
        engine, _why, _ = engine_choice(model, hw, None)
        best = rank(candidates(model, hw, wl, [engine]), wl, hw)[0]
        row = BuildRow(id=b.id, name=b.name, gpus=b.gpus, price_usd=b.price_usd, price_kind=b.price_kind,
                       price_date=b.price_date, power_w=b.power_w, notes=b.notes, source=b.source,
                       vram_gb=vram_gb(hw), fits=best.fits,
                       over_budget=req.budget is not None and b.price_usd > req.budget)
        if best.fits and best.throughput.value > 0:
            dec, thr = best.decode.value, best.throughput.value
            kwh_per_mtok = b.power_w / 1000 / (thr * 3600 / 1e6)
            hw_per_mtok = b.price_usd / (thr * HOURS_3Y * 3600 / 1e6)
            row = row.model_copy(update={
                "strategy": best.plan.description, "engine": best.plan.engine.value,
                "vram_used_gb": round(sum(m.total for m in best.memory if m.name != "host RAM")
                                      * max(best.plan.replicas, 1) / 1e9, 1),
                "decode_tok_s": round(dec, 1), "throughput_tok_s": round(thr, 1),
                "tok_s_per_1000_usd": round(thr / b.price_usd * 1000, 2),
                "tok_s_per_100_w": round(thr / b.power_w * 100, 2),
                "usd_per_million_tokens_electricity": round(kwh_per_mtok * req.electricity, 4),
                "usd_per_million_tokens_3y": round(kwh_per_mtok * req.electricity + hw_per_mtok, 4)})
        else:
            row = row.model_copy(update={"verdict": best.reason})
        rows.append(row)
    rows.sort(key=lambda r: (not r.fits, -(r.throughput_tok_s or 0)))
    return BuildsResult(model=model.spec.id, model_label=model.label, quant=model.quant.id, users=users,
                        context=context, budget_usd=req.budget, electricity_usd_per_kwh=req.electricity,
                        builds=[r for r in rows if not r.over_budget], over_budget=[r for r in rows if r.over_budget],
                        note="USD per million tokens at full load: electricity alone, and with the hardware"
                             " written off over three years of continuous use." +
                             ("" if (prompt, output) == DEFAULT_REQUEST else
                              f" Requests of {prompt} prompt + {output} answer tokens: the default"
                              f" {DEFAULT_REQUEST[0]} + {DEFAULT_REQUEST[1]} cut to the {context:,}-token context."))
