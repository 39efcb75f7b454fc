"""`gpuplan plan`, `gpuplan compare`, `gpuplan builds`."""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer


def _dump(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def plan_command_core(model, quant, gpus, hardware, context, users, engine, link, ram, ram_gib, goal,
                      min_user_tok_s, nodes, as_json, plot, brief=False, engine_opts=None):
    from .. import api

    res = api.plan(model, gpus, quant=quant, context=context, users=users, engine=engine, goal=goal,
                   min_user_tok_s=min_user_tok_s, link=link, ram=ram, nodes=nodes, hardware=hardware,
                   ram_gib=ram_gib, model_ref=model, **(engine_opts or {}))
    if plot:
        from ..plots import plot_plan

        plot_plan(res, plot)
    if as_json:
        return _dump(res)
    from .render import render_plan

    render_plan(res, brief=brief)


def register(app: typer.Typer) -> None:
    @app.command("plan")
    def plan_cmd(model: str = typer.Argument(..., help="catalog id, .gguf file, or config.json"),
                 quant: Optional[str] = typer.Option(None, "--quant", "-q"),
                 gpus: Optional[str] = typer.Option(None, "--gpus", "-g", help="e.g. '2x rtx-3090'; default: probe"),
                 hardware: Optional[str] = typer.Option(None, "--hardware", help="file from `gpuplan probe --save`"),
                 context: int = typer.Option(8192, "--context", "-c"),
                 users: int = typer.Option(1, "--users", "-u"),
                 goal: str = typer.Option("latency", "--goal", help="latency, throughput or cost"),
                 min_user_tok_s: float = typer.Option(0.0, "--min-user-tok-s"),
                 engine: Optional[str] = typer.Option(None, "--engine", "-e"),
                 link: Optional[str] = typer.Option(None, "--link"),
                 ram: Optional[str] = typer.Option(None, "--ram", help="host memory id, e.g. ddr5-6000-2ch"),
                 ram_gib: Optional[float] = typer.Option(None, "--ram-gb", help="system RAM size"),
                 nodes: int = typer.Option(1, "--nodes"),
                 kv: Optional[str] = typer.Option(None, "--kv", help="KV cache type (default f16; tried smaller when short)"),
                 flash_attn: Optional[str] = typer.Option(None, "--flash-attn", help="on, off or auto (default: the engine's)"),
                 swa_full: Optional[bool] = typer.Option(None, "--swa-full/--no-swa-full",
                                                         help="llama.cpp full-size sliding-window cache"),
                 ubatch: Optional[int] = typer.Option(None, "--ubatch", help="llama.cpp physical batch -ub"),
                 gpu_memory_utilization: Optional[float] = typer.Option(None, "--gpu-memory-utilization",
                                                                        help="vLLM/SGLang share of each GPU"),
                 as_json: bool = typer.Option(False, "--json"),
                 plot: Optional[str] = typer.Option(None, "--plot", help="write a PNG")):
        """Best plan for MODEL on your hardware, the alternatives, why, and launch commands."""
        opts = dict(kv=kv, flash_attn=flash_attn, swa_full=swa_full, ubatch=ubatch,
                    gpu_memory_utilization=gpu_memory_utilization)
        plan_command_core(model, quant, gpus, hardware, context, users, engine, link, ram, ram_gib, goal,
                          min_user_tok_s, nodes, as_json, plot, engine_opts=opts)

    @app.command("compare")
    def compare_cmd(model: Optional[str] = typer.Argument(None),
                    setup: list[str] = typer.Option([], "--setup", "-s",
                                                    help="e.g. '2x rtx-4090 pcie4-x8 layer' (repeatable)"),
                    scenario: Optional[str] = typer.Option(None, "--scenario",
                                                           help="fits-on-one, does-not-fit or serving"),
                    quant: Optional[str] = typer.Option(None, "--quant", "-q"),
                    context: int = typer.Option(8192, "--context", "-c"),
                    users: int = typer.Option(1, "--users", "-u"),
                    as_json: bool = typer.Option(False, "--json"),
                    plot: Optional[str] = typer.Option(None, "--plot")):
        """Setups side by side: speed per user, aggregate throughput, memory, verdict."""
        from .. import api

        res = api.compare(model, setup, quant=quant, context=context, users=users, scenario=scenario)
        if plot:
            from ..plots import plot_compare

            plot_compare(res, plot)
        if as_json:
            return _dump(res)
        from .render import render_compare

        render_compare(res)

    @app.command("builds")
    def builds_cmd(model: str = typer.Argument(...),
                   quant: Optional[str] = typer.Option(None, "--quant", "-q"),
                   budget: Optional[float] = typer.Option(None, "--budget", help="USD"),
                   users: int = typer.Option(1, "--users", "-u"),
                   context: int = typer.Option(8192, "--context", "-c"),
                   electricity: float = typer.Option(0.15, "--electricity", help="USD per kWh"),
                   as_json: bool = typer.Option(False, "--json"),
                   plot: Optional[str] = typer.Option(None, "--plot")):
        """Popular builds for MODEL: fit, speed, throughput, cost per token."""
        from .. import api

        res = api.builds(model, quant=quant, budget=budget, users=users, context=context, electricity=electricity)
        if plot:
            from ..plots import plot_builds

            plot_builds(res, plot)
        if as_json:
            return _dump(res)
        from .render import render_builds

        render_builds(res)
