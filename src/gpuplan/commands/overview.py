"""What `gpuplan` with no arguments shows: this machine, what it can run, and a worked example."""

from __future__ import annotations


def overview() -> None:
    from rich.console import Console

    from .planning import plan_command_core

    con = Console()
    con.print("[bold]gpuplan[/bold]: will this LLM fit, how to split it, how fast it runs, which flags start it.\n")
    try:
        from ..bench.commands import probe_lines
        from ..sources.probe import probe

        p = probe(measure_bandwidth=True)
        con.print("[bold]This machine[/bold] (gpuplan probe):")
        for line in probe_lines(p):
            con.print(f"  {line}", markup=False, highlight=False)
        model, quant = ("meta-llama/Meta-Llama-3-8B", "Q4_K_M") if p.gpus else ("meta-llama/Llama-3.2-1B", "Q4_K_M")
        con.print(f"\n[bold]On this machine[/bold]: gpuplan plan {model} --quant {quant}\n")
        plan_command_core(brief=True, model=model, quant=quant, context=4096)
    except Exception as e:  # the overview must not fail on an odd machine; the example below still runs
        con.print(f"(could not plan for this machine: {e})")
    con.print("\n[bold]Example[/bold]: gpuplan plan meta-llama/Meta-Llama-3-8B --quant Q4_K_M --gpus '2x rtx-4090'\n")
    plan_command_core(brief=True, model="meta-llama/Meta-Llama-3-8B", quant="Q4_K_M", gpus="2x rtx-4090")
    con.print("\nMore: gpuplan --help · fit · plan · compare --scenario does-not-fit · builds MODEL ·"
              " validate FILE · bench URL · probe · serve")
