"""The house without circles: every import in src/aelab (at the top of a module or inside a function)
points down or sideways, never up, and no group of modules imports itself round (docs/architecture.md)."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "aelab"

#: The floors, lowest first; a module sits on the floor of the longest prefix of its name listed here.
FLOORS = [
    ("ground", ["_version", "exceptions", "_fs", "config", "device", "comm", "_params", "_validation", "losses", "layout",
                "preprocess",
                "preprocessing", "thresholds", "defaults", "datasets._paths"]),
    ("data and parts", ["io", "_columns", "datasets", "nn", "models", "kinds", "emission", "neighbours", "heads", "forest", "scoring", "metrics",
                        "divergences"]),
    ("training and the fitted state", ["training", "pipeline", "checkpoint", "fitted"]),
    ("what reads a fitted state", ["persistence", "conformal", "fitting", "postfit", "explain", "shapley", "plots"]),
    ("estimators and their exports", ["estimators", "fitted_api", "export", "latent", "report"]),
    ("launchers and recipes", ["distributed", "presets", "tutorial"]),
    ("command line", ["cli", "__main__", ""]),
]


def _modules() -> dict[str, Path]:
    out = {}
    for p in SRC.rglob("*.py"):
        parts = p.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def _imports(name: str, path: Path, modules: dict) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".") if package else []
            base = base[: len(base) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                cand = f"{target}.{alias.name}".strip(".")
                found.add(cand if cand in modules else target)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            mod = node.module if isinstance(node, ast.ImportFrom) else None
            for alias in node.names:
                full = mod or alias.name
                if full == "aelab" or full.startswith("aelab."):
                    found.add(full[len("aelab."):] if full != "aelab" else "")
    out = set()
    for t in found:
        while t and t not in modules:
            t = t.rpartition(".")[0]
        if t != name and not name.startswith(t + ".") and t in modules:
            out.add(t)
    return out


def _floor(name: str) -> int:
    best, level = -1, None
    for i, (_, names) in enumerate(FLOORS):
        for prefix in names:
            if (name == prefix or name.startswith(prefix + ".") or prefix == "") and len(prefix) > best:
                best, level = len(prefix), i
    return level


def _graph():
    modules = _modules()
    return {m: _imports(m, p, modules) for m, p in modules.items()}


def test_no_import_points_up():
    up = [f"{a} ({FLOORS[_floor(a)][0]}) imports {b} ({FLOORS[_floor(b)][0]})"
          for a, targets in _graph().items() for b in targets if _floor(b) > _floor(a)]
    assert not up, "upward imports:\n" + "\n".join(sorted(up))


def test_no_import_circle():
    edges = _graph()
    index, low, stack, on, circles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for v in edges:
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_the_floors_name_every_module():
    assert all(_floor(m) is not None for m in _modules())


#: No module of src/aelab is longer than this many lines (counted as ``wc -l`` counts them).
MAX_LINES = 500


def test_no_module_above_the_line_limit():
    lines = {m: p.read_bytes().count(b"\n") for m, p in _modules().items()}
    long = {m: n for m, n in lines.items() if n > MAX_LINES}
    assert not long, f"modules above {MAX_LINES} lines (split them along a real seam): {long}"
    assert max(lines.values()) > MAX_LINES // 2  # the count reads real files
