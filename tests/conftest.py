import os

# A developer's own calibration file must not change test results.
os.environ["GPUPLAN_CALIBRATION"] = ""


# ---- tests write nothing into tracked files: compare their state before and after the run
import hashlib  # noqa: E402
import subprocess  # noqa: E402
from pathlib import Path  # noqa: E402

_ROOT = Path(__file__).resolve().parents[1]


def _tracked_state():
    """{path: sha256} of tracked files that differ from HEAD (None outside a git checkout)."""
    try:
        out = subprocess.run(["git", "-C", str(_ROOT), "status", "--porcelain", "--untracked-files=no"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    state = {}
    for line in out.stdout.splitlines():
        path = _ROOT / line[3:].split(" -> ")[-1]
        state[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "gone"
    return state


def pytest_sessionstart(session):
    session.config._tracked_before = _tracked_state()


def pytest_sessionfinish(session, exitstatus):
    before = getattr(session.config, "_tracked_before", None)
    if before is None or getattr(session.config, "workerinput", None) is not None:
        return
    after = _tracked_state()
    changed = sorted(p for p in set(before) | set(after or {}) if (after or {}).get(p) != before.get(p))
    if changed:
        session.config.get_terminal_writer().line(
            "error: the tests changed tracked files: " + ", ".join(changed), red=True)
        session.exitstatus = 1
