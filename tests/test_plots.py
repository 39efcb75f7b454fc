"""PNG plots for --plot: each writes a real PNG, and tolerates missing optional keys."""

from __future__ import annotations


from gpuplan import plots

PNG = b"\x89PNG\r\n\x1a\n"
DEV = {"name": "rtx-4090", "weights_gb": 10.0, "kv_cache_gb": 2.0, "overhead_gb": 1.0, "total_gb": 13.0,
       "capacity_gb": 25.8, "free_gb": 12.8}
PLAN = {"fits": True, "model": "m", "quant": "Q4_K_M", "plan": {"strategy": "layer split over 2"},
        "decode_tok_s": 50.0, "throughput_tok_s": 50.0, "memory": [DEV, dict(DEV, name="rtx-3060-12gb", capacity_gb=12.9)],
        "alternatives": [{"plan": {"strategy": "tensor parallel 2"}, "fits": True, "decode_tok_s": 40.0,
                          "throughput_tok_s": 80.0}, {"plan": {"strategy": "one GPU"}, "fits": False}]}


def _png(path):
    assert path.read_bytes()[:8] == PNG and path.stat().st_size > 5000


def test_validation(tmp_path):
    rows = [{"measured": 70.0, "predicted": 72.0, "metric": "decode"}, {"measured": 3000, "predicted": 2500, "metric": "prefill"},
            {"measured": 10.0, "predicted": None, "metric": "decode"}, {"measured": 5, "metric": "decode"}]
    out = tmp_path / "v.png"
    assert plots.plot_validation(rows, out) == out
    _png(out)
    plots.plot_validation([], tmp_path / "empty.png")
    _png(tmp_path / "empty.png")


def test_plan(tmp_path):
    plots.plot_plan(PLAN, tmp_path / "p.png")
    _png(tmp_path / "p.png")
    plots.plot_plan({"fits": False, "memory": [{"name": "x"}]}, tmp_path / "min.png")
    _png(tmp_path / "min.png")


def test_compare_and_builds(tmp_path):
    cmp = {"model": "m", "setups": [{"setup": "rtx-4090", "fits": True, "decode_tok_s": 100, "throughput_tok_s": 100},
                                    {"setup": "rtx-3060-12gb", "fits": False}]}
    plots.plot_compare(cmp, tmp_path / "c.png")
    _png(tmp_path / "c.png")
    plots.plot_compare({}, tmp_path / "c0.png")
    builds = {"model": "m", "builds": [{"name": "2x RTX 3090", "price_usd": 1500, "decode_tok_s": 20, "fits": True},
                                       {"name": "Mac", "price_usd": 5000, "decode_tok_s": 12}, {"name": "no price"}]}
    plots.plot_builds(builds, tmp_path / "b.png")
    _png(tmp_path / "b.png")
    plots.plot_builds([], tmp_path / "b0.png")


def test_real_api_outputs(tmp_path):
    import answers

    plan = answers.plan("meta-llama/Meta-Llama-3-8B", "rtx-4090,rtx-3060-12gb")
    builds = answers.builds("meta-llama/Meta-Llama-3-8B")
    cmp = answers.compare("meta-llama/Meta-Llama-3-8B", ["rtx-4090", "2x rtx-3090"])
    plots.plot_plan(plan, tmp_path / "plan.png")
    plots.plot_builds(builds, tmp_path / "builds.png")
    plots.plot_compare(cmp, tmp_path / "cmp.png")
    for f in ("plan", "builds", "cmp"):
        _png(tmp_path / f"{f}.png")
