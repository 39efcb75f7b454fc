"""PNG plots for the CLI's --plot FILE.png, drawn from the same JSON the API returns.

matplotlib is imported inside each function (Agg backend, no display needed) so that importing
gpuplan stays fast. Every function tolerates missing optional keys.
"""

from __future__ import annotations

from pathlib import Path

BAND = 0.25  # the ±25% band drawn around y = x in the validation plot
MEM_PARTS = (("weights_gb", "weights", "#4a78c2"), ("kv_cache_gb", "KV cache", "#e39a32"),
             ("overhead_gb", "overhead", "#8c8c8c"))
FREE_COLOR = "#cfe3cf"


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


PLOT_TYPES = (".png", ".svg", ".pdf")


def check_plot_path(path, option: str = "--plot") -> Path:
    """The --plot file, checked before any work: a .png/.svg/.pdf name in a folder that exists and
    can be written, not a directory (matplotlib would write 'folder.png' beside it)."""
    from .errors import InputError
    from .inputs import check_output_path

    p = check_output_path(path, option)
    if p.suffix.lower() not in PLOT_TYPES:
        raise InputError(f"{option} '{p}' is not a .png, .svg or .pdf file name", input=option.lstrip("-"),
                         value=str(p), accepted="a file name ending in " + ", ".join(PLOT_TYPES))
    return p


def _save(fig, path) -> Path:
    p = Path(path)
    fig.tight_layout()
    fig.savefig(p, dpi=120)
    _plt().close(fig)
    return p


def _wrap(text: str, width: int = 70) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or text


def _num(x) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if v == v and v not in (float("inf"), float("-inf")) else None


def _strategy(d: dict, devices: bool = False) -> str:
    p = d.get("plan")
    if isinstance(p, dict):
        text = str(p.get("strategy") or p.get("split") or "?")
        ids = [x.get("id") for x in p.get("devices") or [] if isinstance(x, dict) and x.get("id")]
        if devices and ids:
            text += " [" + (f"{len(ids)}x {ids[0]}" if len(set(ids)) == 1 and len(ids) > 1 else ", ".join(ids)) + "]"
        return text
    return str(p or d.get("strategy") or d.get("name") or "?")


def plot_validation(results: list[dict], path) -> Path:
    """Predicted against measured, log-log, one colour per metric; y = x and a ±25% band."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 6))
    pts = [(m, p, str(r.get("metric") or "?")) for r in results
           if (m := _num(r.get("measured"))) and (p := _num(r.get("predicted"))) and m > 0 and p > 0]
    skipped = len(results) - len(pts)
    for metric in sorted({k for *_, k in pts}):
        xs = [m for m, _p, k in pts if k == metric]
        ys = [p for _m, p, k in pts if k == metric]
        ax.scatter(xs, ys, s=18, alpha=0.75, label=f"{metric} ({len(xs)})")
    if pts:
        lo = min(min(m, p) for m, p, _ in pts) / 1.5
        hi = max(max(m, p) for m, p, _ in pts) * 1.5
    else:
        lo, hi = 1.0, 1000.0
        ax.text(0.5, 0.5, "no predicted rows", transform=ax.transAxes, ha="center")
    line = [lo, hi]
    ax.plot(line, line, color="black", lw=1, label="y = x")
    ax.fill_between(line, [x * (1 - BAND) for x in line], [x * (1 + BAND) for x in line], color="grey",
                    alpha=0.15, label=f"±{BAND:.0%}")
    ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), xlabel="measured (tok/s; ms for latencies)",
           ylabel="predicted (tok/s; ms for latencies)", title="gpuplan predictions against measurements")
    if skipped:
        ax.text(0.02, 0.98, f"{skipped} row(s) without a prediction not shown", transform=ax.transAxes,
                va="top", fontsize=8, color="#555")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def _memory_bars(ax, devices: list[dict], title: str) -> None:
    names = [f"{i}: {d.get('name', '?')}" for i, d in enumerate(devices)]
    left = [0.0] * len(devices)
    for key, label, color in MEM_PARTS:
        vals = [_num(d.get(key)) or 0.0 for d in devices]
        ax.barh(names, vals, left=left, color=color, label=label)
        left = [a + b for a, b in zip(left, vals)]
    free = [max(0.0, (_num(d.get("capacity_gb")) or 0.0) - t) for d, t in zip(devices, left)]
    ax.barh(names, free, left=left, color=FREE_COLOR, label="free")
    for i, d in enumerate(devices):
        cap = _num(d.get("capacity_gb"))
        if cap:
            ax.plot([cap, cap], [i - 0.4, i + 0.4], color="black", lw=1.5)
    ax.invert_yaxis()
    ax.set_xlabel("GB")
    ax.set_title(_wrap(title), fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def plot_plan(plan_json: dict, path) -> Path:
    """Per-device memory as stacked bars, and decode / aggregate throughput of the plan and its alternatives."""
    plt = _plt()
    devices = plan_json.get("memory") or plan_json.get("devices") or []
    rows = [plan_json] + [a for a in plan_json.get("alternatives") or [] if isinstance(a, dict)]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 3 + 0.45 * len(devices) + 0.35 * len(rows)),
                                   gridspec_kw={"height_ratios": [max(1, len(devices)), max(2, len(rows))]})
    verdict = "fits" if plan_json.get("fits") else "does not fit"
    _memory_bars(ax1, devices, f"{plan_json.get('model', '')} {plan_json.get('quant', '')}: {_strategy(plan_json)} ({verdict})")
    labels = [("▶ " if i == 0 else "") + _strategy(r, devices=True) + ("" if r.get("fits", True) else " (no fit)") for i, r in enumerate(rows)]
    dec = [_num(r.get("decode_tok_s")) or 0.0 for r in rows]
    thr = [_num(r.get("throughput_tok_s")) or 0.0 for r in rows]
    ys = range(len(rows))
    ax2.barh([y - 0.2 for y in ys], dec, height=0.4, color="#4a78c2", label="decode tok/s (one user)")
    ax2.barh([y + 0.2 for y in ys], thr, height=0.4, color="#2a9d6f", label="throughput tok/s (all users)")
    ax2.set_yticks(list(ys), labels, fontsize=8)
    ax2.invert_yaxis()
    ax2.set(xlabel="tokens/s", title="chosen plan (▶) and alternatives")
    ax2.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def _setups(compare_json: dict) -> list[dict]:
    for key in ("setups", "results", "rows", "options"):
        v = compare_json.get(key)
        if isinstance(v, list):
            return [x for x in v if isinstance(x, dict)]
    return []


def _label(d: dict) -> str:
    return str(d.get("setup") or d.get("name") or d.get("gpus") or d.get("hardware") or d.get("id") or _strategy(d))


def plot_compare(compare_json: dict, path) -> Path:
    """Setups side by side: decode and throughput bars; setups that do not fit are hatched."""
    plt = _plt()
    rows = _setups(compare_json)
    fig, ax = plt.subplots(figsize=(9, 2 + 0.5 * max(1, len(rows))))
    ys = list(range(len(rows)))
    dec = [_num(r.get("decode_tok_s")) or 0.0 for r in rows]
    thr = [_num(r.get("throughput_tok_s")) or 0.0 for r in rows]
    hatch = [None if r.get("fits", True) else "//" for r in rows]
    for y, d, t, h in zip(ys, dec, thr, hatch):
        ax.barh(y - 0.2, d, height=0.4, color="#4a78c2", hatch=h)
        ax.barh(y + 0.2, t, height=0.4, color="#2a9d6f", hatch=h)
        ax.text(d, y - 0.2, f" {d:.1f}", va="center", fontsize=8)
    from matplotlib.patches import Patch

    handles = [Patch(color="#4a78c2", label="decode tok/s (one user)"),
               Patch(color="#2a9d6f", label="throughput tok/s (all users)")]
    if any(hatch):
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="//", label="does not fit"))
    ax.set_yticks(ys, [_label(r) for r in rows], fontsize=8)
    ax.invert_yaxis()
    title = " ".join(str(x) for x in (compare_json.get("model"), compare_json.get("quant")) if x)
    ax.set(xlabel="tokens/s", title=f"compare: {title}" if title else "compare")
    if not rows:
        ax.text(0.5, 0.5, "no setups", transform=ax.transAxes, ha="center")
    ax.legend(handles=handles, fontsize=8, loc="lower right")
    return _save(fig, path)


def plot_builds(builds_json, path) -> Path:
    """Decode tok/s against price, one labelled point per build; red ones do not fit."""
    plt = _plt()
    rows = builds_json if isinstance(builds_json, list) else next(
        (builds_json.get(k) for k in ("builds", "rows", "results") if isinstance(builds_json.get(k), list)), [])
    fig, ax = plt.subplots(figsize=(9, 6))
    shown = 0
    for r in rows:
        if not isinstance(r, dict):
            continue
        x = _num(r.get("price_usd", r.get("price")))
        y = _num(r.get("decode_tok_s", r.get("tok_s")))
        if x is None or y is None:
            continue
        fits = r.get("fits", True)
        ax.scatter([x], [y], color="#2a9d6f" if fits else "#c0392b", s=36, zorder=3)
        ax.annotate(str(r.get("name") or r.get("id") or ""), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        shown += 1
    ax.scatter([], [], color="#2a9d6f", label="fits")
    ax.scatter([], [], color="#c0392b", label="does not fit")
    title = " ".join(str(x) for x in (builds_json.get("model"), builds_json.get("quant")) if x) if isinstance(builds_json, dict) else ""
    ax.set(xlabel="price (USD)", ylabel="decode tok/s (one user)", title=f"builds: {title}" if title else "builds")
    if not shown:
        ax.text(0.5, 0.5, "no builds with a price and a speed", transform=ax.transAxes, ha="center")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)
