"""The hardware catalog: required entries exist, every number names a source, cross-references
resolve, and a few published identities hold with their units."""

from __future__ import annotations

import csv
import re
import typing
from pathlib import Path

import pytest

from gpuplan import catalog
from gpuplan.catalog.schema import Build, Device, GpuShareTable, HostMemory, Link

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

# The hardware people run in 2025-2026 (issue 12).
REQUIRED_DEVICES_2026 = """
rtx-5050 rtx-5060 rtx-5060-ti-8gb rtx-pro-6000-max-q rtx-pro-6000-server rtx-pro-5000 rtx-pro-4500
rtx-pro-4000 h200-nvl h20 b300 gb200 gb300 jetson-agx-thor jetson-agx-orin-64gb mi355x mi350x mi300a
rx-9070-xt rx-9070 rx-9060-xt-16gb radeon-ai-pro-r9700 radeon-pro-w7900 mi50-32gb mi100 rx-6800-xt
ryzen-ai-max-395 arc-pro-b60 arc-pro-b50 arc-b570 gaudi3 apple-m3-ultra-80c apple-m5-10c apple-m5-pro-20c
apple-m5-max-40c cpu-epyc-9755 cpu-epyc-9575f cpu-epyc-9355 cpu-xeon-6980p cpu-xeon-6787p
""".split()

REQUIRED_LINKS = """
pcie3-x16 pcie3-x8 pcie3-x4 pcie4-x16 pcie4-x8 pcie4-x4 pcie5-x16 pcie5-x8 pcie5-x4
nvlink-bridge-3090 nvlink-bridge-a6000 nvlink3 nvlink4 nvlink5 ib-hdr ib-ndr eth-100g eth-400g
xgmi xgmi-mi355x nvlink-bridge-2080ti nvlink-bridge-a100 nvlink-bridge-h100 nvlink-bridge-h200-nvl
""".split()
REQUIRED_HOST_MEMORY = """
ddr5-6400-2ch ddr5-6400-12ch ddr5-8000-2ch mrdimm-8800-12ch mrdimm-8000-8ch lpddr5x-8000-4ch lpddr5x-8533-4ch
""".split()

# What each Build must cover (by gpus string and link), from the `gpuplan builds` brief.
REQUIRED_BUILDS = [
    ("rtx-3090", None), ("2x rtx-3090", "pcie4-x8"), ("2x rtx-3090", "nvlink-bridge-3090"),
    ("4x rtx-3090", None), ("rtx-a6000", None), ("rtx-6000-ada", None), ("rtx-4090", None),
    ("2x rtx-4090", None), ("rtx-5090", None), ("2x rtx-5090", None), ("rtx-pro-6000", None),
    ("2x tesla-p40", None), ("apple-m2-max-38c:96gb", None), ("apple-m2-ultra-76c:192gb", None),
    ("apple-m3-ultra-80c:512gb", None), ("apple-m4-pro-20c:64gb", None),
    ("apple-m4-max-40c:128gb", None), ("dgx-spark", None), ("h100-pcie-80gb", None),
    ("ryzen-ai-max-395:128gb", None), ("apple-m3-ultra-60c:96gb", None), ("2x rtx-pro-6000-max-q", None),
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
    for table in (catalog.devices(), catalog.links(), catalog.host_memories(), catalog.builds(),
                  catalog.gpu_share_tables()):
        yield from table.values()


def test_required_devices_exist():
    missing = sorted(set(REQUIRED_DEVICES + REQUIRED_DEVICES_2026) - set(catalog.devices()))
    assert not missing, f"missing device ids: {missing}"


def test_required_links_and_host_memories_exist():
    missing = sorted(set(REQUIRED_LINKS) - set(catalog.links()))
    assert not missing, f"missing link ids: {missing}"
    missing = sorted(set(REQUIRED_HOST_MEMORY) - set(catalog.host_memories()))
    assert not missing, f"missing host memory ids: {missing}"


def test_every_entry_names_an_http_source():
    for e in all_entries():
        assert e.source.startswith(("http://", "https://")), f"{e.id}: source {e.source!r}"
        for field, url in getattr(e, "sources", {}).items():
            assert url.startswith(("http://", "https://")), f"{e.id}: sources[{field}] {url!r}"


def test_per_field_sources_name_real_fields():
    for model, table in ((Device, catalog.devices()), (Build, catalog.builds())):
        fields = set(model.model_fields)
        for d in table.values():
            unknown = set(d.sources) - fields
            assert not unknown, f"{d.id}: sources for unknown fields {sorted(unknown)}"
            assert all(getattr(d, f) is not None for f in d.sources), f"{d.id}: a source for an empty field"


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
    ("rtx-3090-ti", "nvlink-bridge-3090"), ("rtx-2080-ti", "nvlink-bridge-2080ti"),
    ("rtx-2080", "nvlink-bridge-2080"), ("rtx-2060", None), ("a100-pcie-80gb", "nvlink-bridge-a100"),
    ("h100-pcie-80gb", "nvlink-bridge-h100"), ("h200-nvl", "nvlink-bridge-h200-nvl"), ("h20", "nvlink4"),
    ("b300", "nvlink5"), ("gb300", "nvlink5"), ("rtx-6000-ada", None), ("l40s", None), ("rtx-pro-6000", None),
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
        prefix = "mrdimm" if h.module == "mrdimm" else h.memory_type.lower()
        assert h.id == f"{prefix}-{h.speed_mt_s}-{h.channels}ch"
        assert (h.module == "soldered") == h.memory_type.startswith("LPDDR"), h.id


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
        assert d.unified and d.gpu_share_default is not None and 0.6 <= d.gpu_share_default <= 0.9, d.id
        assert d.gpu_share_default == pytest.approx(d.gpu_share(d.memory_gib)), d.id
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


# ---------------------------------------------------------------- spec fields for the speed model
# Number fields carry their unit in the name; these are plain counts or ratios.
COUNT_FIELDS = {"cores", "compute_units", "dies", "compute_dies", "threads", "efficiency_cores",
                "memory_channels", "channels", "pcie_gen", "pcie_lanes", "gpu_share_default"}
UNIT_SUFFIXES = ("_gib", "_mib", "_gb_s", "_tflops", "_tops", "_mhz", "_mt_s", "_bits", "_w", "_usd", "_us",
                 "_per_clock_per_core")


def _number_fields(model):
    for name, f in model.model_fields.items():
        kinds = set(typing.get_args(f.annotation)) or {f.annotation}
        if kinds & {int, float}:
            yield name


@pytest.mark.parametrize("model", [Device, Link, HostMemory, Build])
def test_number_fields_name_their_unit(model):
    bad = [n for n in _number_fields(model) if n not in COUNT_FIELDS and not n.endswith(UNIT_SUFFIXES)]
    assert not bad, f"{model.__name__}: number fields without a unit in the name: {bad}"


# Devices whose vendor publishes no unit count or clock (the note says so).
NO_UNITS = {"b200", "b300", "gb200", "gb300"}
NO_CLOCK = NO_UNITS | {"dgx-spark", "h20", "gaudi3"}
NO_L2 = NO_UNITS | {"dgx-spark", "rtx-5050", "jetson-agx-thor"}
NO_FP32ACC = {"dgx-spark", "jetson-agx-thor"}


def test_every_gpu_and_cpu_has_the_speed_model_fields():
    for d in catalog.devices().values():
        if d.id not in NO_UNITS:
            assert d.compute_units, f"{d.id}: compute_units missing"
        assert d.fp16_fp32acc_tflops or d.id in NO_FP32ACC, f"{d.id}: fp16_fp32acc_tflops missing"
        assert d.memory_speed_mt_s, f"{d.id}: memory_speed_mt_s missing"
        if d.kind == "cpu":
            for f in ("threads", "simd", "simd_width_bits", "fp32_flops_per_clock_per_core", "memory_channels",
                      "boost_clock_mhz"):
                assert getattr(d, f), f"{d.id}: {f} missing"
            assert d.threads >= d.compute_units, d.id
        elif d.id not in NO_CLOCK:
            assert d.boost_clock_mhz, f"{d.id}: boost_clock_mhz missing"
        if d.kind == "gpu" and d.id not in NO_L2:
            assert d.l2_cache_mib, f"{d.id}: l2_cache_mib missing"


def test_bus_width_times_data_rate_is_the_bandwidth():
    """bits on the bus x MT/s / 8 ~= GB/s (vendors round: within 4%); CPUs: 64-bit channels."""
    checked = 0
    for d in catalog.devices().values():
        bits = d.memory_bus_bits
        if d.kind == "cpu" and d.memory_channels:
            bits = 64 * d.memory_channels
        if bits and d.memory_speed_mt_s:
            peak = bits * d.memory_speed_mt_s / 8 / 1000
            assert d.memory_bandwidth_gb_s == pytest.approx(peak, rel=0.04), (d.id, peak)
            checked += 1
    assert checked >= 100


def test_fp32_rate_is_units_times_lanes_times_clock():
    """fp32 = compute units x FP32 FLOP per unit per clock x boost clock, where the FLOP per unit per
    clock is one of the architectures' 128 / 256 (NVIDIA SM, AMD CU with dual issue or packed FP32,
    Intel Xe core, Apple GPU core): catches a clock or unit count copied from another card."""
    checked = 0
    for d in catalog.devices().values():
        if d.kind == "cpu" or not (d.compute_units and d.boost_clock_mhz) or d.backend == "hpu":
            continue
        per = d.fp32_tflops * 1e6 / (d.compute_units * d.boost_clock_mhz)
        assert any(abs(per / k - 1) < 0.03 for k in (128, 256)), (d.id, round(per, 1))
        checked += 1
    assert checked >= 90


def test_cpu_fp32_peak_fits_cores_width_and_clock():
    for d in catalog.devices().values():
        if d.kind != "cpu":
            continue
        assert d.fp32_flops_per_clock_per_core == 2 * 2 * d.simd_width_bits // 32, d.id  # 2 FMA pipes
        top = d.compute_units * d.fp32_flops_per_clock_per_core * d.boost_clock_mhz / 1e6
        assert 0.35 * top <= d.fp32_tflops <= top * 1.01, (d.id, top)


TENSOR_ARCHS = {"Turing", "Volta", "Ampere", "Ada Lovelace", "Blackwell"}


def test_nvidia_tensor_rate_is_sms_times_clock():
    """Dense FP16 (FP16 accumulate) = SMs x 1024 (or 2048 on GA100/Volta-class SMs) FLOP per clock x boost
    clock on GeForce, workstation and pre-Hopper datacenter cards (Hopper/Blackwell datacenter figures use
    a lower tensor clock than the boost)."""
    checked = 0
    for d in catalog.devices().values():
        if (d.vendor != "nvidia" or d.architecture not in TENSOR_ARCHS or d.fp16_tflops <= d.fp32_tflops
                or not (d.compute_units and d.boost_clock_mhz)
                or d.segment in ("datacenter", "embedded") and d.architecture.startswith("Blackwell")):
            continue
        per = d.fp16_tflops * 1e6 / (d.compute_units * d.boost_clock_mhz)
        assert any(abs(per / k - 1) < 0.03 for k in (1024, 2048)), (d.id, round(per))
        checked += 1
    assert checked >= 50


def test_fp32_accumulate_rates():
    for d in catalog.devices().values():
        acc = d.fp16_fp32acc_tflops
        if acc is None:
            continue
        assert acc <= max(d.fp16_tflops, d.fp32_tflops) * 1.001, d.id
        tensor = d.vendor == "nvidia" and d.architecture in TENSOR_ARCHS and d.fp16_tflops > 2 * d.fp32_tflops
        if tensor and d.segment == "consumer":
            assert acc == pytest.approx(d.fp16_tflops / 2, rel=0.01), f"{d.id}: GeForce runs FP32 accumulate at half rate"
        elif tensor and d.id != "l40":
            assert acc == pytest.approx(d.fp16_tflops, rel=0.01), f"{d.id}: pro/datacenter cards run it at full rate"
    l40 = catalog.device("l40")
    assert l40.fp16_fp32acc_tflops == pytest.approx(181.05) and l40.fp16_tflops == pytest.approx(362.1)


def test_gpu_share_tables():
    tables = catalog.gpu_share_tables()
    default = [t for t in tables.values() if t.default]
    assert [t.id for t in default] == ["macos-26"]
    t26, t15 = tables["macos-26"], tables["macos-13-15"]
    assert t26.share(16) == pytest.approx(0.74) and t26.share(128) == pytest.approx(0.84)
    assert t15.share(32) == pytest.approx(2 / 3, abs=0.001) and t15.share(64) == pytest.approx(0.75)
    assert t26.share(20) == t26.share(18)  # between keys: the nearest smaller key
    for t in tables.values():
        shares = [t.share_by_memory_gib[k] for k in sorted(t.share_by_memory_gib)]
        assert shares == sorted(shares), f"{t.id}: share falls as memory grows"
        for gib in t.measured_memory_gib:
            assert str(int(gib)) in t.sources, f"{t.id}: measured {gib} GiB without a source"
    m2 = catalog.device("apple-m2-max-38c")
    assert m2.gpu_share(64) == pytest.approx(0.807) and m2.gpu_share(64, "macos-13-15") == pytest.approx(0.75)
    assert catalog.device("rtx-4090").gpu_share(24) is None


def test_unified_memory_devices_name_their_share():
    for d in catalog.devices().values():
        if d.unified:
            assert d.gpu_share() is not None and d.kind != "cpu", d.id
        else:
            assert d.gpu_share() is None, d.id


def test_unified_memory_capacity_follows_the_share():
    """perf.memory gives a unified-memory GPU (not only Apple) its share, and the CPU side the rest."""
    import answers

    for spec, dev_id in (("dgx-spark", "dgx-spark"), ("apple-m4-max-40c:64gb", "apple-m4-max-40c")):
        r = answers.fit("meta-llama/Llama-3.1-8B", spec, quant="Q4_K_M")
        dev = catalog.device(dev_id)
        gib = float(spec.split(":")[1][:-2]) if ":" in spec else dev.memory_gib
        assert r["devices"][0]["capacity_gb"] == pytest.approx(gib * 2**30 * dev.gpu_share(gib) / 1e9, abs=0.01)


# ---------------------------------------------------------------- links fit the devices they join
@pytest.mark.parametrize("link_id, dev_id, fits", [
    ("nvlink-bridge-3090", "rtx-3090", True), ("nvlink-bridge-3090", "rtx-3090-ti", True),
    ("nvlink-bridge-3090", "rtx-4090", False), ("nvlink-bridge-a6000", "rtx-3090", False),
    ("nvlink-bridge-3090", "rtx-a6000", False), ("nvlink4", "rtx-4090", False), ("nvlink4", "h100-sxm-80gb", True),
    ("nvlink4", "h100-pcie-80gb", False), ("xgmi", "mi300x", True), ("xgmi", "mi250x", False),
    ("pcie4-x16", "rtx-4090", True), ("ib-ndr", "h100-sxm-80gb", True),
])
def test_links_fit_only_their_devices(link_id, dev_id, fits):
    assert catalog.link(link_id).fits(dev_id) is fits


def test_fit_lists_match_the_devices():
    links, devices = catalog.links(), catalog.devices()
    for l in links.values():
        for dev_id in l.fits_devices:
            assert dev_id in devices, f"link {l.id}: unknown device {dev_id}"
        if l.kind in ("nvlink", "nvlink-bridge", "nvswitch", "infinity-fabric"):
            assert l.fits_devices, f"link {l.id}: a bridge or fabric must list the devices it fits"
        if l.kind in ("nvlink", "nvlink-bridge"):
            for dev_id in l.fits_devices:
                assert devices[dev_id].nvlink == l.id, f"{dev_id} is listed by {l.id} but names {devices[dev_id].nvlink}"
    for d in devices.values():
        if d.nvlink:
            assert links[d.nvlink].fits(d.id), f"{d.id}: its nvlink {d.nvlink} does not list it"
        if d.vendor != "nvidia" or d.segment == "consumer" and d.architecture in ("Ada Lovelace", "Blackwell"):
            assert d.nvlink is None, f"{d.id}: no NVLink connector"


def test_mi300x_fabric_is_per_direction():
    """AMD's 128 GB/s per Infinity Fabric link adds both directions: 64 GB/s each way."""
    assert catalog.link("xgmi").bandwidth_gb_s == pytest.approx(64)
    assert "64 GB/s each way" in catalog.device("mi300x").note


# ---------------------------------------------------------------- issue 12 corrections
def test_issue_12_corrections():
    assert catalog.device("rtx-4000-ada").release_date == "2023-08"
    assert catalog.device("b200").memory_bandwidth_gb_s == pytest.approx(7700)
    h100 = catalog.device("h100-pcie-80gb")
    assert h100.launch_price_usd is None and h100.street_price_usd and h100.street_price_date
    a770, b580 = catalog.device("arc-a770-16gb"), catalog.device("arc-b580")
    for d in (a770, b580):  # FP32 and XMX rates at one clock: XMX FP16 = 8x the FP32 rate per Xe core
        assert d.fp16_tflops == pytest.approx(8 * d.fp32_tflops, rel=0.01), d.id
        assert d.int8_tops == pytest.approx(2 * d.fp16_tflops, rel=0.01), d.id


# ---------------------------------------------------------------- measurement rows resolve
MEASUREMENTS = Path(__file__).resolve().parents[1] / "data" / "measurements"


@pytest.mark.parametrize("name", ["dev.csv", "dev-2026-12.csv"])
def test_every_measurement_device_link_and_host_memory_resolves(name):
    from gpuplan.perf.predict import _link_for, host_memory_id

    rows = list(csv.DictReader((MEASUREMENTS / name).open()))
    assert rows
    for r in rows:
        dev = catalog.device(r["gpu"])  # raises InputError for an unknown id
        if int(r["n_gpus"] or 0) > 1:
            link = _link_for(r["interconnect"], dev)
            assert link.fits(dev.id), f"{name}: {r['interconnect']} does not fit {dev.id}"
        if r["host_mem"]:
            assert host_memory_id(r["host_mem"]) in catalog.host_memories()


def test_new_backends_and_kinds_plan_without_tracebacks():
    """Devices of the new kinds go through the planner: Gaudi (backend hpu, which the catalog's engines do
    not run), unified-memory APUs, Jetson, M5 with matrix units."""
    import answers

    for spec in ("gaudi3", "ryzen-ai-max-395:128gb", "jetson-agx-thor", "mi300a", "apple-m5-max-40c:128gb",
                 "8x mi300x", "2x rtx-3090-ti", "cpu-xeon-6980p"):
        r = answers.plan("meta-llama/Llama-3.1-8B", spec, quant="Q4_K_M")
        assert r["fits"], spec
        assert r["decode_tok_s"] > 0, spec
