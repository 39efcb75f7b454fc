"""Reading what comes from outside, safely: files, JSON, numbers, output paths.

Every reader here fails with one InputError that names the input and what is accepted:
- files are opened without blocking (a FIFO never hangs a reader), must be regular files
  (a directory, /dev/zero or a socket is refused), and are read by streaming up to a size cap;
- JSON is parsed with a nesting limit (deep nesting is a parser's stack, not a model);
- numbers must be finite and inside a stated range;
- an output path is checked before the work that fills it starts, so no result is lost.
"""

from __future__ import annotations

import contextvars
import json
import math
import os
import stat
from pathlib import Path

from .errors import InputError

MiB = 2**20
MAX_TEXT_FILE_BYTES = 64 * MiB  # measurement files, configs, calibrations: the real ones are < 1 MiB
MAX_JSON_DEPTH = 64  # config.json nests 3-4 levels; llama-bench JSON 2
MAX_NAME_CHARS = 4096  # PATH_MAX on Linux; longer is never a file or a catalog id


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def check_name(what: str, text: str, limit: int = MAX_NAME_CHARS) -> str:
    """A name or path typed by a person: bounded length, no NUL bytes."""
    if len(text) > limit:
        raise too_long(what, len(text), limit)
    if "\x00" in text:
        raise InputError(f"{what} contains a NUL byte", input=what, accepted="text without NUL bytes")
    return text


def read_bytes(path, what: str, max_bytes: int = MAX_TEXT_FILE_BYTES) -> bytes:
    """The bytes of a regular file, at most `max_bytes`; special files and directories refused.

    Opened with O_NONBLOCK and checked with fstat on the open descriptor: a FIFO swapped in
    between a check and the open can neither block nor be read."""
    p = check_name(f"{what} path", str(path))
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise InputError(f"{what} '{p}' does not exist") from None
    except IsADirectoryError:
        raise InputError(f"{what} '{p}' is a directory; give a file") from None
    except OSError as e:
        raise InputError(f"{what} '{p}' cannot be opened: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{what} '{p}' is {_kind(st.st_mode)}; give a regular file")
        if st.st_size > max_bytes:
            raise InputError(f"{what} '{p}' is {st.st_size / MiB:.1f} MiB; accepted: at most "
                             f"{max_bytes / MiB:g} MiB")
        chunks, total = [], 0
        while True:  # stream: a file that grows while it is read still stops at the cap
            b = os.read(fd, min(1 * MiB, max_bytes + 1 - total))
            if not b:
                break
            chunks.append(b)
            total += len(b)
            if total > max_bytes:
                raise InputError(f"{what} '{p}' is larger than {max_bytes / MiB:g} MiB; "
                                 f"accepted: at most {max_bytes / MiB:g} MiB")
        return b"".join(chunks)
    except OSError as e:
        raise InputError(f"{what} '{p}' cannot be read: {e.strerror or e}") from None
    finally:
        os.close(fd)


def read_text(path, what: str, max_bytes: int = MAX_TEXT_FILE_BYTES) -> str:
    """read_bytes decoded as UTF-8 (a byte-order mark is dropped)."""
    data = read_bytes(path, what, max_bytes)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{what} '{path}' is not UTF-8 text (byte {e.start}); "
                         "give a text file") from None


def json_depth_ok(obj, max_depth: int = MAX_JSON_DEPTH) -> bool:
    """True when no list/dict nests deeper than max_depth (iterative: no recursion limit)."""
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, dict):
            o = o.values()
        elif not isinstance(o, list):
            continue
        if d > max_depth:
            return False
        stack.extend((x, d + 1) for x in o if isinstance(x, (dict, list)))
    return True


def _no_constants(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def load_json(text: str | bytes, what: str, max_depth: int = MAX_JSON_DEPTH, allow_nan: bool = False):
    """json.loads with one clear error: bad JSON, NaN/Infinity (unless allowed), or nesting
    over max_depth."""
    try:
        obj = json.loads(text, parse_constant=None if allow_nan else _no_constants)
    except RecursionError:
        raise InputError(f"{what}: JSON nested too deeply; accepted: at most {max_depth} levels") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, NaN/Infinity
        raise InputError(f"{what}: not valid JSON ({str(e).splitlines()[0][:120]})") from None
    if not json_depth_ok(obj, max_depth):
        raise InputError(f"{what}: JSON nested too deeply; accepted: at most {max_depth} levels")
    return obj


# ---------------------------------------------------------------- one message format for bad values
# Wherever a value comes from (an option, a query parameter, a file, a measurement row), a bad
# number reads the same: "--context 0 is out of range; accepted: 2 to 10,000,000", "--users 'abc'
# is not a whole number; accepted: a whole number, 1 to 100,000"; requests.input_error uses these.
def fmt_number(v) -> str:
    if isinstance(v, float) and math.isfinite(v) and v.is_integer() and abs(v) < 1e15:
        v = int(v)
    return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else f"{v:g}" if isinstance(v, float) else str(v)


def range_text(lo=None, hi=None, lo_open: bool = False) -> str | None:
    """'1 to 10,000,000', 'more than 0 up to 1', '0 or more', 'more than 0', 'up to 5' or None."""
    if lo is None and hi is None:
        return None
    if lo is None:
        return f"up to {fmt_number(hi)}"
    if lo_open:
        return f"more than {fmt_number(lo)}" + (f" up to {fmt_number(hi)}" if hi is not None else "")
    return f"{fmt_number(lo)} or more" if hi is None else f"{fmt_number(lo)} to {fmt_number(hi)}"


def out_of_range(name: str, value, accepted: str | None, input: str | None = None) -> InputError:
    accepted = accepted or "a number in range"
    return InputError(f"{name} {fmt_number(value)} is out of range; accepted: {accepted}",
                      input=input or name.lstrip("-"), value=value, accepted=accepted)


def not_a_number(name: str, value, integer: bool = False, bounds: str | None = None,
                 input: str | None = None) -> InputError:
    """Not a number at all, not finite, or (integer) not whole."""
    what = "a whole number" if integer else "a finite number"
    accepted = what + (f", {bounds}" if bounds else "")
    shown = str(value)[:40]
    return InputError(f"{name} '{shown}' is not {what}; accepted: {accepted}", input=input or name.lstrip("-"),
                      value=shown, accepted=accepted)


def too_long(name: str, length: int, limit: int, unit: str = "characters", input: str | None = None) -> InputError:
    return InputError(f"{name} is {length:,} {unit} long; accepted: at most {limit:,} {unit}",
                      input=input or name.lstrip("-"), value=length, accepted=f"at most {limit:,} {unit}")


def finite(name: str, value, lo: float | None = None, hi: float | None = None, *,
           lo_open: bool = False, integer: bool = False):
    """`value` as a float (or int) that is finite and inside [lo, hi] ((lo, hi] with lo_open)."""
    bounds = range_text(lo, hi, lo_open)
    try:
        if isinstance(value, bool):
            raise TypeError
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        raise not_a_number(name, value, integer, bounds) from None
    if not math.isfinite(x) or (integer and x != int(x)):
        raise not_a_number(name, value, integer, bounds)
    if (lo is not None and (x <= lo if lo_open else x < lo)) or (hi is not None and x > hi):
        raise out_of_range(name, x, bounds)
    return int(x) if integer else x


def check_output_path(path, what: str) -> Path:
    """An output file that can be written: its folder exists, it is not a directory or a
    special file. Checked before a run so that a typo loses nothing."""
    p = Path(check_name(f"{what} path", str(path)))
    if p.is_dir():
        raise InputError(f"{what} '{p}' is a directory; give a file name")
    if p.exists() and not p.is_file():
        raise InputError(f"{what} '{p}' is {_kind(p.stat().st_mode)}; give a regular file")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{what} '{p}': folder '{parent}' does not exist")
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise InputError(f"{what} '{p}' cannot be written (permission denied)")
    return p


def write_text(path, text: str, what: str) -> None:
    """Write a whole output file atomically (a temp file beside it, then rename): an interrupted
    run leaves the previous version, never half a file."""
    p = check_output_path(path, what)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, p)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{what} '{p}' cannot be written: {e.strerror or e}") from None


class OverBudget(InputError):
    """Work that ran past its time budget (the web answers 503: try a smaller input)."""


class Budget:
    """A time budget for CPU-heavy work, checked between units of work (rows, blocks): Python
    threads cannot be stopped from outside, so the work stops itself."""

    def __init__(self, seconds: float, what: str = "this request", hint: str = "send fewer rows or a smaller input"):
        import time

        self._clock = time.monotonic
        self.seconds, self.what, self.hint = seconds, what, hint
        self.end = self._clock() + seconds

    def check(self) -> None:
        if self._clock() > self.end:
            raise OverBudget(f"{self.what} needs more than its {self.seconds:g} s of computing; {self.hint}")


_BUDGET: contextvars.ContextVar[Budget | None] = contextvars.ContextVar("gpuplan_time_budget", default=None)


class time_budget:
    """`with time_budget(30, "this plan"):` the work inside (in this thread or task) stops with
    OverBudget once it has run that long, at the next check_budget() of the planner's loops (the
    serving simulator, the capacity search). The web server wraps every API computation in one."""

    def __init__(self, seconds: float, what: str = "this request", hint: str = "ask for less"):
        self.budget = Budget(seconds, what, hint)

    def __enter__(self):
        self._token = _BUDGET.set(self.budget)
        return self.budget

    def __exit__(self, *exc):
        _BUDGET.reset(self._token)
        return False


def check_budget() -> None:
    """OverBudget when the work runs inside a time_budget that has run out; nothing otherwise."""
    b = _BUDGET.get()
    if b is not None:
        b.check()


def load_yaml(text: str, what: str):
    """yaml.safe_load without aliases (a "billion laughs" file expands 9^9-fold as it is used)
    and with one clear error for bad YAML or nesting too deep for the parser."""
    import yaml

    class _NoAliases(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(None, None, "aliases (*name) are not accepted here", mark)
            return super().compose_node(parent, index)

    try:
        data = yaml.load(text, Loader=_NoAliases)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise InputError(f"{what} is nested too deeply") from None
    except yaml.YAMLError as e:
        msg = ' '.join(str(e).replace('in "<unicode string>", ', '').split())
        raise InputError(f"{what} is not valid YAML ({msg[:200]})") from None
    if not json_depth_ok(data):
        raise InputError(f"{what} is nested too deeply; accepted: at most {MAX_JSON_DEPTH} levels")
    return data


def read_yaml(path, what: str, max_bytes: int = 4 * MiB):
    """A user's YAML file (hardware, calibration): a regular file of at most max_bytes, parsed
    by load_yaml."""
    return load_yaml(read_text(path, what, max_bytes), f"{what} '{path}'")
