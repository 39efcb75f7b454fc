"""Properties every answer must have, checked on its JSON (what `--json` prints): each returns a
list of violations, empty when the answer is consistent. Used by the grid of test_consistency.py
and by the README examples test.

- every printed ratio is the ratio of the printed figures it names;
- a plan that does not fit carries no speed;
- every launch command's context, slots and tensor split agree with the plan's memory table;
- prefill never beats one pass over the weights, nor the compute peak: prompt tok/s <=
  P x bandwidth / weight bytes (a P-token prompt reads every weight at least once), <=
  P x the plan's own decode tok/s (one decode step is one pass over the weights as the model
  prices it, fixed per-layer costs included; a prompt cannot take less), and <= peak FLOP/s /
  (2 x active parameters per token, counted from the tensors);
- decode never beats bandwidth / bytes per token (each token reads the active weights once).
"""

from __future__ import annotations

import re
import shlex

from gpuplan.perf.engine_profiles import settings
from gpuplan.perf.memory import engine_kv_bytes
from gpuplan.perf.serving_engines import kv_tokens_held
from gpuplan.types import Engine, Plan, Split
from gpuplan.sources.tensors import tensor_list

SPEEDS = ("decode_tok_s", "prefill_tok_s", "throughput_tok_s", "per_user_tok_s")
RATIO = re.compile(r"(\d+\.\d{2})x\b")  # printed ratios have two decimals ("0.97x"; "2x rtx-3090" is a count)
NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+\.\d+|\d+\.\d+")  # printed figures have decimals ("56.6", "1,234.5")


# ---------------------------------------------------------------- ratios
def _close(r: float, a: float, b: float) -> bool:
    """r (2 decimals) is a/b, allowing for a and b themselves being rounded to 1 decimal."""
    if b <= 0:
        return False
    lo, hi = (a - 0.05) / (b + 0.05), (a + 0.05) / max(b - 0.05, 1e-9)
    return lo - 0.006 <= r <= hi + 0.006


def sentence_ratios(text: str) -> list[str]:
    """Every 'R.RRx' in a sentence must be the ratio of two figures printed in that sentence."""
    bad = []
    for sentence in re.split(r"(?<=\.)\s+(?=[A-Z(])", text):
        ratios = [float(x) for x in RATIO.findall(sentence)]
        if not ratios:
            continue
        nums = [float(x.replace(",", "")) for x in NUMBER.findall(RATIO.sub(" ", sentence))]
        for r in ratios:
            if not any(_close(r, a, b) for a in nums for b in nums if a is not b):
                bad.append(f"ratio {r}x is not a ratio of the figures printed beside it: {sentence!r}")
    return bad


def _ratio_field(row: dict, q: dict | None, base: dict, where: str) -> list[str]:
    if q is None:
        return []
    bad = []
    if abs(q["ratio"] - round(q["value"] / q["baseline"], 2)) > 0.0051:
        bad.append(f"{where}: ratio {q['ratio']} != {q['value']} / {q['baseline']}")
    if q["metric"] != "score":
        if row.get(q["metric"]) != q["value"]:
            bad.append(f"{where}: ratio's value {q['value']} is not the row's {q['metric']} {row.get(q['metric'])}")
        if base.get(q["metric"]) != q["baseline"]:
            bad.append(f"{where}: ratio's baseline {q['baseline']} is not {q['baseline_is']}'s {base.get(q['metric'])}")
    if f"{q['ratio']:.2f}x" not in row.get("verdict", ""):
        bad.append(f"{where}: verdict {row.get('verdict')!r} does not print the ratio {q['ratio']:.2f}x")
    return bad


def plan_ratios(r: dict) -> list[str]:
    bad = []
    for i, a in enumerate(r["alternatives"]):
        bad += _ratio_field(a, a.get("vs_recommended"), r, f"alternative {i} ({a['plan']['strategy']})")
        bad += sentence_ratios(a.get("verdict") or "")
    for line in r["explanation"]:
        bad += sentence_ratios(line)
    return bad


def compare_ratios(c: dict) -> list[str]:
    bad = []
    base = next((row for row in c["rows"] if row["fits"]), None)
    for row in c["rows"]:
        q = row.get("vs_baseline")
        if q is not None:
            bad += _ratio_field(row, q, base, f"compare row {row['setup']!r}")
            if q["metric"] != c["compared_on"]:
                bad.append(f"compare row {row['setup']!r} compares {q['metric']}, the table {c['compared_on']}")
            if row["vs_first"] != q["ratio"]:
                bad.append(f"compare row {row['setup']!r}: vs_first {row['vs_first']} != {q['ratio']}")
    return bad


# ---------------------------------------------------------------- no speed without a fit
def no_speed_without_fit(rows: list[dict], where: str) -> list[str]:
    bad = []
    for row in rows:
        if not row.get("fits"):
            got = {k: row.get(k) for k in SPEEDS if row.get(k) is not None}
            if got:
                bad.append(f"{where}: a plan that does not fit carries speeds {got}")
    return bad


def plan_no_speed(r: dict) -> list[str]:
    bad = no_speed_without_fit([r] + r["alternatives"], r["plan"]["strategy"])
    if not r["fits"] and (r["commands"] or r.get("time_to_first_token_s") is not None):
        bad.append("a plan that does not fit has launch commands or a time to first token")
    return bad


def unique_alternatives(r: dict) -> list[str]:
    seen, bad = set(), []
    for a in [r] + r["alternatives"]:
        key = (a["plan"]["strategy"], a["plan"]["hardware"], a["plan"]["engine"])
        if key in seen:
            bad.append(f"alternatives list {key} twice")
        seen.add(key)
    return bad


# ---------------------------------------------------------------- commands against the memory table
def _flag(argv: list[str], *names: str):
    for i, a in enumerate(argv):
        if a in names and i + 1 < len(argv):
            return argv[i + 1]
        for n in names:
            if a.startswith(n + "="):
                return a.split("=", 1)[1]
    return None


def _command_lines(text: str) -> list[list[str]]:
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            argv = shlex.split(line)
            while argv and "=" in argv[0] and not argv[0].startswith("-"):
                argv = argv[1:]  # environment assignments
            out.append(argv)
    return out


def commands_agree(r: dict, model) -> list[str]:
    """llama-server's -c/--parallel/--tensor-split/-ngl and vLLM's --max-model-len/--max-num-seqs/
    --tensor-parallel-size against the plan and the KV cache its memory table holds."""
    if not r["fits"]:
        return []
    bad = []
    p, wl = r["plan"], r["workload"]
    slots, ctx = r["concurrent_per_replica"], wl["context"]
    kv_gb = sum(m["kv_cache_gb"] for m in r["memory"])
    # the cache the engine allocates for `slots` sequences of `ctx` tokens, by its own rules (llama.cpp
    # pads n_ctx to 256 cells and keeps window + n_ubatch cells on sliding-window layers)
    engine_plan = Plan(split=Split.NONE, engine=Engine(p["engine"]), device_ids=(0,), kv_type=p["kv_type"],
                       flash_attention=p["flash_attention"])
    # paged engines (vLLM, SGLang, ...) hold what each sequence has (prompt + output), and at least
    # one full-context sequence; llama.cpp slots reserve the whole context each
    held = kv_tokens_held(Engine(p["engine"]), ctx, wl["prompt_tokens"], wl["output_tokens"])
    per_seq = held if held >= ctx else max(held, -(-ctx // slots))
    want_kv = sum(engine_kv_bytes(model.spec, engine_plan, settings(engine_plan), per_seq, slots)) / 1e9
    rounding = 0.005 * len(r["memory"])  # each row of the table is rounded to 0.01 GB
    if p["split"] != "row" and abs(kv_gb - want_kv) > rounding + 0.01 * want_kv:
        bad.append(f"memory table holds {kv_gb:.2f} GB of KV cache, {slots} slots x {per_seq} tokens need"
                   f" {want_kv:.2f}")
    text = r["commands"].get("llama.cpp")
    if text:
        for argv in _command_lines(text):
            if not argv or argv[0] != "llama-server":
                continue
            c, par = int(_flag(argv, "-c", "--ctx-size")), int(_flag(argv, "--parallel", "-np") or 1)
            if par != slots or c != ctx * slots:
                bad.append(f"llama-server -c {c} --parallel {par}; the memory table holds {slots} x {ctx} tokens")
            ts = _flag(argv, "--tensor-split", "-ts")
            shares = [d["share"] for d in p["devices"]]
            if ts and shares[0] is not None:
                # proportions (llama.cpp normalises them; gpuplan writes whole layers of its n_layer + 1
                # slots, the output layer being the last), within one slot of the plan's shares
                got = [float(x) for x in ts.split(",")]
                slot = 1.0 / (model.spec.n_layers + 1)
                got = [g / sum(got) for g in got]
                if len(got) != len(shares) or any(abs(g - s / sum(shares)) > 1.5 * slot for g, s in zip(got, shares)):
                    bad.append(f"--tensor-split {ts} vs the plan's shares {shares}")
            ngl = int(_flag(argv, "-ngl", "--n-gpu-layers"))
            gl = p["gpu_layers"]  # blocks on the GPU; -ngl may count the output layer as one more
            if (gl is None and ngl < model.spec.n_layers) or (gl is not None and ngl not in (gl, gl + 1)):
                bad.append(f"-ngl {ngl} vs the plan's gpu_layers {gl}")
    text = r["commands"].get("vllm")
    if text:
        for argv in _command_lines(text):
            if argv[:2] != ["vllm", "serve"]:
                continue
            if int(_flag(argv, "--max-model-len")) != ctx:
                bad.append(f"vllm --max-model-len {_flag(argv, '--max-model-len')} vs context {ctx}")
            if int(_flag(argv, "--max-num-seqs")) != slots:
                bad.append(f"vllm --max-num-seqs {_flag(argv, '--max-num-seqs')} vs {slots} slots")
            if int(_flag(argv, "--tensor-parallel-size") or 1) != p["tp"]:
                bad.append(f"vllm --tensor-parallel-size vs the plan's tp {p['tp']}")
    return bad


# ---------------------------------------------------------------- physics bounds
def _weights_read(model) -> tuple[float, float]:
    """(bytes one token must read, bytes one prompt must read at least): every dense layer weight,
    the routed experts at their active share (a prompt touches at least that), and the output head
    (logits for the last token). The embedding table is looked up, not read."""
    w, spec = model.weights, model.spec
    frac = spec.n_experts_active / spec.n_experts if spec.n_experts else 1.0
    head = w.output_bytes or (w.embed_bytes if spec.tied_embeddings else 0)
    body = sum(w.layer_bytes) - sum(w.layer_expert_bytes) * (1 - frac)
    return body + head, body + head


def _active_params(model) -> float:
    """Parameters a prompt token multiplies through, counted from the tensors (not from average
    bits per weight): the blocks, routed experts at their active share; no embedding, no head."""
    spec = model.spec
    frac = spec.n_experts_active / spec.n_experts if spec.n_experts else 1.0
    return float(sum(t.n_elements * (frac if t.expert else 1.0) for t in tensor_list(spec) if t.layer is not None))


def _replica_devices(r: dict, hw):
    return [hw.devices[d["index"]] for d in r["plan"]["devices"]]


def _bandwidth(r: dict, hw) -> float:
    """Peak bytes/s of the memories one replica reads from: its devices, plus system RAM when
    layers or experts sit there."""
    from gpuplan.perf.speed import _host_bw

    bw = sum(d.memory_bandwidth_gb_s for d in _replica_devices(r, hw)) * 1e9
    if any(m["name"] == "host RAM" and m["weights_gb"] > 0 for m in r["memory"]):
        bw += _host_bw(hw, None)[0] * 1e9
    return bw


def _peak_flops(r: dict, hw) -> float:
    """Dense peak of the replica's devices: the best of FP16 tensor, INT8 and FP8 rates."""
    total = 0.0
    for d in _replica_devices(r, hw):
        total += max(d.fp16_tflops, d.fp32_tflops, d.int8_tops or 0.0, d.fp8_tflops or 0.0) * 1e12
    return total


def physics(r: dict, model, hw) -> list[str]:
    bad = []
    rows = [r] + [a for a in r["alternatives"] if a["fits"]]
    per_token, per_prompt = _weights_read(model)
    params = _active_params(model)
    prompt = r["workload"]["prompt_tokens"]
    for a in rows:
        if not a["fits"] or a["decode_tok_s"] is None:
            continue
        bw = _bandwidth(a, hw)
        dec_max = bw / per_token
        if a["decode_tok_s"] > dec_max * 1.001:
            bad.append(f"{a['plan']['strategy']}: decode {a['decode_tok_s']} tok/s beats bandwidth / bytes per"
                       f" token = {dec_max:.1f}")
        pf = a["prefill_tok_s"]
        pf_bw = prompt * bw / per_prompt
        pf_flops = _peak_flops(a, hw) / (2 * params)
        if pf > pf_bw * 1.001:
            bad.append(f"{a['plan']['strategy']}: prefill {pf} tok/s beats one pass over the weights per prompt"
                       f" ({prompt} x bandwidth / weight bytes = {pf_bw:.0f})")
        if pf > prompt * a["decode_tok_s"] * 1.01:
            bad.append(f"{a['plan']['strategy']}: prefill {pf} tok/s: a {prompt}-token prompt takes less than one"
                       f" decode step ({a['decode_tok_s']} tok/s), i.e. less than one pass over the weights")
        if pf > pf_flops * 1.001:
            bad.append(f"{a['plan']['strategy']}: prefill {pf} tok/s beats peak FLOP/s / (2 x active params)"
                       f" = {pf_flops:.0f}")
    return bad


def check_plan(r: dict, model, hw) -> dict[str, list[str]]:
    """Every property of one plan answer, by name."""
    return {"ratios": plan_ratios(r), "no_speed": plan_no_speed(r), "unique": unique_alternatives(r),
            "commands": commands_agree(r, model), "physics": physics(r, model, hw)}
