"""`gpuplan calibrate`."""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("calibrate")
    def calibrate_cmd(files: list[str] = typer.Argument(..., help="measurement CSV/JSON (from gpuplan bench)"),
                      out: Optional[str] = typer.Option(None, "--out", "-o",
                                                        help="default: ~/.config/gpuplan/calibration.yaml"),
                      as_json: bool = typer.Option(False, "--json")):
        """Fit engine and memory efficiencies to your own measurements; later estimates use them."""
        from ..bench.calibrate import calibrate
        from ..errors import InputError
        from ..perf.constants import user_calibration_path

        from ..inputs import check_output_path

        target = out or user_calibration_path()
        if target is None:
            raise InputError("GPUPLAN_CALIBRATION is set empty; give --out FILE", input="out",
                             accepted="--out FILE")
        if out is None:  # the default place: its folder is made, the file must still be writable
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise InputError(f"calibration folder {target.parent} cannot be made: {e.strerror or e}; "
                                 "give --out FILE", input="out", accepted="--out FILE") from None
        check_output_path(target, "--out" if out else "calibration file")  # before the fit's minute of work
        res = calibrate(files, target)
        if as_json:
            sys.stdout.write(json.dumps(res, indent=2) + "\n")
            return
        b, a = res["median_ape_before"], res["median_ape_after"]
        print(f"calibrated on {res['rows']} rows: median error {b:.1%} -> {a:.1%}")
        for k, v in res["constants"].items():
            print(f"  {k}: {v}")
        print(f"wrote {res['file']} (used by later estimates; `--calibration FILE` picks another)")
