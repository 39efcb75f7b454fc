"""A GGUF whose metadata is corrupt (absurd sizes, zero heads) is one clear error, from the
command line and from the web upload alike: never a traceback, never an endless allocation."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
ROOT = Path(__file__).parents[1]


def _write(path: Path, block_count: int, heads: int) -> Path:
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(block_count)
    w.add_context_length(4096)
    w.add_embedding_length(64)
    w.add_feed_forward_length(128)
    w.add_head_count(heads)
    w.add_head_count_kv(max(heads, 1))
    w.add_file_type(1)
    w.add_tensor("token_embd.weight", np.zeros((32, 64), dtype=np.float16))
    w.add_tensor("blk.0.attn_q.weight", np.zeros((64, 64), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.mark.parametrize("blocks,heads,needle", [(2**31, 4, "beyond any real model"),
                                                 (2, 0, "GGUF metadata")])
def test_corrupt_metadata_is_one_line_exit_2(tmp_path, blocks, heads, needle):
    f = _write(tmp_path / "bad.gguf", blocks, heads)
    r = subprocess.run([sys.executable, "-m", "gpuplan.cli", "models", "show", str(f)], capture_output=True,
                       text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, timeout=60)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error:") and needle in r.stderr and str(f) in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
