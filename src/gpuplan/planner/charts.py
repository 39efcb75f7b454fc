"""Chart data for the plan the planner recommends: how it scales with GPU count, context length
and users. Each chart keeps everything of the recommended plan (hardware, engine, split, context,
users) but the one quantity on its x axis, says in `note` what it changes, and marks the
recommended plan's own point, whose y is the figure the plan shows."""

from __future__ import annotations

from dataclasses import replace

from ..requests import ScalingRequest
from ..results import Chart, Point, ScalingResult, Series
from ..perf.engine_profiles import LLAMA_FAMILY
from ..types import Plan, Split

CONTEXTS = (1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)
USERS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def _r(x):
    return None if x is None else round(x, 1)


def _k(n: int) -> str:
    return f"{n // 1024}K" if n >= 1024 and n % 1024 == 0 else f"{n:,}"


def scaling(req: ScalingRequest) -> ScalingResult:
    from .report import plan_shape, solve

    sol = solve(req)
    best, model, hw, wl = sol.best, sol.model, sol.hw, sol.wl
    shape = plan_shape(best, hw, model.spec.n_layers)  # the plan as the plan result shows it
    what = f"{shape.strategy} on {shape.hardware}, {shape.engine}"
    head = dict(model=model.spec.id, quant=model.quant.id, fits=best.fits, strategy=shape.strategy,
                engine=shape.engine, hardware=shape.hardware, context=wl.context, users=wl.users)
    return ScalingResult(**head, by_gpus=_by_gpus(sol, req.max_gpus), by_context=_by_context(sol, what),
                         by_users=_by_users(sol, what))


def _by_gpus(sol, max_gpus: int) -> Chart:
    from ..sources.hardware import _default_link, link_fits
    from ..types import Hardware
    from .search import _with_shares, evaluate

    model, hw, wl, best = sol.model, sol.hw, sol.wl, sol.best
    lead = hw.devices[best.plan.device_ids[0]]
    engine = best.plan.engine
    llama = engine in LLAMA_FAMILY
    kv = best.plan.kv_type
    if lead.kind != "gpu":
        max_gpus = 1  # a Mac has one chip, a CPU box one CPU
    same = len({d.id for d in hw.devices}) == 1

    def hardware(n: int) -> Hardware:
        if same and n == hw.n:
            return hw  # the user's own hardware, so the plan's point is the plan's figure
        devs = (lead,) * n
        link = hw.link if hw.link is not None and n > 1 and link_fits(hw.link, lead) else (
            _default_link(devs) if n > 1 else None)
        return replace(hw, devices=devs, memory_gib=(hw.memory_gib[best.plan.device_ids[0]],) * n, link=link,
                       nodes=1, node_link=None)

    def run(p: Plan, h, metric: str):
        c = evaluate(model, h, _with_shares(model, h, p, wl), wl)
        if not c.fits:
            return None
        return _r(c.decode.value if metric == "decode_tok_s" else c.throughput.value)

    split_name = "layer split" if llama else "pipeline parallel"
    tp_name = "row split" if llama else "tensor parallel"
    xs, layer, tp, reps, layer_thr = [], [], [], [], []
    for n in range(1, max_gpus + 1):
        h = hardware(n)
        ids = tuple(range(n))
        if n == 1:
            one = Plan(split=Split.NONE, engine=engine, device_ids=(0,), kv_type=kv)
            d, t = run(one, h, "decode_tok_s"), run(one, h, "throughput_tok_s")
            vals = (d, d, t, t)
        else:
            ls = Plan(split=Split.LAYER, engine=engine, device_ids=ids, kv_type=kv) if llama else \
                Plan(split=Split.TENSOR, engine=engine, device_ids=ids, tp=1, pp=n, kv_type=kv)
            ts = Plan(split=Split.ROW, engine=engine, device_ids=ids, kv_type=kv) if llama else \
                Plan(split=Split.TENSOR, engine=engine, device_ids=ids, tp=n, kv_type=kv)
            tp_ok = llama or model.spec.n_heads % n == 0
            rep = Plan(split=Split.NONE, engine=engine, device_ids=(0,), replicas=n, kv_type=kv)
            vals = (run(ls, h, "decode_tok_s"), run(ts, h, "decode_tok_s") if tp_ok else None,
                    run(rep, h, "throughput_tok_s"), run(ls, h, "throughput_tok_s"))
        xs.append(n)
        for col, v in zip((layer, tp, reps, layer_thr), vals):
            col.append(v)
    series = [Series(name=f"{split_name}, one user ({engine.value})", metric="decode_tok_s", x=xs, y=layer),
              Series(name=f"{tp_name}, one user ({engine.value})", metric="decode_tok_s", x=xs, y=tp),
              Series(name=f"replicas, all {wl.users} users", metric="throughput_tok_s", x=xs, y=reps, dashed=True),
              Series(name=f"{split_name}, all {wl.users} users", metric="throughput_tok_s", x=xs, y=layer_thr,
                     dashed=True)]
    n_plan = best.n_devices
    mark = None
    if same and best.fits and n_plan <= max_gpus:
        mark = Point(x=n_plan, y=_r(best.decode.value), label=f"recommended: {best.plan.description}")
    link = hw.link.name if hw.link else "no link"
    note = (f"{lead.name} cards over {link} with {engine.value}, {_k(wl.context)} context, {wl.users} user(s);"
            " all layers on the GPUs")
    if not same:
        note += f"; your setup mixes cards ({', '.join(dict.fromkeys(d.id for d in hw.devices))}): this counts {lead.id} only"
    return Chart(title=f"tok/s against the number of {lead.name} (dashed: all users together)", x_label="GPUs",
                 y_label="tok/s", series=series, recommended=mark, note=note)


def _by_context(sol, what: str) -> Chart:
    from ..perf import speed
    from .search import evaluate

    model, hw, wl, best = sol.model, sol.hw, sol.wl, sol.best
    xs, ys = [], []
    if best.fits:
        for c in sorted(set(CONTEXTS) | {wl.context}):
            if c > max(model.spec.max_context, wl.context):
                break
            cand = evaluate(model, hw, best.plan, replace(wl, context=c))
            xs.append(c)
            ys.append(_r(speed.decode(model, hw, best.plan, depth=c, n_gen=1).value) if cand.fits else None)
    mark = None
    if best.fits and wl.context in xs:
        mark = Point(x=wl.context, y=ys[xs.index(wl.context)], label=f"your context, {_k(wl.context)}")
    return Chart(title="one user's decode tok/s when the context is full", x_label="context (tokens)",
                 y_label="tok/s", series=[Series(name="decode, context full", metric="decode_tok_s", x=xs, y=ys)],
                 recommended=mark,
                 note=(f"{what}, {wl.users} user(s); the x axis changes the context per sequence, and each point"
                       f" is read at a full context (the plan's own decode figure is at a {wl.prompt_tokens}-token"
                       " prompt); no point: it does not fit") if best.fits else "the plan does not fit: no chart")


def _by_users(sol, what: str) -> Chart:
    from .search import evaluate

    model, hw, wl, best = sol.model, sol.hw, sol.wl, sol.best
    xs, total, each = [], [], []
    if best.fits:
        for u in sorted(set(USERS) | {wl.users}):
            c = evaluate(model, hw, best.plan, replace(wl, users=u))
            xs.append(u)
            total.append(_r(c.throughput.value) if c.fits else None)
            each.append(_r(c.per_user_tok_s) if c.fits else None)
    mark = Point(x=wl.users, y=_r(best.throughput.value), label=f"recommended, {wl.users} user(s)") if best.fits else None
    return Chart(title="throughput against users at once", x_label="users", y_label="tok/s",
                 series=[Series(name="all users together", metric="throughput_tok_s", x=xs, y=total, dashed=True),
                         Series(name="each user", metric="per_user_tok_s", x=xs, y=each)],
                 recommended=mark,
                 note=(f"{what}, {_k(wl.context)} context; the x axis changes the number of users; users beyond"
                       " the KV cache room wait their turn") if best.fits else "the plan does not fit: no chart")
