"""Print prediction errors on a measurement file grouped by condition (a development aid)."""
import sys
from collections import defaultdict
from gpuplan.bench.measurements import read_measurements
from gpuplan.bench.validate import predict_rows

rows, _ = read_measurements(sys.argv[1:] or ["data/measurements/dev.csv"])
res = predict_rows(rows)
g = defaultdict(list)
for r in res:
    m = r["_row"]
    if r["predicted"] is None:
        print("NONE", r["reason"]); continue
    key = (m.source[-12:], m.metric.value, m.split, m.gpu[:12], m.quant)
    g[key].append((r["predicted"] / r["measured"], m.n_gpus, m.model.split("/")[1][:14], m.n_prompt, m.n_gen))
for k, v in sorted(g.items()):
    print(k, " ".join(f"{n}:{rat:.2f}" for rat, n, *_ in v))
