"""Hostile input on the command line, through the real entry point (`python -c ... main()` in a
subprocess, as a user runs it): special files, huge names, YAML bombs, bad numbers, output paths
(issue 11). Each case must end in one `error: ...` line naming the input and exit 2, within a
bound, never a traceback or a hang. Cases in other helpers' areas live in their own suites."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import gpuplan

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT / "data" / "measurements" / "dev.csv"
BOMB = "".join(f"{a}: &{a} [{', '.join(['*' + p] * 9 if p else ['x'] * 9)}]\n"
               for p, a in zip([""] + list("abcdefgh"), "abcdefghi")) + "gpus: *i\n"


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(Path(gpuplan.__file__).parents[1]), GPUPLAN_CALIBRATION="")
    return subprocess.run([sys.executable, "-c", "from gpuplan.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def one_line_error(r: subprocess.CompletedProcess, *words: str) -> str:
    out = r.stdout + r.stderr
    assert "Traceback" not in out, out[-2000:]
    assert r.returncode == 2, (r.returncode, out[-1000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    os.mkfifo(d / "pipe.csv")
    (d / "folder").mkdir()
    (d / "bomb.yaml").write_text(BOMB)
    (d / "deep.yaml").write_text("gpus: " + "[" * 50_000 + "]" * 50_000 + "\n")
    (d / "big.csv").write_bytes(DEV.read_bytes()[:1000] + b"x" * (65 << 20))
    (d / "notutf8.csv").write_bytes(b"\xff\xfe\xfa" * 100)
    (d / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (d / "inf.csv").write_text(DEV.read_text().splitlines()[0] + "\n"
                               + "x,llama.cpp,2024-01,meta-llama/Meta-Llama-3-8B,Q4_K_M,rtx-4090,inf,none,none,,,"
                                 "0,0,128,1,decode,100,\n")
    (d / "nouse.csv").write_text(DEV.read_text().splitlines()[0] + "\n"
                                 + "x,llama.cpp,2024-01,no/such-model,Q4_K_M,rtx-4090,1,none,none,,,0,0,128,1,decode,100,\n")
    return d


# (name, argv with {d} for the fixture folder, words the error line must contain)
CASES = [
    ("validate /dev/zero", ["validate", "/dev/zero"], ["'/dev/zero' is a character device"]),
    ("validate a FIFO", ["validate", "{d}/pipe.csv"], ["is a FIFO"]),
    ("validate a folder", ["validate", "{d}/folder"], ["is a directory"]),
    ("validate 65 MiB", ["validate", "{d}/big.csv"], ["accepted: at most 64 MiB"]),
    ("validate not UTF-8", ["validate", "{d}/notutf8.csv"], ["not UTF-8"]),
    ("validate deep JSON", ["validate", "{d}/deep.json"], ["deep.json"]),
    ("hardware YAML alias bomb", ["fit", "meta-llama/Meta-Llama-3-8B", "--hardware", "{d}/bomb.yaml"],
     ["aliases (*name) are not accepted"]),
    ("hardware YAML nested 50,000 deep", ["fit", "meta-llama/Meta-Llama-3-8B", "--hardware", "{d}/deep.yaml"],
     ["nested too deeply"]),
    ("hardware file is a FIFO", ["fit", "meta-llama/Meta-Llama-3-8B", "--hardware", "{d}/pipe.csv"], ["FIFO"]),
    ("100,000-character model", ["fit", "m" * 100_000, "--gpus", "rtx-4090"], ["--model is 100,000 characters long; accepted: at most 1,000 characters"]),
    ("100,000-character model, plan", ["plan", "m" * 100_000, "--gpus", "rtx-4090"], ["100,000 characters"]),
    ("100,000-character model, show", ["models", "show", "m" * 100_000], ["100,000 characters"]),
    ("bench http://[::1", ["bench", "http://[::1"], ["server URL 'http://[::1' is not a valid URL"]),
    ("bench --timeout inf", ["bench", "http://127.0.0.1:9", "--timeout", "inf"], ["--timeout 'inf' is not a finite number"]),
    ("bench --duration inf", ["bench", "http://127.0.0.1:9", "--duration", "inf"], ["--duration 'inf' is not a finite number"]),
    ("bench --timeout nan", ["bench", "http://127.0.0.1:9", "--timeout", "nan"], ["--timeout 'nan' is not a finite number"]),
    ("bench --prompt-tokens 10^8", ["bench", "http://127.0.0.1:9", "--prompt-tokens", "100000000"],
     ["--prompt-tokens 100,000,000 is out of range"]),
    ("bench --csv to a folder", ["bench", "http://127.0.0.1:9", "--csv", "{d}/folder"], ["--csv", "is a directory"]),
    ("bench --out in a missing folder", ["bench", "http://127.0.0.1:9", "--out", "{d}/no/r.json"],
     ["--out", "does not exist"]),
    ("probe --save to a folder", ["probe", "--no-bandwidth", "--save", "{d}/folder"], ["--save", "is a directory"]),
    ("serve --log-level foo", ["serve", "--log-level", "foo"], ["--log-level 'foo'", "accepted: critical"]),
]


@pytest.mark.parametrize("name,argv,words", CASES, ids=[c[0] for c in CASES])
def test_hostile_cli_input_is_one_clear_line(files, name, argv, words):
    r = run_cli(*[a.replace("{d}", str(files)) for a in argv])
    one_line_error(r, *words)


def test_a_row_with_infinite_gpus_is_a_row_error(files):
    r = run_cli("validate", str(files / "inf.csv"), "--json")
    assert "Traceback" not in r.stderr
    rows = json.loads(r.stdout)["rows"]
    assert "n_gpus 'inf' is not a whole number; accepted: a whole number, 0 to 4,096" in rows[0]["reason"]


def test_validate_with_no_usable_row_is_not_a_success(files):
    r = run_cli("validate", str(files / "nouse.csv"), "--json")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert json.loads(r.stdout)["summary"]["predicted"] == 0  # the JSON contract is still printed
    assert r.stderr.startswith("error: no row could be predicted (unknown model 'no/such-model'")


def test_validate_20000_identical_rows_within_a_minute(tmp_path):
    """88 s on the issue's machine (direction agreement compared every pair): now each distinct
    row is predicted once and identical rows form no pair."""
    header = DEV.read_text().splitlines()[0] + "\n"
    row = "x,llama.cpp,2024-01,meta-llama/Meta-Llama-3-8B,Q4_K_M,rtx-4090,1,none,none,,,0,0,128,1,decode,100,\n"
    p = tmp_path / "same.csv"
    p.write_text(header + row * 20_000)
    r = run_cli("validate", str(p), "--json", timeout=60)
    assert r.returncode == 0, r.stderr[-500:]
    s = json.loads(r.stdout)["summary"]
    assert s["predicted"] == 20_000 and s["direction"] == {"pairs": 0, "agreement": None}


# ------------------------------------------------------------------ the option parser's own errors
# Each was three lines of click usage text (Usage:, Try ..., Error: ...) on the old main.
USAGE = [
    (["fit", "meta-llama/Meta-Llama-3-8B", "--context", "nan"],
     "error: --context 'nan' is not a whole number; accepted: a whole number, 2 to 10,000,000"),
    (["plan", "meta-llama/Meta-Llama-3-8B", "--users", "abc"],
     "error: --users 'abc' is not a whole number; accepted: a whole number, 1 to 100,000"),
    (["plan", "meta-llama/Meta-Llama-3-8B", "--min-user-tok-s", "fast"],
     "error: --min-user-tok-s 'fast' is not a finite number; accepted: a finite number, 0 to 1,000,000"),
    (["fit", "meta-llama/Meta-Llama-3-8B", "--ram-gib", "lots"],
     "error: --ram-gib 'lots' is not a finite number; accepted: a finite number, 1 to 65,536"),
    (["builds", "meta-llama/Meta-Llama-3-8B", "--budget", "cheap"],
     "error: --budget 'cheap' is not a finite number; accepted: a finite number, more than 0 up to 100,000,000"),
    (["compare", "--context", "1e99"], "error: --context '1e99' is not a whole number"),
    (["bench", "http://127.0.0.1:9", "--timeout", "soon"],
     "error: --timeout 'soon' is not a finite number; accepted: a finite number, more than 0 up to 86,400"),
    (["bench", "http://127.0.0.1:9", "--n-gpus", "two"], "error: --n-gpus 'two' is not a whole number"),
    (["serve", "--port", "0"], "error: --port 0 is out of range; accepted: 1 to 65,535"),
    (["serve", "--port", "http"], "error: --port 'http' is not a whole number; accepted: a whole number, 1 to 65,535"),
    (["serve", "--workers", "1000"], "error: --workers 1,000 is out of range; accepted: 1 to 64"),
    (["fit", "meta-llama/Meta-Llama-3-8B", "--foo"], "error: gpuplan fit: no such option: --foo"),
    (["fit"], "error: gpuplan fit: missing argument 'model'"),
    (["fit", "a", "b"], "error: gpuplan fit: got unexpected extra argument(s) (b)"),
]


@pytest.mark.parametrize("argv,line", USAGE, ids=[" ".join(a)[:60] for a, _ in USAGE])
def test_usage_errors_are_one_line_with_the_range(argv, line):
    got = one_line_error(run_cli(*argv))
    assert got.startswith(line), got


def test_usage_error_as_json_names_the_option():
    r = run_cli("fit", "meta-llama/Meta-Llama-3-8B", "--context", "nan", "--json")
    one_line_error(r)
    assert json.loads(r.stdout)["error"] == {
        "input": "context", "value": "nan", "accepted": "a whole number, 2 to 10,000,000",
        "message": "--context 'nan' is not a whole number; accepted: a whole number, 2 to 10,000,000"}


# ------------------------------------------------------------------ hardware files
HARDWARE = [  # each was a traceback (or, for cores -1, a plan for a CPU with -1 cores) on the old main
    ("gpus: 2x rtx-3090\nram_gib: lots\n", "ram_gib 'lots' is not a finite number; accepted: a finite number, more than 0"),
    ("gpus: 2x rtx-3090\nlink: 7\n", "link 7 is not text"),
    ("gpus: 2x rtx-3090\nnodes: abc\n", "nodes 'abc' is not a whole number; accepted: a whole number, 1 to 1,024"),
    ("gpus: 2x rtx-3090\nnodes: 2.5\n", "nodes '2.5' is not a whole number"),
    ("cpu:\n  cores: -1\n", "cpu.cores -1 is out of range; accepted: 1 to 10,000"),
    ("cpu:\n  cores: many\n", "cpu.cores 'many' is not a whole number"),
    ("gpus: rtx-4090\nhost_memory:\n  bandwidth_gb_s: .inf\n", "host_memory.bandwidth_gb_s 'inf' is not a finite number"),
    ("gpus: rtx-4090\nram_gb: 64\n", "unknown key ram_gb; accepted: gpus, link, host_memory, ram_gib, nodes, cpu"),
    ("gpus: [1, 2]\n", "gpus [1, 2] is not text"),
    ("- gpus: rtx-4090\n", "needs a mapping"),
]


@pytest.mark.parametrize("text,words", HARDWARE, ids=[t.replace("\n", " ")[:40] for t, _ in HARDWARE])
def test_hostile_hardware_files(tmp_path, text, words):
    (tmp_path / "hw.yaml").write_text(text)
    line = one_line_error(run_cli("fit", "meta-llama/Meta-Llama-3-8B", "--hardware", str(tmp_path / "hw.yaml")))
    assert f"hardware file {tmp_path / 'hw.yaml'}" in line and words in line, line


def test_a_probed_hardware_file_still_loads(tmp_path):
    """What `gpuplan probe --save` writes (nulls where it found nothing) loads as before."""
    (tmp_path / "hw.yaml").write_text("gpus: null\nlink: null\nhost_memory:\n  bandwidth_gb_s: null\n  ram_gib: 23.5\n"
                                      "cpu:\n  model: AMD EPYC\n  cores: 2\n  threads: 2\n")
    r = run_cli("fit", "google/gemma-3-270m-it", "--hardware", str(tmp_path / "hw.yaml"), "--json")
    assert r.returncode == 0, r.stderr
    dev = json.loads(r.stdout)["devices"][0]
    assert dev["name"] == "probed-cpu" and dev["capacity_gb"] == round(23.5 * 2**30 / 1e9, 2)


# ------------------------------------------------------------------ calibration files
CALIBRATION = [  # old main: a traceback (strings), or a confident wrong answer (the rest)
    ("stream_eff: {cuda: -0.8}", "stream_eff.cuda -0.8 is out of range; accepted: more than 0 up to 1.5"),
    ("token_fixed_s: {cuda: -1}", "token_fixed_s.cuda -1 is out of range; accepted: 0 to 1"),
    ("kv_read_eff: .nan", "kv_read_eff 'nan' is not a finite number"),
    ("hop_sync_s: abc", "hop_sync_s 'abc' is not a finite number; accepted: a finite number, 0 to 1"),
    ("stream_eff: {cuda: fast}", "stream_eff.cuda 'fast' is not a finite number"),
    ("stream_eff: 0.5", "stream_eff 0.5 is not a mapping"),
    ("core_bw_gb_s: {desktop-cpu: -5}", "core_bw_gb_s.desktop-cpu -5 is out of range"),
    ("int8_share: 7", "int8_share 7 is out of range; accepted: more than 0 up to 1"),
]


@pytest.mark.parametrize("line,words", CALIBRATION, ids=[c[0] for c in CALIBRATION])
def test_hostile_calibration_files(tmp_path, line, words):
    cal = tmp_path / "cal.yaml"
    cal.write_text(f"constants:\n  {line}\n")
    got = one_line_error(run_cli("validate", str(DEV), "--calibration", str(cal)))
    assert f"calibration file {cal}: {words}" in got, got


def test_a_bad_user_calibration_is_one_line_too(tmp_path):
    """$GPUPLAN_CALIBRATION is read by every estimate: a bad one is still one line."""
    cal = tmp_path / "cal.yaml"
    cal.write_text("constants:\n  stream_eff: {cuda: -0.8}\n")
    env = dict(os.environ, PYTHONPATH=str(Path(gpuplan.__file__).parents[1]), GPUPLAN_CALIBRATION=str(cal))
    r = subprocess.run([sys.executable, "-c", "from gpuplan.cli import main; main()", "plan",
                        "meta-llama/Meta-Llama-3-8B", "--gpus", "rtx-3090", "--json"],
                       capture_output=True, text=True, timeout=120, env=env)
    if r.returncode == 0:  # a gpuplan that sets a bad user file aside must say so, and stay physical
        plan = json.loads(r.stdout)
        assert f"warning: calibration file {cal}: stream_eff.cuda -0.8 is out of range" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and plan["decode_tok_s"] < 936 / 4.9, plan["decode_tok_s"]
    else:
        one_line_error(r, "stream_eff.cuda -0.8 is out of range")


# ------------------------------------------------------------------ output paths, checked before the work
OUTPUTS = [
    (["plan", "meta-llama/Meta-Llama-3-8B", "--gpus", "rtx-3090", "--plot", "{d}/x.txt"],
     "--plot '{d}/x.txt' is not a .png, .svg or .pdf file name"),
    (["plan", "meta-llama/Meta-Llama-3-8B", "--gpus", "rtx-3090", "--plot", "{d}/folder"],
     "--plot '{d}/folder' is a directory; give a file name"),
    (["compare", "--scenario", "serving", "--plot", "{d}/no/c.png"], "--plot '{d}/no/c.png': folder '{d}/no' does not exist"),
    (["builds", "meta-llama/Meta-Llama-3-8B", "--plot", "/dev/null"], "--plot '/dev/null' is a character device"),
    (["validate", str(DEV), "--plot", "{d}/chart"], "--plot '{d}/chart' is not a .png, .svg or .pdf file name"),
    (["calibrate", str(DEV), "--out", "{d}/folder"], "--out '{d}/folder' is a directory; give a file name"),
    (["calibrate", str(DEV), "--out", "{d}/no/cal.yaml"], "--out '{d}/no/cal.yaml': folder '{d}/no' does not exist"),
    (["probe", "--no-bandwidth", "--save", "{d}/no/hw.yaml"], "--save '{d}/no/hw.yaml': folder '{d}/no' does not exist"),
    (["probe", "--no-bandwidth", "--save", "/dev/null"], "--save '/dev/null' is a character device"),
]


@pytest.mark.parametrize("argv,words", OUTPUTS, ids=[" ".join(a[:1] + a[-2:])[:60] for a, _ in OUTPUTS])
def test_output_paths_are_checked_first(files, argv, words):
    """Refused in well under the time the work takes (calibrate fits for a minute), nothing written."""
    import time

    before = sorted(p.name for p in files.iterdir())
    t0 = time.monotonic()
    r = run_cli(*[a.replace("{d}", str(files)) for a in argv])
    one_line_error(r, words.replace("{d}", str(files)))
    assert time.monotonic() - t0 < 30
    assert sorted(p.name for p in files.iterdir()) == before  # no folder.png, no half file


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere: a read-only folder stops no one")
def test_an_output_folder_that_cannot_be_written(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    one_line_error(run_cli("probe", "--no-bandwidth", "--save", str(ro / "hw.yaml")), "cannot be written")
