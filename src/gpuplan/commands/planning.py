"""`gpuplan plan`, `gpuplan compare`, `gpuplan builds`: options -> typed request -> api -> result,
rendered with rich or dumped as JSON."""

from __future__ import annotations

from typing import Optional

import typer

from .common import dump, request

CONTEXT_HELP = "tokens per sequence (default 8192)"
USERS_HELP = "sequences at once (default 1)"


def plan_command_core(as_json: bool = False, plot: str | None = None, brief: bool = False, **options) -> None:
    from .. import api
    from ..requests import PlanRequest

    req = request(PlanRequest, **options)
    if plot:
        from ..plots import check_plot_path

        check_plot_path(plot)  # before the work: a bad name must not cost the answer
    res = api.plan(req)
    if plot:
        from ..plots import plot_plan

        plot_plan(res.model_dump(), plot)
    if as_json:
        return dump(res)
    from .render import render_plan

    render_plan(res, brief=brief)


def register(app: typer.Typer) -> None:
    @app.command("plan")
    def plan_cmd(model: str = typer.Argument(..., help="catalog id, .gguf file, or config.json"),
                 quant: Optional[str] = typer.Option(None, "--quant", "-q",
                                                     help="default: the format the model ships in"),
                 gpus: Optional[str] = typer.Option(None, "--gpus", "-g", help="e.g. '2x rtx-3090'; default: probe"),
                 hardware: Optional[str] = typer.Option(None, "--hardware", help="file from `gpuplan probe --save`"),
                 context: Optional[int] = typer.Option(None, "--context", "-c", help=CONTEXT_HELP),
                 users: Optional[int] = typer.Option(None, "--users", "-u", help=USERS_HELP),
                 goal: Optional[str] = typer.Option(None, "--goal", help="latency (default), throughput or cost"),
                 min_user_tok_s: Optional[float] = typer.Option(None, "--min-user-tok-s"),
                 engine: Optional[str] = typer.Option(None, "--engine", "-e"),
                 kv: Optional[str] = typer.Option(None, "--kv", help="KV cache type (default: f16, quantized"
                                                                     " only when needed)"),
                 link: Optional[str] = typer.Option(None, "--link"),
                 ram: Optional[str] = typer.Option(None, "--ram", help="host memory id, e.g. ddr5-6000-2ch"),
                 ram_gib: Optional[float] = typer.Option(None, "--ram-gib", "--ram-gb", help="system RAM size, GiB"),
                 nodes: Optional[int] = typer.Option(None, "--nodes"),
                 prompt_tokens: Optional[int] = typer.Option(None, "--prompt-tokens", help="default 512"),
                 output_tokens: Optional[int] = typer.Option(None, "--output-tokens", help="default 256"),
                 flash_attn: Optional[str] = typer.Option(None, "--flash-attn", help="on, off or auto (default: the engine's)"),
                 swa_full: Optional[bool] = typer.Option(None, "--swa-full/--no-swa-full",
                                                                        help="llama.cpp: full-size sliding-window cache (default: the engine's)"),
                 ubatch: Optional[int] = typer.Option(None, "--ubatch", help="llama.cpp physical batch -ub (default 512)"),
                 gpu_memory_utilization: Optional[float] = typer.Option(None, "--gpu-memory-utilization",
                                                                                            help="vLLM/SGLang share of each GPU (default 0.9)"),
                 rate: Optional[float] = typer.Option(None, "--rate", help="requests/s to plan for (Poisson), instead of --users"),
                 ttft: Optional[str] = typer.Option(None, "--ttft", help="time-to-first-token target, e.g. 2s"),
                 tpot: Optional[str] = typer.Option(None, "--tpot", help="time-per-output-token target, e.g. 100ms"),
                 e2el: Optional[str] = typer.Option(None, "--e2el", help="end-to-end latency target, e.g. 30s"),
                 slo: Optional[str] = typer.Option(None, "--slo", help="targets in one: 'ttft=2s,tpot=100ms,p=90'"),
                 trace: Optional[str] = typer.Option(None, "--trace", help="replay a request trace (CSV or JSON lines:"
                                                     " arrival_s, prompt_tokens, output_tokens) on every candidate"),
                 shared_prefix: Optional[int] = typer.Option(None, "--shared-prefix",
                                                             help="tokens every prompt starts with (a system prompt;"
                                                                  " part of --prompt-tokens): prefix caching computes"
                                                                  " them once (default 0)"),
                 as_json: bool = typer.Option(False, "--json"),
                 plot: Optional[str] = typer.Option(None, "--plot", help="write a PNG")):
        """Best plan for MODEL on your hardware, the alternatives, why, and launch commands. With
        several users, a request rate or latency targets: the serving simulator's answer (TTFT,
        TPOT, throughput against load, and how much load each candidate holds under the targets)."""
        plan_command_core(as_json, plot, model=model, quant=quant, gpus=gpus, hardware=hardware, context=context,
                          users=users, goal=goal, min_user_tok_s=min_user_tok_s, engine=engine, kv=kv, link=link,
                          ram=ram, ram_gib=ram_gib, nodes=nodes, prompt_tokens=prompt_tokens,
                          output_tokens=output_tokens, flash_attn=flash_attn, swa_full=swa_full, ubatch=ubatch,
                          gpu_memory_utilization=gpu_memory_utilization, rate=rate, ttft=ttft, tpot=tpot,
                          e2el=e2el, slo=slo, trace=trace, shared_prefix=shared_prefix)

    @app.command("compare")
    def compare_cmd(model: Optional[str] = typer.Argument(None),
                    setup: list[str] = typer.Option([], "--setup", "-s",
                                                    help="e.g. '2x rtx-4090 pcie4-x8 layer' (repeatable)"),
                    scenario: Optional[str] = typer.Option(None, "--scenario",
                                                           help="fits-on-one, does-not-fit or serving"),
                    quant: Optional[str] = typer.Option(None, "--quant", "-q"),
                    context: Optional[int] = typer.Option(None, "--context", "-c",
                                                          help="default: the scenario's, else 8192"),
                    users: Optional[int] = typer.Option(None, "--users", "-u", help="default: the scenario's, else 1"),
                    as_json: bool = typer.Option(False, "--json"),
                    plot: Optional[str] = typer.Option(None, "--plot")):
        """Setups side by side: speed per user, aggregate throughput, memory, verdict."""
        from .. import api
        from ..requests import CompareRequest

        req = request(CompareRequest, model=model, setup=tuple(setup), quant=quant, context=context,
                      users=users, scenario=scenario)
        if plot:
            from ..plots import check_plot_path

            check_plot_path(plot)
        res = api.compare(req)
        if plot:
            from ..plots import plot_compare

            plot_compare(res.model_dump(), plot)
        if as_json:
            return dump(res)
        from .render import render_compare

        render_compare(res)

    @app.command("builds")
    def builds_cmd(model: str = typer.Argument(...),
                   quant: Optional[str] = typer.Option(None, "--quant", "-q"),
                   budget: Optional[float] = typer.Option(None, "--budget", help="USD"),
                   users: Optional[int] = typer.Option(None, "--users", "-u", help=USERS_HELP),
                   context: Optional[int] = typer.Option(None, "--context", "-c", help=CONTEXT_HELP),
                   electricity: Optional[float] = typer.Option(None, "--electricity", help="USD per kWh (default 0.15)"),
                   as_json: bool = typer.Option(False, "--json"),
                   plot: Optional[str] = typer.Option(None, "--plot")):
        """Popular builds for MODEL: fit, speed, throughput, cost per token."""
        from .. import api
        from ..requests import BuildsRequest

        req = request(BuildsRequest, model=model, quant=quant, budget=budget, users=users, context=context,
                      electricity=electricity)
        if plot:
            from ..plots import check_plot_path

            check_plot_path(plot)
        res = api.builds(req)
        if plot:
            from ..plots import plot_builds

            plot_builds(res.model_dump(), plot)
        if as_json:
            return dump(res)
        from .render import render_builds

        render_builds(res)
