"""The package layering, read from the source: every import statement of every module of
musicgan and tune, those inside functions included (a lazy import is still a dependency),
type-only ones under `if TYPE_CHECKING:` aside. No import cycle between the subpackages of
musicgan and tune, and nothing below training/ imports training/."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP_LEVEL = ("musicgan", "tune")
# What the trainer is built on: none of these may import musicgan.training.
BELOW_TRAINING = ("musicgan.data", "musicgan.distributed", "musicgan.metrics", "musicgan.models")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _type_checking_only(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk_runtime(node: ast.AST):
    """Every node below `node` except the bodies of `if TYPE_CHECKING:` blocks."""
    for child in ast.iter_child_nodes(node):
        if _type_checking_only(child):
            for other in child.orelse:
                yield other
                yield from _walk_runtime(other)
            continue
        yield child
        yield from _walk_runtime(child)


def imports_of(source: str, module: str, is_package: bool = False) -> list[tuple[str, int]]:
    """(imported module, line) for each import in `source`, at any depth: `from pkg import name`
    counts as `pkg.name` when that is a module; relative imports are resolved; a literal
    `importlib.import_module("...")` counts too."""
    found = []
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in _walk_runtime(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.append((child if is_module(child) else base, node.lineno))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.append((node.args[0].value, node.lineno))
    return [(name, line) for name, line in found if name.split(".")[0] in TOP_LEVEL]


def unit(module: str) -> str:
    """`tune`, a subpackage (`musicgan.training`) or a top-level module (`musicgan.plots`)."""
    parts = module.split(".")
    return parts[0] if parts[0] == "tune" else ".".join(parts[:2])


def is_subpackage(name: str) -> bool:
    return name == "tune" or ("." in name and (ROOT.joinpath(*name.split(".")) / "__init__.py").is_file())


def project_imports() -> list[tuple[str, str, int]]:
    """(importing module, imported module, line) over every module of musicgan and tune."""
    edges = []
    for top in TOP_LEVEL:
        for path in sorted((ROOT / top).rglob("*.py")):
            name = module_name(path)
            for imported, line in imports_of(path.read_text(), name, path.name == "__init__.py"):
                edges.append((name, imported, line))
    return edges


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's components of `graph` (iterative: no recursion limit on deep chains)."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []
    for start in list(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    components.append(component)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return components


def subpackage_cycles(edges: list[tuple[str, str, int]]) -> list[list[str]]:
    """One line per import between units of a cycle that joins two or more subpackages. Top-level
    modules take part as units, so a cycle through one (training -> plots -> metrics ->
    training) counts; a cycle of one subpackage with top-level modules only does not."""
    graph = defaultdict(set)
    for source, target, _ in edges:
        if unit(source) != unit(target):
            graph[unit(source)].add(unit(target))
    found = []
    for component in strongly_connected(graph):
        if sum(map(is_subpackage, component)) >= 2:
            found.append(
                sorted(
                    {
                        f"{s} -> {t} (line {line})"
                        for s, t, line in edges
                        if unit(s) in component and unit(t) in component and unit(s) != unit(t)
                    }
                )
            )
    return found


def test_no_import_cycle_between_subpackages():
    cycles = subpackage_cycles(project_imports())
    assert not cycles, "import cycles between subpackages:\n" + "\n\n".join("\n".join(c) for c in cycles)


def test_nothing_below_training_imports_training():
    offenders = [
        f"{source} -> {target} (line {line})"
        for source, target, line in project_imports()
        if unit(source) in BELOW_TRAINING and unit(target) == "musicgan.training"
    ]
    assert not offenders, "\n".join(offenders)


def test_lazy_imports_count_and_type_only_imports_do_not():
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from musicgan.training.loop import Trainer\n"
        "def load():\n"
        "    from musicgan.training.sampling import load_run\n"
        "    import importlib\n"
        "    return importlib.import_module('tune.trial')\n"
    )
    names = [name for name, _ in imports_of(source, "musicgan.metrics.example")]
    assert names == ["musicgan.training.sampling", "tune.trial"]
    assert imports_of("from . import registry\n", "musicgan.metrics.example") == [("musicgan.metrics.registry", 1)]


def test_a_cycle_through_a_top_level_module_is_found():
    edges = [
        ("musicgan.metrics.bleu", "musicgan.plots", 3),
        ("musicgan.plots", "musicgan.training.sampling", 7),
        ("musicgan.training.loop", "musicgan.metrics", 9),
        ("musicgan.data.loader", "musicgan.audio", 1),  # a top-level module and one subpackage: allowed
        ("musicgan.audio", "musicgan.data.song", 2),
    ]
    (cycle,) = subpackage_cycles(edges)
    assert cycle == [
        "musicgan.metrics.bleu -> musicgan.plots (line 3)",
        "musicgan.plots -> musicgan.training.sampling (line 7)",
        "musicgan.training.loop -> musicgan.metrics (line 9)",
    ]


def test_training_provides_the_run_loader_the_metrics_use(tmp_path):
    """metrics/runs.py: the metrics load a run through the loader training/sampling.py hands in;
    without it (only metrics/ imported) the call fails in one line naming the import."""
    probe = (
        "from musicgan.errors import UserError\n"
        "from musicgan.metrics.runs import load_run\n"
        "try:\n"
        f"    load_run({str(tmp_path)!r})\n"
        "except UserError as exc:\n"
        "    print(exc)\n"
        "import musicgan.training.sampling\n"
        "try:\n"
        f"    load_run({str(tmp_path)!r})\n"
        "except UserError as exc:\n"
        "    print(exc)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    out = run.stdout
    first, second = out.strip().splitlines()
    assert "needs musicgan.training: import musicgan.training.sampling first" in first
    assert "no readable checkpoint" in second  # the real loader ran
