"""Imported once by the fork server of the web's worker processes (limits.run_heavy): load the
web app, the CLI (multiprocessing re-imports the main script in each worker), the modules a
job uses and the catalog there, and predict one row, so that every worker forked from it starts
warm: in milliseconds instead of the ~0.4 s of a cold start."""

import numpy  # noqa: F401

from .. import catalog, cli  # noqa: F401
from ..bench import validate  # noqa: F401
from ..bench.measurements import parse_row
from ..perf.predict import predict_row
from . import app, inspect  # noqa: F401

for _table in (catalog.devices, catalog.models, catalog.links, catalog.host_memories, catalog.quants):
    _table()
predict_row(parse_row({"engine": "llama.cpp", "model": "meta-llama/Meta-Llama-3-8B", "quant": "Q4_K_M",
                       "gpu": "rtx-4090", "n_gpus": 1, "n_prompt": 0, "n_gen": 128, "batch": 1,
                       "metric": "decode", "tok_s": 1}), allow_paths=False)
