"""The suite runs from any clone: no test reads ../shared or an absolute /work path (a user's
clone has neither), and the suite leaves tracked files as they were (conftest.py checks that at
the end of every run)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# a path into the workspace outside the repository, or its shared folder
OUTSIDE = re.compile(r"""(["'`]/work/|\.\./shared|["'/]shared/(docs|data|seed)|parents\[\d\]\s*/\s*["']shared)""")


def test_tests_and_scripts_read_only_the_repository():
    hits = []
    for folder in ("tests", "benchmarks", "scripts", ".ci"):
        for p in (ROOT / folder).rglob("*"):
            if p.is_file() and p.suffix in (".py", ".sh", "") and p.name != Path(__file__).name:
                for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1):
                    if OUTSIDE.search(line):
                        hits.append(f"{p.relative_to(ROOT)}:{n}: {line.strip()[:100]}")
    assert hits == [], "\n".join(hits)
