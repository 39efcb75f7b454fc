"""The hardware catalog: required entries exist, every number names a source, cross-references
resolve, and a few published identities hold with their units."""

from __future__ import annotations

import re

import pytest

from gpuplan import catalog
from gpuplan.catalog.schema import Device

REQUIRED_DEVICES = """
a100-pcie-80gb a100-sxm-80gb a40 apple-m1-7c apple-m1-8c apple-m1-max-24c apple-m1-max-32c
apple-m1-pro-14c apple-m1-pro-16c apple-m1-ultra-48c apple-m1-ultra-64c apple-m2-10c apple-m2-8c
apple-m2-max-30c apple-m2-max-38c apple-m2-pro-16c apple-m2-pro-19c apple-m2-ultra-60c
apple-m2-ultra-76c apple-m3-10c apple-m3-max-30c apple-m3-max-40c apple-m3-pro-14c apple-m3-pro-18c
apple-m3-ultra-60c apple-m3-ultra-80c apple-m4-10c apple-m4-max-32c apple-m4-max-40c
apple-m4-pro-16c apple-m4-pro-20c dgx-spark h100-pcie-80gb h100-sxm-80gb h200-sxm-141gb l40s
quadro-p6000 rtx-3060-12gb rtx-3070 rtx-3080 rtx-3080-ti rtx-3090 rtx-4000-ada rtx-4070-ti
rtx-4080 rtx-4090 rtx-5000-ada rtx-5060-ti-16gb rtx-5070-ti rtx-5080 rtx-5090 rtx-6000-ada
rtx-a6000 rtx-pro-6000 tesla-p40
rtx-2060 rtx-2070 rtx-2080 rtx-2080-ti rtx-3060-ti rtx-3070-ti rtx-3090-ti rtx-4060
rtx-4060-ti-8gb rtx-4060-ti-16gb rtx-4070 rtx-4070-super rtx-4070-ti-super rtx-4080-super
rtx-5060 rtx-5070 rtx-a4000 rtx-a5000 rtx-a4500 rtx-2000-ada rtx-4500-ada
v100-sxm2-32gb v100-pcie-16gb a10 a30 l4 l40 h100-nvl gh200 b200 a100-pcie-40gb a100-sxm-40gb
tesla-t4 tesla-p100 mi210 mi250x mi300x mi325x rx-7900-xtx rx-7900-xt arc-a770-16gb arc-b580
cpu cpu-ryzen-9-7950x cpu-ryzen-9-9950x cpu-core-i9-13900k cpu-epyc-9654 cpu-xeon-platinum-8480
""".split()

REQUIRED_LINKS = """
pcie3-x16 pcie3-x8 pcie3-x4 pcie4-x16 pcie4-x8 pcie4-x4 pcie5-x16 pcie5-x8 pcie5-x4
nvlink-bridge-3090 nvlink-bridge-a6000 nvlink3 nvlink4 nvlink5 ib-hdr ib-ndr eth-100g eth-400g
""".split()

# What each Build must cover (by gpus string and link), from the `gpuplan builds` brief.
REQUIRED_BUILDS = [
    ("rtx-3090", None), ("2x rtx-3090", "pcie4-x8"), ("2x rtx-3090", "nvlink-bridge-3090"),
    ("4x rtx-3090", None), ("rtx-a6000", None), ("rtx-6000-ada", None), ("rtx-4090", None),
    ("2x rtx-4090", None), ("rtx-5090", None), ("2x rtx-5090", None), ("rtx-pro-6000", None),
    ("2x tesla-p40", None), ("apple-m2-max-38c:96gb", None), ("apple-m2-ultra-76c:192gb", None),
    ("apple-m3-ultra-80c:512gb", None), ("apple-m4-pro-20c:64gb", None),
    ("apple-m4-max-40c:128gb", None), ("dgx-spark", None), ("h100-pcie-80gb", None),
]

# The hardware spec grammar: `(N x )?id(:NNgb)?`, joined by commas or `+`.
SPEC_PART = re.compile(r"^\s*(?:(\d+)\s*x\s*)?([a-z0-9][a-z0-9.-]*)(?::(\d+)gb)?\s*$")


def parse_spec(spec: str) -> list[tuple[int, str, int | None]]:
    parts = []
    for raw in re.split(r"[,+]", spec):
        m = SPEC_PART.match(raw)
        assert m, f"bad hardware spec part {raw!r} in {spec!r}"
        n, dev, gb = m.groups()
        parts.append((int(n or 1), dev, int(gb) if gb else None))
    return parts


def all_entries():
    for table in (catalog.devices(), catalog.links(), catalog.host_memories(), catalog.builds()):
        yield from table.values()


def test_required_devices_exist():
    missing = sorted(set(REQUIRED_DEVICES) - set(catalog.devices()))
    assert not missing, f"missing device ids: {missing}"


def test_required_links_exist():
    missing = sorted(set(REQUIRED_LINKS) - set(catalog.links()))
    assert not missing, f"missing link ids: {missing}"


def test_every_entry_names_an_http_source():
    for e in all_entries():
        assert e.source.startswith(("http://", "https://")), f"{e.id}: source {e.source!r}"
        for field, url in getattr(e, "sources", {}).items():
            assert url.startswith(("http://", "https://")), f"{e.id}: sources[{field}] {url!r}"


def test_per_field_sources_name_real_fields():
    fields = set(Device.model_fields)
    for d in catalog.devices().values():
        unknown = set(d.sources) - fields
        assert not unknown, f"{d.id}: sources for unknown fields {sorted(unknown)}"


def test_nvlink_references_resolve():
    links = catalog.links()
    for d in catalog.devices().values():
        if d.nvlink is not None:
            assert d.nvlink in links, f"{d.id}: nvlink {d.nvlink!r} is not a link id"
            assert links[d.nvlink].kind in ("nvlink", "nvlink-bridge", "nvswitch")


@pytest.mark.parametrize("dev_id, link_id", [
    ("rtx-3090", "nvlink-bridge-3090"), ("rtx-a6000", "nvlink-bridge-a6000"),
    ("a40", "nvlink-bridge-a6000"), ("rtx-a5000", "nvlink-bridge-a6000"),
    ("a100-sxm-80gb", "nvlink3"), ("h100-sxm-80gb", "nvlink4"), ("h200-sxm-141gb", "nvlink4"),
    ("b200", "nvlink5"), ("rtx-4090", None), ("rtx-5090", None), ("tesla-p40", None),
])
def test_nvlink_assignments(dev_id, link_id):
    assert catalog.device(dev_id).nvlink == link_id


def test_builds_parse_and_resolve():
    devices, links, hosts = catalog.devices(), catalog.links(), catalog.host_memories()
    for b in catalog.builds().values():
        for n, dev, gb in parse_spec(b.gpus):
            assert n >= 1
            assert dev in devices, f"build {b.id}: unknown device {dev!r}"
            if gb is not None:
                opts = devices[dev].memory_options_gib or [devices[dev].memory_gib]
                assert gb in opts, f"build {b.id}: {dev} has no {gb} GB option ({opts})"
        if b.link is not None:
            assert b.link in links, f"build {b.id}: unknown link {b.link!r}"
        if b.host_memory is not None:
            assert b.host_memory in hosts, f"build {b.id}: unknown host memory {b.host_memory!r}"
        assert b.notes.strip()


def test_required_builds_present():
    have = {(b.gpus, b.link) for b in catalog.builds().values()}
    gpus_only = {b.gpus for b in catalog.builds().values()}
    for gpus, link in REQUIRED_BUILDS:
        if link is None:
            assert gpus in gpus_only, f"no build with gpus {gpus!r}"
        else:
            assert (gpus, link) in have, f"no build with gpus {gpus!r} over {link!r}"


def test_spec_grammar():
    assert parse_spec("2x rtx-3090") == [(2, "rtx-3090", None)]
    assert parse_spec("apple-m2-ultra-76c:192gb") == [(1, "apple-m2-ultra-76c", 192)]
    assert parse_spec("rtx-4090 + 2x rtx-3090") == [(1, "rtx-4090", None), (2, "rtx-3090", None)]
    with pytest.raises(AssertionError):
        parse_spec("two rtx-3090")


def test_aliases_are_unique():
    seen: dict[str, str] = {}
    for d in catalog.devices().values():
        for name in [d.id, *d.aliases]:
            key = name.lower()
            assert key not in seen or seen[key] == d.id, f"{name!r} names both {seen[key]} and {d.id}"
            seen[key] = d.id


@pytest.mark.parametrize("alias, dev_id", [
    ("NVIDIA GeForce RTX 4090", "rtx-4090"), ("NVIDIA A100-SXM4-80GB", "a100-sxm-80gb"),
    ("NVIDIA H100 80GB HBM3", "h100-sxm-80gb"), ("Tesla P40", "tesla-p40"),
    ("NVIDIA GeForce RTX 3090", "rtx-3090"), ("NVIDIA RTX A6000", "rtx-a6000"),
])
def test_nvml_names_resolve(alias, dev_id):
    assert catalog.device(alias).id == dev_id


@pytest.mark.parametrize("dev_id, field, value", [
    ("rtx-4090", "memory_gib", 24),
    ("rtx-4090", "memory_bandwidth_gb_s", 1008),
    ("rtx-3090", "memory_bandwidth_gb_s", 936),
    ("rtx-3090", "memory_gib", 24),
    ("h100-sxm-80gb", "memory_bandwidth_gb_s", 3350),
    ("apple-m2-ultra-76c", "memory_bandwidth_gb_s", 800),
    ("apple-m2-ultra-76c", "memory_gib", 192),
    ("rtx-a6000", "memory_gib", 48),
    ("rtx-5090", "memory_bandwidth_gb_s", 1792),
    ("dgx-spark", "memory_gib", 128),
    ("dgx-spark", "memory_bandwidth_gb_s", 273),
    ("tesla-p40", "fp16_tflops", 0.18),
    ("h100-sxm-80gb", "fp16_tflops", 989.4),  # dense, not the 1979 sparse figure
    ("a100-sxm-80gb", "fp16_tflops", 312),
])
def test_spot_identities(dev_id, field, value):
    assert getattr(catalog.device(dev_id), field) == pytest.approx(value, rel=0.01)


def test_host_memory_bandwidth_formula():
    assert catalog.host_memory("ddr5-6000-2ch").bandwidth_gb_s == pytest.approx(96.0)
    assert catalog.host_memory("ddr4-3200-2ch").bandwidth_gb_s == pytest.approx(51.2)
    assert catalog.host_memory("ddr5-4800-8ch").bandwidth_gb_s == pytest.approx(307.2)
    for h in catalog.host_memories().values():
        assert h.bandwidth_gb_s == pytest.approx(h.speed_mt_s * 8 * h.channels / 1000, rel=1e-3)
        assert h.id == f"{h.memory_type.lower()}-{h.speed_mt_s}-{h.channels}ch"


def test_host_memory_grid():
    hosts = catalog.host_memories()
    for mt, speeds in (("ddr4", (2133, 2400, 2666, 2933, 3200, 3600)),
                       ("ddr5", (4800, 5200, 5600, 6000, 6400))):
        for s in speeds:
            for ch in (1, 2, 4, 8, 12):
                assert f"{mt}-{s}-{ch}ch" in hosts


def test_link_bandwidths_per_direction():
    links = catalog.links()
    assert links["pcie4-x16"].bandwidth_gb_s == pytest.approx(31.5, rel=0.01)
    assert links["pcie3-x16"].bandwidth_gb_s == pytest.approx(15.75, rel=0.01)
    assert links["pcie5-x16"].bandwidth_gb_s == pytest.approx(63.0, rel=0.01)
    assert links["pcie4-x8"].bandwidth_gb_s == pytest.approx(links["pcie4-x16"].bandwidth_gb_s / 2, rel=0.01)
    assert links["nvlink-bridge-3090"].bandwidth_gb_s == pytest.approx(56.25)
    assert links["nvlink3"].bandwidth_gb_s == pytest.approx(300)
    assert links["nvlink4"].bandwidth_gb_s == pytest.approx(450)
    assert links["nvlink5"].bandwidth_gb_s == pytest.approx(900)
    for lid in ("ib-hdr", "ib-ndr", "eth-100g", "eth-400g"):
        assert links[lid].scope == "inter-node"
    for link in links.values():
        if link.kind == "pcie":
            assert 1 <= link.latency_us <= 10


def test_apple_entries_are_complete():
    for d in catalog.devices().values():
        if d.kind != "apple":
            continue
        assert d.memory_options_gib, d.id
        assert d.memory_gib == max(d.memory_options_gib), d.id
        assert d.gpu_share_default is not None and 0.6 <= d.gpu_share_default <= 0.8, d.id
        m = re.fullmatch(r"apple-m\d(?:-(?:pro|max|ultra))?-(\d+)c", d.id)
        assert m and int(m.group(1)) == d.cores, d.id
        assert d.dies == (2 if "-ultra-" in d.id else 1), d.id


def test_cpu_entries_leave_memory_to_the_host():
    for d in catalog.devices().values():
        if d.kind == "cpu":
            assert d.memory_gib is None and d.backend == "cpu", d.id
    assert "typical" in catalog.device("cpu").note


def test_used_prices_have_a_source():
    for d in catalog.devices().values():
        if d.used_price_usd is not None:
            assert "used_price_usd" in d.sources, f"{d.id}: used price without a source"


def test_dense_tensor_rates_are_plausible():
    """Dense tensor throughput sits above the FP32 shader rate on tensor-core chips, and INT8/FP8
    at most doubles FP16: catches sparse figures copied by mistake."""
    for d in catalog.devices().values():
        if d.int8_tops is not None and d.kind == "gpu" and d.fp16_tflops > d.fp32_tflops:
            assert d.int8_tops <= 2.05 * d.fp16_tflops, d.id
        if d.fp8_tflops is not None:
            assert d.fp8_tflops <= 2.05 * d.fp16_tflops, d.id
