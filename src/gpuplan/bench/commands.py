"""`gpuplan bench` and `gpuplan probe`: register(app) adds them to a typer app.

Bad input prints one line `error: ...` on stderr and exits 2, never a traceback.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

import typer

from ..errors import InputError
from ..inputs import check_name, check_output_path, write_text
from .loadgen import LIMITS


def _guard(fn):
    """InputError -> `error: ...` on stderr, exit 2."""

    @functools.wraps(fn)
    def wrapper(*a, **kw):
        try:
            return fn(*a, **kw)
        except InputError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None

    return wrapper


MAX_LEVELS = 32


def parse_levels(text: str) -> list[int]:
    lo, hi = LIMITS["concurrency"]
    try:
        levels = [int(x) for x in text[:1000].replace(" ", "").split(",") if x]
    except ValueError:
        levels = []
    if not levels or len(levels) > MAX_LEVELS or any(not lo <= c <= hi for c in levels):
        raise InputError(f"--concurrency '{text[:60]}' is not a list of up to {MAX_LEVELS} whole numbers "
                         f"from {lo} to {hi}, e.g. 1,2,4,8")
    return levels


def check_url(url: str) -> str:
    shown = url[:200]
    try:
        check_name("server URL", url, 2000)
        u = urlparse(url)
        u.port  # noqa: B018 - raises on a bad port
    except ValueError:  # "Invalid IPv6 URL", a port out of range or not a number
        raise InputError(f"server URL '{shown}' is not a valid URL, e.g. http://127.0.0.1:8080") from None
    if u.scheme not in ("http", "https") or not u.hostname:
        raise InputError(f"server URL '{shown}' is not an http(s) URL, e.g. http://127.0.0.1:8080")
    return url


def _predictor():
    from ..perf.predict import predict_row

    return predict_row


_PROBED = {}


def _probed_hardware():
    """This machine as the probe sees it: a CPU-only bench is predicted for this CPU and RAM."""
    if "hw" not in _PROBED:
        from ..sources.hardware import hardware_from_dict
        from ..sources.probe import probe

        _PROBED["hw"] = hardware_from_dict(probe(measure_bandwidth=True).to_hardware(), "probed machine")
    return _PROBED["hw"]


def machine_columns() -> dict:
    """This machine as a CPU-only run's rows carry it (CPU, cores, SIMD, clock, RAM and the RAM
    bandwidth measured), so validate and calibrate predict those rows for this machine."""
    if "columns" not in _PROBED:
        from ..sources.cpu_device import clock_ghz, simd_class
        from ..sources.probe import probe

        p = probe(measure_bandwidth=True)
        _PROBED["columns"] = {"cpu_model": p.cpu_model, "cpu_cores": p.cpu_cores, "cpu_threads": p.cpu_threads,
                              "cpu_simd": simd_class(), "cpu_ghz": round(clock_ghz(), 3),
                              "host_bw_gb_s": p.host_bandwidth_gb_s, "ram_gib": p.ram_gib}
    return _PROBED["columns"]


def with_machine(rows: list) -> list:
    """CPU-only rows (gpu cpu) with this machine's columns filled in."""
    from dataclasses import replace

    if not any(m.gpu == "cpu" for m in rows):
        return rows
    cols = machine_columns()
    return [replace(m, **{k: v for k, v in cols.items() if v is not None}) if m.gpu == "cpu" else m for m in rows]


def _predict(predict_row, m) -> str:
    try:
        hw = _probed_hardware() if m.gpu == "cpu" and not m.host_mem and not m.cpu_cores else None
        v = predict_row(m, hardware=hw)
    except Exception as e:  # an unknown model or GPU: say why instead of failing the run
        return f"n/a ({str(e).splitlines()[0][:60] if str(e) else type(e).__name__})"
    return "n/a" if v is None else f"{v:.1f}"


def _print_rows(rows, predict: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    pr = _predictor() if predict else None
    t = Table(title="measurement rows")
    for col in ("metric", "batch", "n_prompt", "n_gen", "n_depth", "tok/s") + (("predicted",) if pr else ()):
        t.add_column(col, justify="right")
    for m in rows:
        cells = [m.metric.value, str(m.batch), str(m.n_prompt), str(m.n_gen), str(m.n_depth), f"{m.tok_s:.1f}"]
        t.add_row(*cells, *([_predict(pr, m)] if pr else []))
    Console().print(t)


def _print_levels(result) -> None:
    from rich.console import Console
    from rich.table import Table

    def f(x, scale=1.0, fmt="{:.1f}"):
        return "-" if x is None else fmt.format(x * scale)

    t = Table(title=f"{result.url}  model={result.model}  prompt~{result.prompt_tokens_target} "
                    f"max_tokens={result.max_tokens}")
    for col in ("conc", "ok", "err", "timeout", "dropped", "tok/s", "req/s", "TTFT p50/p90/p99 ms",
                "ITL p50/p99 ms", "user tok/s p50"):
        t.add_column(col, justify="right")
    for lv in result.levels:
        s = lv.summary()
        tt, it = s["ttft_s"], s["itl_s"]
        t.add_row(str(s["concurrency"]), str(s["ok"]), str(s["error"]), str(s["timeout"]),
                  str(s["dropped"]), f(s["throughput_tok_s"]), f(s["request_rate_s"], fmt="{:.2f}"),
                  "/".join(f(tt[q], 1000, "{:.0f}") for q in ("p50", "p90", "p99")),
                  "/".join(f(it[q], 1000, "{:.1f}") for q in ("p50", "p99")),
                  f(s["user_tok_s"]["p50"]))
    console = Console()
    console.print(t)
    for lv in result.levels:
        for reason, n in lv.reasons().items():
            console.print(f"  c={lv.concurrency}: {n} x {reason}", markup=False, highlight=False)
        if lv.stopped_early:
            console.print(f"  c={lv.concurrency}: {lv.stopped_early}", markup=False)
    for note in result.notes:
        console.print(f"  note: {note}", markup=False)


def register(app: typer.Typer) -> None:
    @app.command()
    @_guard
    def bench(
        url: Optional[str] = typer.Argument(None, help="OpenAI-compatible server, e.g. http://127.0.0.1:8080"),
        model: Optional[str] = typer.Option(None, help="model name the server expects (default: its first)"),
        concurrency: str = typer.Option("1,2,4,8", help="comma-separated concurrency levels"),
        prompt_tokens: int = typer.Option(512, help="prompt length, tokens (about)"),
        max_tokens: int = typer.Option(128, help="tokens to generate per request"),
        duration: Optional[float] = typer.Option(None, help="seconds per level (instead of --requests)"),
        requests: Optional[int] = typer.Option(None, help="requests per level (default 8)"),
        timeout: float = typer.Option(120.0, help="seconds one request may take"),
        deadline: Optional[float] = typer.Option(None, help="seconds the whole run may take"),
        chat: bool = typer.Option(False, help="use /v1/chat/completions"),
        out: Optional[Path] = typer.Option(None, help="write the full result as JSON"),
        csv: Optional[Path] = typer.Option(None, help="write measurement rows (schema CSV)"),
        model_id: Optional[str] = typer.Option(None, help="Hugging Face id for the rows"),
        quant: str = typer.Option("unknown", help="weight format for the rows, e.g. Q4_K_M"),
        gpu: str = typer.Option("unknown", help="catalog device id for the rows"),
        n_gpus: int = typer.Option(1, help="GPUs used (0 with --gpu cpu)"),
        engine: Optional[str] = typer.Option(None, help="llama.cpp, vllm, ..."),
        predict: bool = typer.Option(False, help="print gpuplan's prediction beside each row"),
        llama_bench: Optional[Path] = typer.Option(None, "--llama-bench", help="run llama-bench on this GGUF"),
        progress: Optional[bool] = typer.Option(None, "--progress/--no-progress"),
    ):
        """Measure a running server (or llama-bench) and write measurement rows."""
        from .measurements import CsvAppender, write_csv

        from ..requests import BenchRequest

        BenchRequest.parse("cli", prompt_tokens=prompt_tokens, max_tokens=max_tokens, timeout=timeout,
                           duration=duration, requests=requests, deadline=deadline, n_gpus=n_gpus)
        for name, v in (("--model", model), ("--model-id", model_id), ("--quant", quant), ("--gpu", gpu)):
            if v is not None:
                check_name(name, v, 1000)
        if duration is not None and requests is not None:
            raise InputError("give --duration or --requests, not both")
        # output paths first: a typo must not cost a measured run
        for name, p in (("--out", out), ("--csv", csv)):
            if p is not None:
                check_output_path(p, name)
        if engine is not None:
            from ..types import Engine

            engine = Engine.parse(engine).value
        levels = parse_levels(concurrency)
        if llama_bench is not None:
            from . import llama_bench as lb

            parsed = lb.run(str(llama_bench), n_prompt=prompt_tokens, n_gen=max_tokens)
            rows = with_machine([m for _, m in parsed if not isinstance(m, str)])
            for _, m in parsed:
                if isinstance(m, str):
                    typer.echo(f"warning: {m}", err=True)
            _print_rows(rows, predict)
            if out:
                write_text(out, json.dumps([m.to_row() for m in rows], indent=1), "--out")
            if csv:
                write_csv(rows, csv)
            return
        if url is None:
            raise InputError("give a server URL (e.g. http://127.0.0.1:8080) or --llama-bench MODEL.gguf")
        check_url(url)
        from .loadgen import run_bench

        sink = CsvAppender(csv) if csv else None  # header now: the file exists before the run

        def on_level(so_far, level):
            """Each level's rows are on disk as soon as it ends (and the JSON so far)."""
            if sink:
                sink.append(with_machine(so_far.to_measurements(model_id or so_far.model, quant, gpu, n_gpus,
                                                                engine or "unknown", levels=[level])))
            if out:
                write_text(out, json.dumps(so_far.to_json(), indent=1), "--out")

        result = run_bench(url, levels, model=model, chat=chat, prompt_tokens=prompt_tokens,
                           max_tokens=max_tokens, timeout_s=timeout, progress=progress,
                           requests=None if duration else (requests or 8), duration_s=duration,
                           deadline_s=deadline, on_level=on_level)
        _print_levels(result)
        rows = with_machine(result.to_measurements(model_id or result.model, quant, gpu, n_gpus, engine or "unknown"))
        if rows:
            _print_rows(rows, predict)
        if out:
            write_text(out, json.dumps(result.to_json(), indent=1), "--out")
        if result.interrupted:
            typer.echo(f"interrupted: kept {len(result.levels)} level(s)"
                       + (f", rows in {csv}" if csv else ""), err=True)
            raise typer.Exit(130)
        if not any(lv.counts()["ok"] for lv in result.levels):
            reasons = {r for lv in result.levels for r in lv.reasons()}
            typer.echo(f"error: no request succeeded ({'; '.join(sorted(reasons))[:300]})", err=True)
            raise typer.Exit(1)

    @app.command()
    @_guard
    def probe(
        save: Optional[Path] = typer.Option(None, help="write a hardware file (YAML) for --hardware"),
        as_json: bool = typer.Option(False, "--json", help="print JSON"),
        bandwidth: bool = typer.Option(True, "--bandwidth/--no-bandwidth", help="measure RAM bandwidth (~1 s)"),
    ):
        """What is in this machine: GPUs, links, CPU, RAM and its bandwidth."""
        from ..sources.probe import probe as run_probe

        if save:
            check_output_path(save, "--save")  # before the probe's second of measuring
        res = run_probe(measure_bandwidth=bandwidth)
        if as_json:
            typer.echo(json.dumps(res.to_dict(), indent=1))
        else:
            for line in probe_lines(res):
                typer.echo(line)
        if save:
            write_text(save, res.to_hardware_yaml(), "--save")
            typer.echo(f"wrote {save}", err=as_json)


def probe_lines(res) -> list[str]:
    """The probe as a person reads it (also shown by `gpuplan` with no arguments)."""
    out = list(res.messages)
    for g in res.gpus:
        pcie = (f", PCIe gen {g.pcie_gen}/{g.pcie_gen_max} x{g.pcie_width}/{g.pcie_width_max}"
                if g.pcie_gen_max else "")
        out.append(f"GPU {g.index}: {g.name} -> {g.device_id or 'not in catalog'}, "
                   f"{g.memory_total_gib:.1f} GiB{pcie}" + (f", {g.nvlink_active} NVLink links" if g.nvlink_active else ""))
    if res.gpus:
        out.append(f"driver {res.driver_version or '-'}, CUDA {res.cuda_version or '-'}; "
                   f"peer access: {res.p2p_pairs or 'none'}; NVLink pairs: {res.nvlink_pairs or 'none'}; "
                   f"link: {res.link_id or 'unknown'}")
    out.append(f"CPU: {res.cpu_model}, {res.cpu_cores} cores, {res.cpu_threads} threads")
    out.append(f"RAM: {res.ram_gib} GiB" + (f", copy bandwidth {res.host_bandwidth_gb_s} GB/s "
                                            "(one thread, a lower bound)" if res.host_bandwidth_gb_s else ""))
    return out
