"""`gpuplan builds`: what each popular build does for this model — fit, speed, throughput,
and what a token costs in hardware and electricity."""

from __future__ import annotations

from .. import catalog
from ..errors import InputError
from ..types import Workload

HOURS_3Y = 3 * 365 * 24  # hardware written off over three years of continuous use


def builds_json(model_ref: str, quant: str | None, budget: float | None, users: int, context: int,
                electricity: float) -> dict:
    from ..sources.hardware import parse_hardware
    from ..sources.resolve import resolve_model
    from .search import candidates, rank

    if budget is not None and budget <= 0:
        raise InputError(f"budget {budget:g} USD is not accepted; give more than 0 USD")
    if not (0 <= electricity <= 10):
        raise InputError(f"electricity price {electricity:g} USD per kWh is out of range; accepted: 0 to 10")
    model = resolve_model(model_ref, quant)
    wl = Workload(context=context, prompt_tokens=min(512, context), output_tokens=256, users=users,
                  goal="latency" if users <= 1 else "throughput")
    rows = []
    for b in catalog.builds().values():
        hw = parse_hardware(b.gpus, link=b.link, ram=b.host_memory)
        ranked = rank(candidates(model, hw, wl), wl, hw)
        best = ranked[0]
        row = {"id": b.id, "name": b.name, "gpus": b.gpus, "price_usd": b.price_usd, "price_kind": b.price_kind,
               "price_date": b.price_date, "power_w": b.power_w, "notes": b.notes, "source": b.source,
               "vram_gb": round(sum(m.capacity for m in best.memory if m.name != "host RAM") / 1e9, 1),
               "fits": best.fits, "over_budget": budget is not None and b.price_usd > budget}
        if best.fits:
            dec, thr = best.decode.value, best.throughput.value
            kwh_per_mtok = b.power_w / 1000 / (thr * 3600 / 1e6)
            hw_per_mtok = b.price_usd / (thr * HOURS_3Y * 3600 / 1e6)
            row.update({"strategy": best.plan.strategy, "decode_tok_s": round(dec, 1),
                        "throughput_tok_s": round(thr, 1),
                        "tok_s_per_1000_usd": round(thr / b.price_usd * 1000, 2),
                        "tok_s_per_100_w": round(thr / b.power_w * 100, 2),
                        "usd_per_million_tokens_electricity": round(kwh_per_mtok * electricity, 4),
                        "usd_per_million_tokens_3y": round(kwh_per_mtok * electricity + hw_per_mtok, 4)})
        else:
            row.update({"strategy": None, "decode_tok_s": None, "throughput_tok_s": None,
                        "verdict": best.reason})
        rows.append(row)
    rows.sort(key=lambda r: (not r["fits"], r["over_budget"], -(r["throughput_tok_s"] or 0)))
    return {"model": model.spec.id, "quant": model.quant.id, "users": users, "context": context,
            "budget_usd": budget, "electricity_usd_per_kwh": electricity, "builds": rows,
            "note": "USD per million tokens at full load: electricity alone, and with the hardware"
                    " written off over three years of continuous use."}
