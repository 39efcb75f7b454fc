"""`gpuplan validate`."""

from __future__ import annotations

import json
import sys


def load_calibration(path):
    if not path:
        return None
    from ..bench.calibrate import load_calibration as load

    return load(path)


def run_validate(files, as_json, plot, calibration):
    from ..bench.validate import validate
    from ..errors import InputError

    if plot:
        from ..plots import check_plot_path

        check_plot_path(plot)  # before the work
    res = validate(files, load_calibration(calibration))
    if res["summary"]["rows"] == 0:
        raise InputError("no measurement rows could be read from " + ", ".join(files))
    if plot:
        from ..plots import plot_validation

        plot_validation(res["_results"], plot)
    if as_json:
        sys.stdout.write(json.dumps({"rows": res["rows"], "summary": res["summary"]}, indent=1) + "\n")
    else:
        _print(res)
    if res["summary"]["predicted"] == 0:  # nothing was checked: not a success
        reasons = sorted({r["reason"] for r in res["rows"] if r["reason"]})
        sys.stderr.write(f"error: no row could be predicted ({'; '.join(reasons)[:300]})\n")
        sys.exit(1)


def _print(res):
    from rich.console import Console
    from rich.table import Table

    con = Console()
    t = Table(title="predicted vs measured (tok/s; ms for the latency metrics ttft_median_ms, tpot_median_ms)")
    for c in ("#", "metric", "model", "hardware", "measured", "predicted", "error", "note"):
        t.add_column(c)
    results = {r["index"]: r for r in res["_results"]}
    for row in res["rows"]:
        r = results.get(row["index"])
        m = r["_row"] if r else None
        hwtxt = f"{m.n_gpus}x {m.gpu} {m.split}" if m else ""
        err = (f"{(row['predicted'] - row['measured']) / row['measured']:+.0%}"
               if row["predicted"] is not None else "")
        t.add_row(str(row["index"]), row["metric"] or "", (m.model.split("/")[-1] + " " + m.quant) if m else "",
                  hwtxt, f"{row['measured']:.1f}" if row["measured"] is not None else "",
                  f"{row['predicted']:.1f}" if row["predicted"] is not None else "-", err, row["reason"] or "")
    con.print(t)
    s = res["summary"]
    st = Table(title="summary: absolute percentage error")
    for c in ("group", "n", "median", "p90", "within 10%", "within 25%"):
        st.add_column(c)

    def add(name, d):
        if d.get("n"):
            st.add_row(name, str(d["n"]), f"{d['median_ape']:.1%}", f"{d['p90_ape']:.1%}",
                       f"{d['within_10pct']:.0%}", f"{d['within_25pct']:.0%}")

    add("all speeds", s["overall"])
    for kind in ("metric", "engine", "split"):
        for k, d in s[f"by_{kind}"].items():
            add(f"{kind}={k}", d)
    con.print(st)
    d = s["direction"]
    con.print(f"direction agreement: {d['agreement']:.0%} of {d['pairs']} pairs" if d["pairs"] else
              "direction agreement: no row pairs differ only in GPU count")
    con.print(f"rows: {s['rows']}, predicted {s['predicted']}, unpredicted {s['unpredicted']}, "
              f"unreadable {s['unreadable']}")
