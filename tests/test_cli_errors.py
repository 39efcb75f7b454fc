"""Bad input -> one line on stderr that starts with `error:` and names the input, exit status 2,
never a traceback (DESIGN.md, habit 9).

Two routes:
- the real console entry (`python -m gpuplan.cli`, whose `main()` turns InputError into the
  one-line error) in a subprocess, for at least one case per command;
- `typer.testing.CliRunner` on `gpuplan.cli.app` for the many cases. Through CliRunner an
  InputError propagates out of `app` (only `main()` converts it), so there the test accepts
  either `result.exception` being an InputError with a one-line message naming the input, or
  exit status 2 with one `error:` line (commands that convert it themselves, e.g. `bench`).
  Typer's own option parsing errors (click's usage format) also exit 2; they are accepted too.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpuplan.cli import app
from gpuplan.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
M8 = "meta-llama/Meta-Llama-3-8B"


# ---------------------------------------------------------------- bad files, made once
@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    out: dict[str, Path] = {}
    # a GGUF that ends inside its key/value section: magic, version 3, 1 tensor, 5 KVs, then
    # half of the first key's length field
    trunc = d / "truncated.gguf"
    trunc.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 1, 5) + b"\x10\x00\x00")
    out["truncated"] = trunc
    magic = d / "wrong-magic.gguf"
    magic.write_bytes(b"GGML" + b"\x00" * 60)
    out["magic"] = magic
    notjson = d / "notjson" / "config.json"
    notjson.parent.mkdir()
    notjson.write_text("{ this is not json")
    out["notjson"] = notjson
    missing = d / "missing" / "config.json"
    missing.parent.mkdir()
    missing.write_text('{"model_type": "llama", "hidden_size": 4096}')
    out["missing_fields"] = missing
    adir = d / "just-a-dir"
    adir.mkdir()
    out["dir"] = adir
    empty = d / "empty.csv"
    empty.write_text("")
    out["empty_csv"] = empty
    notcsv = d / "binary.csv"
    notcsv.write_bytes(b"\x00\x01\x02\xff\xfe binary junk \x00" * 8)
    out["binary_csv"] = notcsv
    prose = d / "prose.csv"
    prose.write_text("hello world, this is not a measurement file\n")
    out["prose_csv"] = prose
    yaml_bad = d / "hw.yaml"
    yaml_bad.write_text("gpus: [1, 2\n  link: : :\n")
    out["bad_yaml"] = yaml_bad
    return out


# ---------------------------------------------------------------- helpers
def _assert_one_error_line(stderr: str, *names: str) -> str:
    assert "Traceback" not in stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected exactly one line on stderr, got {len(lines)}:\n{stderr}"
    line = lines[0]
    assert line.startswith("error: "), line
    for n in names:
        assert n in line, f"{n!r} not named in: {line}"
    return line


def run_entry(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), GPUPLAN_CALIBRATION="", COLUMNS="120")
    return subprocess.run([sys.executable, "-m", "gpuplan.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def entry_error(args, *names: str) -> str:
    p = run_entry(*args)
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout
    assert p.returncode == 2, f"exit {p.returncode}; stderr:\n{p.stderr}"
    return _assert_one_error_line(p.stderr, *names)


runner = CliRunner()


def runner_error(args, *names: str) -> str:
    """Invoke the typer app in-process; the message of the InputError (or the one `error:`
    line of a command that converts it itself) must name every string in `names`."""
    r = runner.invoke(app, list(args))
    out = (r.stdout or "") + (r.stderr or "")
    assert "Traceback" not in out
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        assert isinstance(r.exception, InputError), \
            f"{type(r.exception).__name__}: {r.exception!r} is not an InputError"
        msg = str(r.exception)
        assert msg.strip() and "\n" not in msg.strip(), f"message is not one line: {msg!r}"
        for n in names:
            assert n in msg, f"{n!r} not named in: {msg}"
        return msg
    assert r.exit_code == 2, f"exit {r.exit_code}, output:\n{out}"
    return _assert_one_error_line(r.stderr, *names)


def runner_usage_error(args) -> None:
    """Typer/click's own parsing errors: exit 2, click's usage format, no traceback."""
    r = runner.invoke(app, list(args))
    out = (r.stdout or "") + (r.stderr or "")
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code == 2
    assert "Traceback" not in out
    assert "Error" in r.stderr or "error" in r.stderr


# ---------------------------------------------------------------- the real entry: one case per command
def test_entry_fit_unknown_gpu_suggests_close_ids():
    line = entry_error(["fit", M8, "--quant", "Q4_K_M", "--gpus", "rtx-4900"], "rtx-4900")
    assert "rtx-4090" in line  # the close id is suggested


def test_entry_fit_unknown_model_suggests_close_ids():
    line = entry_error(["fit", "meta-llama/Meta-Llama-3-8X", "--gpus", "rtx-4090"], "Meta-Llama-3-8X")
    assert "meta-llama/Meta-Llama-3-8B" in line


def test_entry_fit_truncated_gguf(bad):
    entry_error(["fit", str(bad["truncated"]), "--gpus", "rtx-4090"], str(bad["truncated"]))


def test_entry_plan_bad_goal():
    entry_error(["plan", M8, "--quant", "Q4_K_M", "--gpus", "rtx-4090", "--goal", "fast"], "fast", "latency")


def test_entry_plan_context_zero():
    entry_error(["plan", M8, "--gpus", "rtx-4090", "--context", "0"], "context")


def test_entry_compare_without_model_or_setups():
    entry_error(["compare"], "--scenario")


def test_entry_compare_unknown_scenario():
    entry_error(["compare", "--scenario", "nope"], "nope", "fits-on-one")


def test_entry_builds_negative_budget():
    entry_error(["builds", M8, "--budget", "-1"], "budget")


def test_entry_validate_missing_file(tmp_path):
    p = tmp_path / "nope.csv"
    entry_error(["validate", str(p)], str(p))


def test_entry_bench_bad_url():
    entry_error(["bench", "not-a-url"], "not-a-url")


def test_entry_models_show_unknown_model():
    entry_error(["models", "show", "nope-model-xyz"], "nope-model-xyz")


def test_entry_gpus_bad_kind():
    entry_error(["gpus", "--kind", "tpu"], "tpu")


def test_entry_hardware_file_not_yaml(bad):
    entry_error(["fit", M8, "--hardware", str(bad["bad_yaml"])], str(bad["bad_yaml"]))


def test_entry_typer_parse_error_exits_2_without_traceback():
    p = run_entry("fit", M8, "--gpus", "rtx-4090", "--context", "abc")
    assert p.returncode == 2
    assert "Traceback" not in p.stderr + p.stdout
    assert "--context" in p.stderr


def test_entry_good_input_still_works():
    """The error path must not swallow good runs: the same command with a good id exits 0."""
    p = run_entry("fit", M8, "--quant", "Q4_K_M", "--gpus", "rtx-4090", "--json")
    assert p.returncode == 0, p.stderr
    assert '"fits": true' in p.stdout


# ---------------------------------------------------------------- hardware spec strings
@pytest.mark.parametrize("spec, names", [
    ("rtx-4900", ["rtx-4900", "rtx-4090"]),
    ("2x rtx-4900", ["rtx-4900", "rtx-4090"]),
    ("rtx-4090,rtx-3060-12gbb", ["rtx-3060-12gbb", "rtx-3060-12gb"]),
    ("2x", ["2x"]),
    ("x rtx-3090", ["'x'"]),
    ("rtx-3090:abc", ["rtx-3090:abc"]),
    ("0x rtx-3090", ["0", "rtx-3090"]),
    ("100000x rtx-3090", ["100000", "rtx-3090"]),
    ("rtx-3090:0gb", ["rtx-3090"]),
    ("rtx-3090:48gb", ["rtx-3090", "48"]),
    ("apple-m2-max-38c:100gb", ["apple-m2-max-38c", "100"]),
    ("2x apple-m2-max-38c", ["apple"]),
    ("pcie4-x16", ["pcie4-x16"]),
    ("   ", []),
])
def test_bad_gpu_spec(spec, names):
    runner_error(["fit", M8, "--quant", "Q4_K_M", "--gpus", spec], *names)


def test_bad_gpu_spec_double_x_names_the_item():
    runner_error(["fit", M8, "--quant", "Q4_K_M", "--gpus", "2xx rtx-3090"], "2xx")


def test_bad_gpu_spec_double_x_is_still_an_error():
    runner_error(["fit", M8, "--quant", "Q4_K_M", "--gpus", "2xx rtx-3090"])


# ---------------------------------------------------------------- numbers
@pytest.mark.parametrize("cmd", ["fit", "plan"])
@pytest.mark.parametrize("opt, value", [
    ("--context", "0"), ("--context", "-5"), ("--context", "99999999999"),
    ("--users", "0"), ("--users", "-1"), ("--users", "1000000000"),
])
def test_out_of_range_numbers(cmd, opt, value):
    runner_error([cmd, M8, "--quant", "Q4_K_M", "--gpus", "rtx-4090", opt, value], opt.lstrip("-"))


@pytest.mark.parametrize("args, names", [
    (["plan", M8, "--gpus", "rtx-4090", "--nodes", "0"], ["nodes"]),
    (["plan", M8, "--gpus", "3x rtx-4090", "--nodes", "2"], ["3", "2"]),
    (["plan", M8, "--gpus", "rtx-4090", "--ram-gb", "0"], ["--ram-gib", "1 to 65,536"]),
    (["builds", M8, "--budget", "-1"], ["budget"]),
    (["builds", M8, "--budget", "0"], ["budget"]),
    (["compare", M8, "--setup", "1x rtx-4090", "--context", "0"], ["context"]),
])
def test_other_bad_numbers(args, names):
    runner_error(args, *names)


def test_typer_rejects_non_numbers():
    runner_usage_error(["fit", M8, "--gpus", "rtx-4090", "--context", "abc"])
    runner_usage_error(["plan", M8, "--gpus", "rtx-4090", "--users", "many"])


# ---------------------------------------------------------------- models and files
def test_unknown_model_suggests():
    msg = runner_error(["fit", "meta-llama/Meta-Llama-3-8X", "--gpus", "rtx-4090"], "Meta-Llama-3-8X")
    assert "meta-llama/Meta-Llama-3-8B" in msg


@pytest.mark.parametrize("cmd", ["fit", "plan"])
def test_missing_model_file(cmd):
    runner_error([cmd, "/nope/model.gguf", "--gpus", "rtx-4090"], "/nope/model.gguf")


@pytest.mark.parametrize("which", ["dir", "truncated", "magic", "notjson", "missing_fields"])
def test_bad_model_files(bad, which):
    runner_error(["fit", str(bad[which]), "--gpus", "rtx-4090"], str(bad[which]))


def test_truncated_says_truncated(bad):
    assert "truncated" in runner_error(["fit", str(bad["truncated"]), "--gpus", "rtx-4090"]).lower()


def test_wrong_magic_says_not_gguf(bad):
    assert "GGUF" in runner_error(["fit", str(bad["magic"]), "--gpus", "rtx-4090"])


def test_config_missing_fields_names_them(bad):
    assert "num_hidden_layers" in runner_error(["fit", str(bad["missing_fields"]), "--gpus", "rtx-4090"])


def test_models_show_bad_file(bad):
    runner_error(["models", "show", str(bad["magic"])], str(bad["magic"]))


# ---------------------------------------------------------------- options naming things
@pytest.mark.parametrize("opt, value, accepted", [
    ("--quant", "Q9_Z", "Q4_K_M"),
    ("--engine", "foo", "llama.cpp"),
    ("--kv", "q3", "q8_0"),
    ("--link", "pcie9-x99", "pcie4-x16"),
    ("--ram", "ddr9", "ddr5"),
])
def test_unknown_names(opt, value, accepted):
    msg = runner_error(["fit", M8, "--gpus", "rtx-4090", opt, value], value)
    assert accepted in msg, "the message should say what is accepted"


@pytest.mark.parametrize("opt, value", [("--quant", "Q9_Z"), ("--engine", "foo")])
def test_unknown_names_plan(opt, value):
    runner_error(["plan", M8, "--gpus", "rtx-4090", opt, value], value)


def test_plan_bad_goal():
    runner_error(["plan", M8, "--quant", "Q4_K_M", "--gpus", "rtx-4090", "--goal", "fast"], "fast")


def test_gpus_and_hardware_together(tmp_path):
    hw = tmp_path / "hw.yaml"
    hw.write_text('gpus: "2x rtx-3090"\n')
    runner_error(["fit", M8, "--gpus", "rtx-4090", "--hardware", str(hw)], "--hardware")


# ---------------------------------------------------------------- validate
def test_validate_missing(tmp_path):
    p = tmp_path / "none.csv"
    runner_error(["validate", str(p)], str(p))


@pytest.mark.parametrize("which", ["empty_csv", "binary_csv", "prose_csv"])
def test_validate_unreadable(bad, which):
    runner_error(["validate", str(bad[which])], str(bad[which]))


# ---------------------------------------------------------------- compare / builds
def test_compare_without_model():
    runner_error(["compare"], "model")


def test_compare_without_setups():
    runner_error(["compare", M8], "--setup")


def test_compare_unknown_scenario():
    runner_error(["compare", "--scenario", "nope"], "nope", "serving")


@pytest.mark.parametrize("setup, names", [
    ("2x rtx-4900", ["rtx-4900", "rtx-4090"]),
    ("2x rtx-4090 layer row", ["layer row"]),
    ("rtx-3090:abc", ["rtx-3090:abc"]),
])
def test_compare_bad_setup(setup, names):
    runner_error(["compare", M8, "--quant", "Q4_K_M", "--setup", setup], *names)


def test_builds_unknown_model():
    runner_error(["builds", "nope/model-xyz"], "nope/model-xyz")


# ---------------------------------------------------------------- hardware files
def test_hardware_file_missing(tmp_path):
    p = tmp_path / "nope.yaml"
    runner_error(["fit", M8, "--hardware", str(p)], str(p))
    runner_error(["plan", M8, "--hardware", str(p)], str(p))


def test_hardware_file_not_yaml(bad):
    runner_error(["fit", M8, "--hardware", str(bad["bad_yaml"])], str(bad["bad_yaml"]))


def test_hardware_file_without_gpus(tmp_path):
    p = tmp_path / "hw.yaml"
    p.write_text("link: pcie4-x16\n")
    runner_error(["fit", M8, "--hardware", str(p)], str(p), "gpus")


def test_hardware_file_bad_gpu(tmp_path):
    p = tmp_path / "hw.yaml"
    p.write_text('gpus: "2x rtx-4900"\n')
    runner_error(["fit", M8, "--hardware", str(p)], "rtx-4900", "rtx-4090")


# ---------------------------------------------------------------- bench (no server is contacted)
@pytest.mark.parametrize("url", ["not-a-url", "ftp://example.com", "http://", "http://127.0.0.1:99999"])
def test_bench_bad_url(url):
    runner_error(["bench", url], url)


@pytest.mark.parametrize("levels", ["0", "-2", "1,x", ""])
def test_bench_bad_concurrency(levels):
    runner_error(["bench", "http://127.0.0.1:9", "--concurrency", levels], "--concurrency")


def test_entry_bench_concurrency_zero():
    entry_error(["bench", "http://127.0.0.1:9", "--concurrency", "0"], "--concurrency")
