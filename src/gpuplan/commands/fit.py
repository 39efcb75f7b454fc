"""`gpuplan fit`: memory per device, verdict, largest context."""

from __future__ import annotations

from .common import dump, request


def fit(as_json: bool, **options) -> None:
    from .. import api
    from ..requests import FitRequest

    res = api.fit(request(FitRequest, **options))
    if as_json:
        return dump(res)
    render(res)


def render(res) -> None:
    from rich.console import Console
    from rich.table import Table

    from .render import assumed_lines, engine_default_lines

    con = Console()
    t = Table(title=f"{res.model_label} {res.quant} · {res.engine} · context {res.context:,}"
                    f" × {res.users} · {res.plan.strategy}")
    for c in ("device", "weights GB", "KV cache GB", "overhead GB", "total GB", "capacity GB", "free GB"):
        t.add_column(c, justify="right" if c != "device" else "left")
    for d in res.devices:
        t.add_row(d.name, f"{d.weights_gb:.2f}", f"{d.kv_cache_gb:.2f}", f"{d.overhead_gb:.2f}",
                  f"{d.total_gb:.2f}", f"{d.capacity_gb:.2f}", f"{d.free_gb:.2f}" + ("" if d.fits else " short"),
                  style=None if d.fits else "red")
    con.print(t)
    head, _, rest = res.verdict.partition(": ")
    color = "green" if res.fits else "red"
    con.print(f"[{color}]{head}[/{color}]: ", end="", highlight=False)
    con.print(rest, markup=False, highlight=False)
    if not res.fits:
        con.print("Try `gpuplan plan` for offload and split options.")
    for line in assumed_lines(res.assumptions) + engine_default_lines(res):
        con.print(f"  {line}", markup=False, highlight=False)
