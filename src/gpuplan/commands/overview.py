"""What `gpuplan` with no arguments shows: this machine, and a worked example."""

from __future__ import annotations


def overview() -> None:
    from rich.console import Console

    con = Console()
    con.print("[bold]gpuplan[/bold]: will this LLM fit, how to split it, how fast it runs, which flags start it.\n")
    try:
        from ..sources.probe import probe

        p = probe(measure_bandwidth=False)
        con.print("[bold]This machine[/bold] (gpuplan probe):")
        con.print(p.summary() if hasattr(p, "summary") else str(p))
    except Exception as e:  # the overview must never fail on an odd machine
        con.print(f"(could not probe this machine: {e})")
    con.print("\n[bold]Example[/bold]: gpuplan plan meta-llama/Meta-Llama-3-8B --quant Q4_K_M --gpus rtx-4090\n")
    from .planning import plan_command_core

    plan_command_core("meta-llama/Meta-Llama-3-8B", "Q4_K_M", "rtx-4090", None, 8192, 1, None, None, None,
                      None, "latency", 0.0, 1, False, None, brief=True)
    con.print("\nMore: gpuplan --help · gpuplan fit · gpuplan plan · gpuplan compare --scenario fits-on-one"
              " · gpuplan builds · gpuplan validate · gpuplan bench · gpuplan serve")
