"""Measurement files: the schema of data/measurements/README.md, read and written.

`read_measurements(paths)` reads any mix of
- schema CSV (header + rows, columns as in the README),
- a JSON list (or JSON lines) of objects with the schema's keys,
- llama-bench output in `-o json`, `-o jsonl`, `-o csv` or the markdown table (`-o md`),
and returns one slot per data row, in file order, indexed from 0 across all files. A bad
row becomes a RowError and a None slot; the rest are still read. A file that yields no
rows at all (missing, empty, unknown format) becomes a RowError with index None. Only
when nothing at all could be read from any file is an InputError raised.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Iterable

from ..errors import InputError
from ..inputs import MAX_TEXT_FILE_BYTES, check_output_path, finite, load_json, read_text, too_long
from ..types import Metric

COLUMNS = ("source", "engine", "date", "model", "quant", "gpu", "n_gpus", "split",
           "interconnect", "n_gpu_layers", "host_mem", "n_depth", "n_prompt", "n_gen",
           "batch", "metric", "tok_s", "note",
           # the machine of a CPU-only run (`gpuplan bench --gpu cpu` probes it), so it is predicted
           # for that CPU and RAM rather than a generic desktop; empty in published rows
           "cpu_model", "cpu_cores", "cpu_threads", "cpu_simd", "cpu_ghz", "host_bw_gb_s", "ram_gib")
# Columns a row cannot do without; the others get the default of the dataclass.
REQUIRED = ("engine", "model", "quant", "gpu", "n_gpus", "n_prompt", "n_gen", "batch",
            "metric", "tok_s")
_OPT_INTS = ("n_gpu_layers", "cpu_cores", "cpu_threads", "threads")
_OPT_FLOATS = ("cpu_ghz", "host_bw_gb_s", "ram_gib")
# Optional columns written only when a row states them (data/measurements/README.md): the GPU API
# of the engine build, the CPU threads a run used (-t), and the published sets' MoE/serving flags.
EXTRA = ("backend", "threads", "experts_on_host", "scenario")


@dataclass(frozen=True)
class Measurement:
    """One published or measured figure (a row of the measurement schema)."""

    engine: str
    model: str  # Hugging Face id; raw text where it could not be mapped (validator reports it)
    quant: str
    gpu: str  # catalog device id; `cpu` with n_gpus 0 for CPU-only runs
    n_gpus: int
    n_prompt: int
    n_gen: int
    batch: int
    metric: Metric
    tok_s: float
    source: str = ""
    date: str = ""
    split: str = "none"
    interconnect: str = "none"
    n_gpu_layers: int | None = None  # None: every layer on the GPU(s)
    host_mem: str = ""
    n_depth: int = 0
    note: str = ""
    cpu_model: str = ""
    cpu_cores: int | None = None  # physical cores
    cpu_threads: int | None = None  # logical CPUs
    cpu_simd: str = ""  # avx512-intel, avx512-amd, avx2, avx, neon (sources/cpu_device.py)
    cpu_ghz: float | None = None
    host_bw_gb_s: float | None = None  # RAM copy bandwidth gpuplan probe measured
    ram_gib: float | None = None
    backend: str = ""  # the engine build's GPU API where it is not the device's own: vulkan, opencl, rocm, ...
    threads: int | None = None  # CPU threads the run used (llama.cpp -t)
    experts_on_host: str = ""
    scenario: str = ""

    def to_row(self) -> dict[str, str]:
        d = asdict(self)
        d["metric"] = self.metric.value
        for k in _OPT_INTS + _OPT_FLOATS:
            d[k] = "" if d[k] is None else (f"{d[k]:g}" if isinstance(d[k], float) else str(d[k]))
        # 10 significant digits: a published figure such as a TTFT of 153161.51 ms keeps every digit
        d["tok_s"] = f"{self.tok_s:.10g}"
        out = {c: str(d[c]) for c in COLUMNS}
        out.update({c: str(d[c]) for c in EXTRA if d[c] not in ("", None)})  # only those it states
        return out


@dataclass(frozen=True)
class RowError:
    index: int | None  # data-row index across all files; None for an error about a whole file
    file: str
    line: int  # 1-based line in the file (0 where a format has no lines, or for a whole file)
    reason: str


class RowInvalid(ValueError):
    """A row that cannot become a Measurement; the message is the reason."""


# Physical ranges of the integer columns: the largest contexts in the catalog are 10M tokens,
# the largest published rigs a few thousand GPUs; a value outside is a typo or an attack.
INT_RANGES = {"n_gpus": (0, 4096), "n_depth": (0, 10_000_000), "n_prompt": (0, 10_000_000),
              "n_gen": (0, 10_000_000), "batch": (0, 100_000), "n_gpu_layers": (0, 10_000),
              # the largest servers have a few hundred cores, two threads each
              "cpu_cores": (1, 10_000), "cpu_threads": (1, 100_000), "threads": (1, 100_000)}
# Ranges of the optional float columns (lower bound excluded): clocks up to 10 GHz, RAM
# bandwidth up to 100 TB/s, RAM up to 1 PiB; anything above is a unit mistake.
FLOAT_RANGES = {"cpu_ghz": (0.0, 10.0), "host_bw_gb_s": (0.0, 100_000.0),
                "ram_gib": (0.0, 1_048_576.0)}
MAX_TOK_S = 1e9  # no engine decodes a billion tokens a second: a row above is corrupt
MAX_CELL_CHARS = {"note": 10_000, "source": 2_000}  # other text columns: 300 characters
MAX_ROWS = 1_000_000  # per read_measurements call; the published sets have ~900
_CSV_ERROR = object()  # key of a row the csv module could not split (the value says why)


def cell_number(column: str, value):
    """A numeric cell in its column's range, or RowInvalid in the words every bad number gets."""
    if column in INT_RANGES:
        lo, hi = INT_RANGES[column]
        args = dict(lo=lo, hi=hi, integer=True)
    else:
        lo, hi = FLOAT_RANGES.get(column, (0.0, MAX_TOK_S))
        args = dict(lo=lo, hi=hi, lo_open=True)
    try:
        return finite(column, str(value)[:40] if isinstance(value, str) else value, **args)
    except InputError as e:
        raise RowInvalid(str(e)) from None


def parse_row(raw: dict) -> Measurement:
    """A dict of schema columns (strings or numbers) -> Measurement, or RowInvalid."""
    missing = [c for c in REQUIRED if raw.get(c) is None or str(raw.get(c)).strip() == ""]
    if missing:
        raise RowInvalid(f"missing column {', '.join(missing)}")
    metric_text = str(raw["metric"]).strip()
    try:
        metric = Metric(metric_text)
    except ValueError:
        raise RowInvalid(f"unknown metric '{metric_text[:40]}'; accepted: "
                         + ", ".join(m.value for m in Metric)) from None
    out: dict = {}
    for f in fields(Measurement):
        v = raw.get(f.name)
        text = "" if v is None else str(v).strip()
        if f.name == "metric":
            out[f.name] = metric
        elif f.name in FLOAT_RANGES or f.name in INT_RANGES or f.name == "tok_s":
            if text == "" and f.name != "tok_s":
                continue  # default (only optional columns reach here)
            out[f.name] = cell_number(f.name, text)
        elif text != "":
            limit = MAX_CELL_CHARS.get(f.name, 300)
            if len(text) > limit:
                raise RowInvalid(str(too_long(f.name, len(text), limit)))
            out[f.name] = text
    return Measurement(**out)


# One parsed data row: (line number, Measurement or reason why not)
Parsed = tuple[int, "Measurement | str"]


def _schema_rows(items: Iterable[tuple[int, dict]]) -> list[Parsed]:
    out: list[Parsed] = []
    for line, raw in items:
        if _CSV_ERROR in raw:
            out.append((line, raw[_CSV_ERROR]))
            continue
        try:
            out.append((line, parse_row(raw)))
        except RowInvalid as e:
            out.append((line, str(e)))
    return out


def _read_csv(text: str) -> list[Parsed] | None:
    reader = csv.reader(io.StringIO(text))  # fields over csv.field_size_limit() (128 KiB) are errors
    try:
        header = [h.strip() for h in next(reader)]
    except (StopIteration, csv.Error):
        return None
    from . import llama_bench

    if "avg_ts" in header:
        rows = _csv_dicts(header, reader)
        # llama-bench CSV has no optional cells: a count mismatch means the columns are shifted.
        bad = {line: d[_CSV_ERROR] if _CSV_ERROR in d else
               f"row has a different number of cells than the header ({len(header)})"
               for line, d in rows if _CSV_ERROR in d or len(d) != len(header) or None in d.values()}
        return [(line, bad[line]) if line in bad else parsed
                for (line, _), parsed in zip(rows, llama_bench.from_objects(rows))]
    if not {"metric", "tok_s"} <= set(header):
        return None  # neither schema nor llama-bench CSV
    return _schema_rows(_csv_dicts(header, reader))


def _csv_dicts(header: list[str], reader) -> list[tuple[int, dict]]:
    rows = []
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as e:  # a field over the size limit, a NUL byte: that row is bad, go on
            rows.append((reader.line_num, {_CSV_ERROR: f"not a CSV row ({e})"}))
            continue
        if not any(c.strip() for c in cells):
            continue  # blank line: not a data row
        d = dict(zip(header, cells))
        if len(cells) > len(header):
            d[None] = cells[len(header):]  # surplus cells (csv.DictReader's convention)
        if len(cells) < len(header):
            # Short row: the missing cells are missing columns (parse_row names them).
            d.update({h: None for h in header[len(cells):]})
        rows.append((reader.line_num, d))
    return rows


def _read_json(text: str) -> list[Parsed] | None:
    from . import llama_bench

    try:
        data = load_json(text, "measurement file", allow_nan=True)
        items = list(enumerate(data if isinstance(data, list) else [data], start=1))
        line_based = False
    except InputError:
        # JSON lines (llama-bench -o jsonl): one object per line.
        items, line_based = [], True
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    items.append((n, load_json(line, "line", allow_nan=True)))
                except InputError:
                    if not items:
                        return None
                    items.append((n, None))
    out: list[Parsed] = []
    for n, obj in items:
        line = n if line_based else 0
        if not isinstance(obj, dict):
            out.append((line, "not a JSON object"))
        elif "avg_ts" in obj:
            out.extend(llama_bench.from_objects([(line, obj)]))
        else:
            out.extend(_schema_rows([(line, obj)]))
    return out


def read_file(path: Path, max_bytes: int = MAX_TEXT_FILE_BYTES, max_rows: int = MAX_ROWS) -> list[Parsed]:
    """Every data row of one file; raises InputError when the file as a whole is unreadable
    (missing, a directory, a FIFO or device, over max_bytes, not UTF-8, more lines than
    max_rows allows: counted before any row is parsed, so a refused file costs no memory)."""
    from . import llama_bench

    text = read_text(path, "measurement file", max_bytes)
    if text.count("\n") > max_rows + 1000:  # a header, blank and log lines: a little slack
        raise InputError(f"measurement file '{path}' has more than {max_rows:,} lines of rows; "
                         f"accepted: at most {max_rows:,} rows in one run")
    s = text.lstrip()
    if not s:
        raise InputError(f"measurement file '{path}' is empty")
    rows = None
    if s[0] in "[{":
        rows = _read_json(text)
    elif llama_bench.looks_like_markdown(text):
        rows = llama_bench.from_markdown(text)
    else:
        rows = _read_csv(text)
    if not rows:
        raise InputError(f"measurement file '{path}': no data rows found; accepted: schema CSV "
                         "or JSON, llama-bench -o json/jsonl/csv/md output")
    return rows


def read_measurements(paths, defaults: dict | None = None, *, max_rows: int = MAX_ROWS,
                      max_bytes: int = MAX_TEXT_FILE_BYTES
                      ) -> tuple[list[Measurement | None], list[RowError]]:
    """Rows of all files in order (None where a row is bad) and the errors, as described above.

    `defaults` fills fields a format cannot know (llama-bench markdown has no GPU name), e.g.
    {"gpu": "rtx-3090", "n_gpus": 1}; only fields left empty or unknown are replaced.
    More than `max_rows` data rows in all, or a file over `max_bytes`, is an InputError.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    rows: list[Measurement | None] = []
    errors: list[RowError] = []
    file_errors: list[str] = []
    for p in map(Path, paths):
        try:
            parsed = read_file(p, max_bytes, max_rows)
        except InputError as e:
            errors.append(RowError(None, str(p), 0, str(e)))
            file_errors.append(str(e))
            continue
        if len(rows) + len(parsed) > max_rows:
            raise InputError(f"measurement files have more than {max_rows:,} data rows; "
                             f"accepted: at most {max_rows:,} in one run")
        for line, m in parsed:
            if isinstance(m, str):
                errors.append(RowError(len(rows), str(p), line, m))
                rows.append(None)
            else:
                rows.append(_fill(m, defaults) if defaults else m)
    if not rows:
        raise InputError("; ".join(file_errors) if file_errors else "no measurement files given")
    return rows, errors


def _fill(m: Measurement, defaults: dict) -> Measurement:
    change = {k: v for k, v in defaults.items()
              if k in COLUMNS and getattr(m, k) in ("", None, "unknown")}
    return replace(m, **change) if change else m


def write_csv(rows: Iterable[Measurement], path) -> None:
    """Write rows in the schema, header first (None slots are skipped); the extra optional
    columns only when some row states them."""
    rows = [m for m in rows if m is not None]
    dicts = [m.to_row() for m in rows]
    CsvAppender(path, extra=tuple(c for c in EXTRA if any(c in d for d in dicts))).append(rows)


class CsvAppender:
    """A schema CSV written as rows come: the header when made (so a bad path fails before any
    work), then rows appended and flushed to disk, so an interrupted run keeps what it measured.
    extra: the optional columns in the header (all of them by default: rows not known yet)."""

    def __init__(self, path, extra: tuple[str, ...] = EXTRA):
        self.path = check_output_path(path, "CSV file")
        self.fields = COLUMNS + tuple(extra)
        try:
            with self.path.open("w", newline="") as f:
                csv.DictWriter(f, fieldnames=self.fields).writeheader()
        except OSError as e:
            raise InputError(f"CSV file '{path}' cannot be written: {e.strerror or e}") from None

    def append(self, rows: Iterable[Measurement]) -> None:
        with self.path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields, restval="")
            for m in rows:
                if m is not None:
                    w.writerow(m.to_row())
            f.flush()
            os.fsync(f.fileno())
