"""`gpuplan gpus`, `gpuplan models`, `gpuplan models show`, `gpuplan models add`."""

from __future__ import annotations

import json
import sys
from collections import Counter

from .. import catalog
from ..errors import InputError
from .common import gb


def _match(words: str | None, *fields) -> bool:
    if not words:
        return True
    hay = " ".join(str(f) for f in fields if f).lower()
    return all(w in hay for w in words.lower().split())


def _table(title, columns, rows):
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for c in columns:
        t.add_column(c, justify="right" if c[0].isupper() is False and c not in ("id", "name") else "left")
    for r in rows:
        t.add_row(*[str(x) for x in r])
    Console().print(t)


def list_devices(search, kind, links, host, as_json):
    if kind and kind not in ("gpu", "apple", "cpu"):
        raise InputError(f"--kind '{kind}' is not accepted; accepted: gpu, apple, cpu")
    if links:
        items = [l for l in catalog.links().values() if _match(search, l.id, l.name, l.kind)]
        if as_json:
            return print(json.dumps([l.model_dump() for l in items], indent=2))
        return _table("links", ["id", "name", "GB/s per direction", "latency µs", "scope"],
                      [(l.id, l.name, l.bandwidth_gb_s, l.latency_us, l.scope) for l in items])
    if host:
        items = [h for h in catalog.host_memories().values() if _match(search, h.id, h.name)]
        if as_json:
            return print(json.dumps([h.model_dump() for h in items], indent=2))
        return _table("host memory", ["id", "name", "GB/s"], [(h.id, h.name, h.bandwidth_gb_s) for h in items])
    items = [d for d in catalog.devices().values()
             if _match(search, d.id, d.name, d.architecture, d.vendor) and (not kind or d.kind == kind)]
    if as_json:
        sys.stdout.write(json.dumps([d.model_dump() for d in items], indent=2) + "\n")
        return
    _table(f"devices ({len(items)})", ["id", "name", "memory GB", "GB/s", "FP16 TFLOPS", "TDP W", "launch $"],
           [(d.id, d.name, f"{d.memory_gib:g}" if d.memory_gib else "host", f"{d.memory_bandwidth_gb_s:g}",
             f"{d.fp16_tflops:g}", f"{d.tdp_w:g}", f"{d.launch_price_usd:g}" if d.launch_price_usd else "")
            for d in items])


def list_models(search, as_json):
    items = [m for m in catalog.models().values() if _match(search, m.id, m.name, m.architecture, *m.aliases)]
    if as_json:
        sys.stdout.write(json.dumps([m.model_dump() for m in items], indent=2) + "\n")
        return
    _table(f"models ({len(items)})", ["id", "arch", "params B", "layers", "KV heads", "experts", "max ctx"],
           [(m.id, m.architecture, m.params_b_published or "", m.n_layers, m.n_kv_heads,
             f"{m.n_experts_active}/{m.n_experts}" if m.n_experts else "", m.max_context) for m in items])


def describe(loaded) -> dict:
    from ..perf.memory import kv_bytes_per_token, kv_layer_bytes, recurrent_state_bytes
    from ..sources.arch import describe as layers
    from ..sources.tensors import param_count

    spec, w = loaded.spec, loaded.weights
    total, active = param_count(spec)
    return {
        "id": spec.id, "name": spec.name, "architecture": spec.architecture, "quant": loaded.quant.id,
        "weights_from": w.origin, "params_b": round(total / 1e9, 3), "active_params_b": round(active / 1e9, 3),
        "n_layers": spec.n_layers, "hidden_size": spec.hidden_size, "n_heads": spec.n_heads,
        "n_kv_heads": spec.n_kv_heads, "head_dim": spec.head_dim, "experts": spec.n_experts,
        "experts_active": spec.n_experts_active, "sliding_window": spec.sliding_window,
        "max_context": spec.max_context,
        "size_gb": gb(w.total_bytes), "layers_gb": gb(sum(w.layer_bytes)),
        "experts_gb": gb(sum(w.layer_expert_bytes)), "embedding_gb": gb(w.embed_bytes),
        "output_head_gb": gb(w.output_bytes), "bits_per_weight": round(8 * w.total_bytes / max(total, 1), 3),
        "kv_cache_per_token_kib_f16": round(kv_bytes_per_token(spec, "f16") / 1024, 2),
        "kv_cache_gb_at_max_context_f16": gb(sum(kv_layer_bytes(spec, "f16", spec.max_context, 1, "f32"))
                                             - recurrent_state_bytes(spec)),
        "layer_kinds": dict(Counter(ly.kind for ly in layers(spec).layers)),
        "recurrent_state_mib_per_sequence_f32": round(recurrent_state_bytes(spec) / 2**20, 2),
    }


def show_model(model, quant, as_json):
    from ..sources.resolve import resolve_model

    d = describe(resolve_model(model, quant))
    if as_json:
        sys.stdout.write(json.dumps(d, indent=2) + "\n")
        return
    _table(f"{d['id']} ({d['quant']})", ["field", "value"], [(k, v) for k, v in d.items()])


def add_model(path: str, model_id: str | None, force: bool, as_json: bool) -> None:
    from ..catalog.user import write_entry
    from ..sources.user_models import spec_for_catalog

    spec = spec_for_catalog(path, model_id)
    if not force and spec.id in catalog.models():
        raise InputError(f"model id '{spec.id}' is already in the catalog; give another with --id, or --force "
                         "to replace your own entry")
    out = write_entry(spec, overwrite=force)
    catalog.reload()
    info = {"id": spec.id, "architecture": spec.architecture, "file": str(out), "source": spec.source}
    if as_json:
        sys.stdout.write(json.dumps(info, indent=2) + "\n")
    else:
        sys.stdout.write(f"added {spec.id} ({spec.architecture}, {spec.n_layers} layers) to {out}\n")
