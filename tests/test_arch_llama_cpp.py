"""The per-layer description against the real llama.cpp (llama-cpp-python's libllama, in process).

For every family: the real config.json's keys with the sizes shrunk, read by gpuplan's config
reader, written as a GGUF file from gpuplan's tensor list, loaded by llama.cpp. llama.cpp refuses
a file with a missing, extra or misshapen tensor, so loading at all checks the tensor list; its
log then says which layers got a KV cache and how large, and how large the recurrent state is.
The same file read back by gpuplan's GGUF reader gives the same spec.
"""

from __future__ import annotations

import pytest

from gguf_writer import write_gguf
from gpuplan.sources.arch import describe
from gpuplan.sources.gguf_file import read_gguf
from gpuplan.sources.hf_config import spec_from_config
from gpuplan.sources.tensors import param_count, tensor_list
from llama_cpp_probe import load

pytest.importorskip("llama_cpp")
MIB = 2**20
BASE = dict(hidden_size=256, num_attention_heads=4, num_key_value_heads=2, head_dim=64, intermediate_size=512,
            vocab_size=128, max_position_embeddings=65536, num_hidden_layers=4, tie_word_embeddings=False)
TINY = {
    "llama": dict(model_type="llama"),
    "qwen2": dict(model_type="qwen2"),
    "qwen3": dict(model_type="qwen3"),
    "qwen3_moe": dict(model_type="qwen3_moe", num_experts=8, num_experts_per_tok=2, moe_intermediate_size=64),
    "mixtral": dict(model_type="mixtral", num_local_experts=4, num_experts_per_tok=2),
    "gemma2": dict(model_type="gemma2", sliding_window=256, tie_word_embeddings=True),
    "gemma3": dict(model_type="gemma3_text", sliding_window=256, sliding_window_pattern=6, num_hidden_layers=6),
    "phi3": dict(model_type="phi3"),
    "gpt_oss": dict(model_type="gpt_oss", num_local_experts=4, experts_per_token=2, intermediate_size=256,
                    sliding_window=128, layer_types=["sliding_attention", "full_attention"] * 2),
    "deepseek_v3": dict(model_type="deepseek_v3", n_routed_experts=8, num_experts_per_tok=2, moe_intermediate_size=64,
                        n_shared_experts=1, first_k_dense_replace=1, kv_lora_rank=128, q_lora_rank=96,
                        qk_rope_head_dim=32, qk_nope_head_dim=64, v_head_dim=64, num_key_value_heads=4),
    "llama4": dict(model_type="llama4_text", num_local_experts=4, num_experts_per_tok=1, intermediate_size=128,
                   intermediate_size_mlp=512, interleave_moe_layer_step=2, attention_chunk_size=8192,
                   num_hidden_layers=8),
    "nemotron_h": dict(model_type="nemotron_h", num_hidden_layers=8, hybrid_override_pattern="M-M*-M-M",
                       mamba_num_heads=8, mamba_head_dim=64, ssm_state_size=64, n_groups=2, conv_kernel=4,
                       attention_head_dim=64),
    # 25 layers: llama.cpp gives gemma3n's own KV cache to the first 20 (n_layer_kv_from_start), the
    # real models' n - num_kv_shared_layers (E2B 30 - 10, E4B 35 - 15); PLE width and LAuReL rank
    # are fixed in llama.cpp at the real models' 256 and 64
    "gemma3n": dict(model_type="gemma3n_text", num_hidden_layers=25, intermediate_size=[512] * 25,
                    num_kv_shared_layers=5, sliding_window=256, hidden_size_per_layer_input=256,
                    vocab_size_per_layer_input=128, laurel_rank=64, tie_word_embeddings=True),
    "qwen3_next": dict(model_type="qwen3_next", num_hidden_layers=8, num_experts=8, num_experts_per_tok=2,
                       moe_intermediate_size=64, shared_expert_intermediate_size=64, linear_num_key_heads=2,
                       linear_num_value_heads=8, linear_key_head_dim=64, linear_value_head_dim=64),
    "glm4_moe": dict(model_type="glm4_moe", n_routed_experts=8, num_experts_per_tok=2, moe_intermediate_size=64,
                     n_shared_experts=1, first_k_dense_replace=1, attention_bias=True, use_qk_norm=True),
    "granitemoehybrid": dict(model_type="granitemoehybrid", num_hidden_layers=8,
                             layer_types=["mamba"] * 3 + ["attention"] + ["mamba"] * 3 + ["attention"],
                             mamba_n_heads=8, mamba_d_head=64, mamba_d_state=64, mamba_n_groups=1, mamba_d_conv=4,
                             num_local_experts=8, num_experts_per_tok=2, intermediate_size=64,
                             shared_intermediate_size=128),
    "falcon_h1": dict(model_type="falcon_h1", mamba_n_heads=8, mamba_d_head=64, mamba_d_ssm=512, mamba_d_state=64,
                      mamba_n_groups=1, mamba_d_conv=4),
    "jamba": dict(model_type="jamba", num_hidden_layers=8, num_experts=4, num_experts_per_tok=2, mamba_d_state=64,
                  mamba_d_conv=4, mamba_expand=2, mamba_dt_rank=16, attn_layer_period=8, attn_layer_offset=4,
                  expert_layer_period=2, expert_layer_offset=1),
    "minimax_m2": dict(model_type="minimax_m2", num_local_experts=8, num_experts_per_tok=2, intermediate_size=64,
                       use_qk_norm=True),
    "ernie4_5_moe": dict(model_type="ernie4_5_moe", moe_num_experts=8, moe_k=2, moe_intermediate_size=64,
                         moe_num_shared_experts=2, moe_layer_start_index=1, moe_layer_interval=1,
                         tie_word_embeddings=True),
    "hunyuan_v1_moe": dict(model_type="hunyuan_v1_moe", num_experts=8, moe_topk=[2] * 4, moe_intermediate_size=[64] * 4,
                           num_shared_expert=[1] * 4, intermediate_size=64, use_qk_norm=True, attention_head_dim=64,
                           tie_word_embeddings=True),
    "smollm3": dict(model_type="smollm3", tie_word_embeddings=True),
    "qwen2_moe": dict(model_type="qwen2_moe", num_experts=8, num_experts_per_tok=2, moe_intermediate_size=64,
                      shared_expert_intermediate_size=128),
    # Llama-3.3-Nemotron-Super's block_configs schema: attention skipped on some layers, FFN widths vary
    "nemotron-nas": dict(model_type="nemotron-nas", num_hidden_layers=5, block_configs=[
        {"attention": {"n_heads_in_group": 2, "no_op": False, "replace_with_linear": False},
         "ffn": {"ffn_mult": m, "no_op": False, "replace_with_linear": False}} if att else
        {"attention": {"n_heads_in_group": None, "no_op": True, "replace_with_linear": False},
         "ffn": {"ffn_mult": m, "no_op": False, "replace_with_linear": False}}
        for att, m in ((1, 2.625), (1, 5.25), (0, 2.625), (1, 3.28125), (0, 5.25))]),
}
N_CTX, N_SEQ = 16384, 4


def tiny(name: str):
    return spec_from_config({**BASE, **TINY[name]}, f"tiny {name}", f"tiny-{name}", "test")


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """Each tiny model written once and loaded once into llama.cpp (all caches at full size)."""
    out = {}
    d = tmp_path_factory.mktemp("tiny")
    for name in TINY:
        spec = tiny(name)
        path = d / f"{name}.gguf"
        write_gguf(spec, path)
        out[name] = (spec, path, load(path, N_CTX, N_SEQ, swa_full=True))
    return out


@pytest.mark.parametrize("name", list(TINY))
def test_llama_cpp_loads_our_tensor_list(loaded, name):
    spec, path, r = loaded[name]
    assert r.ok, r.error


@pytest.mark.parametrize("name", list(TINY))
def test_kv_layers_and_bytes_match_llama_cpp(loaded, name):
    """Which layers hold a KV cache, and its bytes per token, as llama.cpp allocates them."""
    spec, path, r = loaded[name]
    a = describe(spec)
    own = [ly for ly in a.layers if ly.kv_elements_per_token]
    n_cached = sum(layers for _, _, layers in r.kv)
    if spec.architecture == "nemotron-nas":  # llama.cpp lists the skipped-attention layers too, at 0 bytes
        assert n_cached == spec.n_layers
    else:
        assert n_cached == len(own)
    assert all(cells == N_CTX for _, cells, _ in r.kv)  # swa_full: every cache at full context
    ours = sum(ly.kv_elements_per_token for ly in own) * 2 * N_CTX  # f16
    assert sum(mib for mib, _, _ in r.kv) == pytest.approx(ours / MIB, abs=0.01 * len(r.kv))


@pytest.mark.parametrize("name", ["nemotron_h", "qwen3_next", "granitemoehybrid", "falcon_h1", "jamba"])
def test_recurrent_state_matches_llama_cpp(loaded, name):
    """Constant state per sequence: llama.cpp's R (conv) and S (SSM / delta-rule) buffers, F32."""
    spec, path, r = loaded[name]
    a = describe(spec)
    rec = [ly.recurrent for ly in a.layers if ly.recurrent]
    assert rec and len(r.rs) == 1
    mib, _, r_mib, s_mib = r.rs[0]
    assert r_mib == pytest.approx(sum(x.conv_elements for x in rec) * 4 * N_SEQ / MIB, abs=0.006)
    assert s_mib == pytest.approx(sum(x.state_elements for x in rec) * 4 * N_SEQ / MIB, abs=0.006)
    assert mib == pytest.approx(sum(x.state_bytes() for x in rec) * N_SEQ / MIB, abs=0.006)


def test_windowed_caches_capped_without_swa_full(tmp_path):
    """With llama.cpp's default (swa_full off) the sliding / chunked layers get a cache of about
    their window, the full layers the whole context: gpuplan's per-layer kind and window say which."""
    for name in ("gemma3", "llama4"):
        spec = tiny(name)
        write_gguf(spec, tmp_path / f"{name}.gguf")
        r = load(tmp_path / f"{name}.gguf", 32768, 1, swa_full=False)
        assert r.ok, r.error
        a = describe(spec)
        window = a.window
        full = sum(ly.kind == "full" for ly in a.layers)
        by_cells = {cells: layers for _, cells, layers in r.kv}
        assert by_cells[32768] == full
        (cells,) = [c for c in by_cells if c != 32768]
        assert window <= cells <= window + 512 + 256  # window plus one ubatch, padded (llama-kv-cache-iswa)
        assert by_cells[cells] == len(a.layers) - full


@pytest.mark.parametrize("name", list(TINY))
def test_gguf_round_trip(loaded, name):
    """The GGUF reader rebuilds the same architecture from the file's metadata and tensors."""
    spec, path, r = loaded[name]
    got = read_gguf(path).spec
    skip = {"id", "name", "source", "note", "native_dtype"}
    diff = {f: (getattr(spec, f), getattr(got, f)) for f in type(spec).model_fields
            if f not in skip and getattr(spec, f) != getattr(got, f)}
    assert not diff
    assert param_count(got) == param_count(spec)


def test_glm_mtp_block_is_not_a_layer(tmp_path):
    """GLM-4.5's GGUF counts its MTP block in block_count (nextn_predict_layers = 1): llama.cpp loads it
    beside the model, gpuplan reads the model as one block shorter and the MTP block's bytes apart."""
    cfg = {**BASE, **TINY["glm4_moe"], "num_hidden_layers": 5}
    spec = spec_from_config(cfg, "tiny glm", "tiny-glm", "test")
    path = tmp_path / "glm-mtp.gguf"
    write_gguf(spec, path, nextn=1)
    r = load(path, 4096, 1)
    assert r.ok, r.error
    m = read_gguf(path)
    assert m.spec.n_layers == 4 and len(m.weights.layer_bytes) == 4
    mtp = sum(4 * x.n_elements for x in tensor_list(spec) if x.layer == 4)
    assert m.weights.other_bytes >= mtp  # the MTP block (F32 here) is not a layer of the model
