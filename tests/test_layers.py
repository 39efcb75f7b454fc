"""Lower layers never import upper ones (the brief's direction: commands/web -> api -> planner ->
perf/engines -> sources -> catalog), counting imports inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "src" / "gpuplan"
UPPER = {"cli", "commands", "web"}
# module (first path part) -> packages it must never import
FORBIDDEN = {
    "api": UPPER,
    "planner": UPPER | {"api"},
    "perf": UPPER | {"api", "planner"},
    "engines": UPPER | {"api", "planner"},
    "sources": UPPER | {"api", "planner", "engines"},
    "catalog": UPPER | {"api", "planner", "engines", "perf", "sources"},
    "requests": UPPER | {"api", "planner"},
    "results": UPPER | {"api", "planner"},
    "types": UPPER | {"api", "planner", "engines", "perf", "sources"},
    "bench": UPPER | {"api", "planner"},
}


def _imports(path: Path) -> set[str]:
    """First package names under gpuplan that a module imports (relative or absolute)."""
    rel = path.relative_to(PKG).with_suffix("").parts
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(rel[:-node.level]) if node.level <= len(rel) else []
                parts = base + (node.module.split(".") if node.module else [])
                if not parts:
                    parts = [a.name for a in node.names]
                out.add(parts[0] if parts else "")
                if not node.module and node.level and base == []:
                    out |= {a.name for a in node.names}
            elif node.module and node.module.startswith("gpuplan."):
                out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("gpuplan.")}
    return out


def test_lower_layers_do_not_import_upper_ones():
    bad = []
    for path in PKG.rglob("*.py"):
        layer = path.relative_to(PKG).with_suffix("").parts[0]
        for name in _imports(path) & FORBIDDEN.get(layer, set()):
            bad.append(f"{path.relative_to(PKG)} imports {name}")
    assert not bad, bad


def test_the_check_sees_imports():
    assert "commands" in _imports(PKG / "cli.py") and "planner" in _imports(PKG / "api.py")


def test_sources_read_only_the_weight_sizes_of_perf():
    """The one documented exception (docs/architecture.md): sources size a catalog model's
    weights in a format with perf/weights.py, which itself imports no planner or engine code.
    Any other perf module imported by sources is an upward import."""
    bad = []
    for path in (PKG / "sources").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 2 \
                    and node.module.startswith("perf") and node.module != "perf.weights":
                bad.append(f"{path.name} imports {node.module}")
    assert not bad, bad
    weights_imports = _imports(PKG / "perf" / "weights.py")
    assert not weights_imports & {"planner", "engines", "api", "commands", "web"}, weights_imports
