"""The `gpuplan` command: a thin layer over the same API the web page uses.

Heavy modules are imported inside commands so that start-up stays fast.
"""

from __future__ import annotations

import sys
from typing import Optional

import typer

from .errors import InputError

app = typer.Typer(add_completion=False, no_args_is_help=False, rich_markup_mode=None,
                  help="Will this LLM fit, how should it be split, how fast will it run, which flags start it.")
models_app = typer.Typer(add_completion=False, help="List and search the model catalog; `models show` one model.")
app.add_typer(models_app, name="models")


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context):
    if ctx.invoked_subcommand is None:
        from .commands.overview import overview

        overview()


# ---------------------------------------------------------------- catalog listings
@app.command("gpus")
def gpus_cmd(search: Optional[str] = typer.Argument(None, help="filter: words in id or name"),
             kind: Optional[str] = typer.Option(None, help="gpu, apple or cpu"),
             links: bool = typer.Option(False, "--links", help="list interconnects instead"),
             host: bool = typer.Option(False, "--host", help="list host memory kinds instead"),
             as_json: bool = typer.Option(False, "--json")):
    """List devices (GPUs, Apple chips, CPUs), or links / host memory, from the catalog."""
    from .commands.listing import list_devices

    list_devices(search, kind, links, host, as_json)


@models_app.callback(invoke_without_command=True)
def models_list(ctx: typer.Context, search: Optional[str] = typer.Option(None, "--search", "-s"),
                as_json: bool = typer.Option(False, "--json")):
    if ctx.invoked_subcommand is None:
        from .commands.listing import list_models

        list_models(search, as_json)


@models_app.command("show")
def models_show(model: str = typer.Argument(..., help="catalog id, .gguf file, or config.json"),
                quant: Optional[str] = typer.Option(None, "--quant", "-q"),
                as_json: bool = typer.Option(False, "--json")):
    """Architecture and size breakdown of one model."""
    from .commands.listing import show_model

    show_model(model, quant, as_json)


@models_app.command("add")
def models_add(path: str = typer.Argument(..., help="a config.json, the directory holding one, or a .gguf file"),
               model_id: Optional[str] = typer.Option(None, "--id", help="id to file it under (default: from the file)"),
               force: bool = typer.Option(False, "--force", help="replace an entry of the same id"),
               as_json: bool = typer.Option(False, "--json")):
    """Add a model to your own catalog (~/.config/gpuplan/models/): later commands resolve it by id."""
    from .commands.listing import add_model

    add_model(path, model_id, force, as_json)


# ---------------------------------------------------------------- fit
@app.command("fit")
def fit_cmd(model: str = typer.Argument(..., help="catalog id, .gguf file, or config.json"),
            quant: Optional[str] = typer.Option(None, "--quant", "-q", help="e.g. Q4_K_M, Q8_0, F16, FP8, AWQ;"
                                                                            " default: the format the model ships in"),
            gpus: Optional[str] = typer.Option(None, "--gpus", "-g", help="e.g. '2x rtx-3090', 'rtx-4090,rtx-3060-12gb'"),
            hardware: Optional[str] = typer.Option(None, "--hardware", help="hardware file from `gpuplan probe --save`"),
            context: Optional[int] = typer.Option(None, "--context", "-c", help="tokens per sequence (default 8192)"),
            users: Optional[int] = typer.Option(None, "--users", "-u", help="parallel sequences (default 1)"),
            engine: Optional[str] = typer.Option(None, "--engine", "-e"),
            kv: Optional[str] = typer.Option(None, "--kv", help="KV cache type: f16 (default), q8_0, q4_0, fp8"),
            link: Optional[str] = typer.Option(None, "--link"),
            ram: Optional[str] = typer.Option(None, "--ram", help="host memory id, e.g. ddr5-6000-2ch"),
            ram_gib: Optional[float] = typer.Option(None, "--ram-gib", "--ram-gb", help="system RAM size, GiB"),
            flash_attn: Optional[str] = typer.Option(None, "--flash-attn", help="on, off or auto (default: the engine's)"),
            swa_full: Optional[bool] = typer.Option(None, "--swa-full/--no-swa-full",
                                                    help="llama.cpp: full-size sliding-window cache (default: the engine's)"),
            ubatch: Optional[int] = typer.Option(None, "--ubatch", help="llama.cpp physical batch -ub (default 512)"),
            gpu_memory_utilization: Optional[float] = typer.Option(None, "--gpu-memory-utilization",
                                                                   help="vLLM/SGLang share of each GPU (default 0.9)"),
            as_json: bool = typer.Option(False, "--json")):
    """Does MODEL fit: memory per device (weights, KV cache, overhead), verdict, largest context."""
    from .commands.fit import fit

    fit(as_json, model=model, quant=quant, gpus=gpus, hardware=hardware, context=context, users=users,
        engine=engine, kv=kv, link=link, ram=ram, ram_gib=ram_gib, flash_attn=flash_attn, swa_full=swa_full,
        ubatch=ubatch, gpu_memory_utilization=gpu_memory_utilization)


# ---------------------------------------------------------------- validate / calibrate
@app.command("validate")
def validate_cmd(files: list[str] = typer.Argument(..., help="measurement CSV/JSON or llama-bench output"),
                 as_json: bool = typer.Option(False, "--json"),
                 plot: Optional[str] = typer.Option(None, "--plot", help="write predicted vs measured PNG"),
                 calibration: Optional[str] = typer.Option(None, "--calibration")):
    """Predict every measured row and report the error per metric, engine and split."""
    from .commands.validate import run_validate

    run_validate(files, as_json, plot, calibration)


def _register_commands():
    """Commands that live in their own modules register themselves here."""
    from .bench import commands as bench_commands
    from .commands import calibrate, planning
    from .web import commands as web_commands

    for m in (bench_commands, planning, calibrate, web_commands):
        m.register(app)


_register_commands()


def main() -> None:
    """The console entry: an InputError (or a usage error) is one `error:` line on stderr and exit
    status 2; with --json the same error is also printed on stdout as {"error": {...}}."""
    as_json = "--json" in sys.argv[1:]
    try:
        rc = app(prog_name="gpuplan", standalone_mode=False)  # returns the exit code of a command that exits (typer.Exit)
    except InputError as e:
        if as_json:
            sys.stdout.write(_json(e.to_dict()))
        sys.stderr.write(f"error: {e}\n")
        sys.exit(2)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        sys.stderr.write("aborted\n")
        sys.exit(1)
    except Exception as e:  # the option parser's own errors (a bad number, an unknown option)
        if not (hasattr(e, "show") and hasattr(e, "format_message")):
            raise
        err = usage_error(e)
        if as_json:
            sys.stdout.write(_json(err.to_dict()))
        sys.stderr.write(f"error: {err}\n")
        sys.exit(2)
    if isinstance(rc, int) and not isinstance(rc, bool):
        sys.exit(rc)


def usage_error(e) -> InputError:
    """A usage error of the option parser as the one line every other bad input gets.

    typer converts option values with pydantic and keeps pydantic's error as the cause, so a
    value it refuses (`--context nan`) is reported by the command's request model, with the
    option's range: the same words as a value the request refuses (`--context 0`)."""
    from pydantic import ValidationError

    from .requests import COMMAND_REQUESTS, input_error

    ctx = getattr(e, "ctx", None)
    command = getattr(getattr(ctx, "command", None), "name", None)
    where = getattr(ctx, "command_path", None) or "gpuplan"
    param = getattr(e, "param", None)
    cause = e.__cause__
    if param is not None and isinstance(cause, ValidationError) and cause.errors():
        cls = COMMAND_REQUESTS.get(command)
        field = param.name
        if cls is None or field not in cls.model_fields:
            from .requests import Request

            cls = type("Options", (Request,), {"__annotations__": {}})  # no range known: the kind alone
        first = dict(cause.errors()[0], loc=(field,))
        return input_error(cls, [first], "cli")
    msg = " ".join(e.format_message().split()).rstrip(".")
    msg = msg[:1].lower() + msg[1:]
    name = getattr(param, "name", None)
    return InputError(f"{where}: {msg} (see `{where} --help`)", input=name, accepted=f"see `{where} --help`")


def _json(obj) -> str:
    import json

    return json.dumps(obj, indent=2) + "\n"


if __name__ == "__main__":
    main()
