"""`gpuplan ARGV` run in-process as the console script runs it (cli.main, SystemExit and all),
for tests that check the exit status and the one line on stderr."""

from __future__ import annotations

import sys

import pytest


def run_main(argv: list[str], capsys) -> tuple[int, str]:
    """(exit status, stderr) of `gpuplan ARGV`."""
    from gpuplan import cli

    old = sys.argv
    sys.argv = ["gpuplan", *argv]
    try:
        with pytest.raises(SystemExit) as e:
            cli.main()
    finally:
        sys.argv = old
    return e.value.code, capsys.readouterr().err
