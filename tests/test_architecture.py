"""The layout is the documentation: checks that keep it true (no import cycles, one module
owns DuckDB, family details stay in their family module, every metric is catalogued)."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from beyond_inet.scoring import metric_specs
from tests.conftest import REPO

PACKAGE = REPO / "beyond_inet"
CODE_DIRS = ("beyond_inet", "dashboard", "precompute")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(tree: ast.Module, module: str, is_package: bool) -> Iterator[str]:
    """Modules imported when ``module`` runs (``if TYPE_CHECKING:`` blocks left out),
    resolved to absolute names; ``from p import m`` yields ``p`` and ``p.m``."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    base = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            parent = ".".join(base[: len(base) - node.level + 1]) if node.level else ""
            target = ".".join(p for p in (parent, node.module or "") if p)
            yield target
            yield from (f"{target}.{a.name}" for a in node.names)


def _import_graph(root: Path) -> dict[str, set[str]]:
    files = {_module_name(p): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        deps = set(_runtime_imports(tree, name, path.name == "__init__.py")) & set(files)
        graph[name] = {d for d in deps if d != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for d in sorted(graph.get(n, ())):
            if state.get(d) == 1:
                return [*stack[stack.index(d) :], d]
            if d not in state and (found := visit(d)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles_in_the_library() -> None:
    graph = _import_graph(PACKAGE)
    assert "beyond_inet.run.engine" in graph["beyond_inet.run.pipeline"]  # the graph is real
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def _subpackage_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The import graph between ``beyond_inet``'s subpackages and top-level modules
    (``beyond_inet.run.engine`` -> ``beyond_inet.run``)."""

    def unit(module: str) -> str:
        return ".".join(module.split(".")[:2])

    out: dict[str, set[str]] = {}
    for module, deps in graph.items():
        out.setdefault(unit(module), set()).update(
            unit(d) for d in deps if unit(d) not in (unit(module), "beyond_inet")
        )
    return out


def test_subpackages_import_one_way() -> None:
    """No cycle between subpackages either: run -> scoring -> records, never back."""
    graph = _subpackage_graph(_import_graph(PACKAGE))
    assert "beyond_inet.records" in graph["beyond_inet.scoring"]  # the graph is real
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])
    assert _cycle(_subpackage_graph({"p.a.x": {"p.b.y"}, "p.b.y": {"p.a.z"}})) is not None


def test_reference_tables_are_a_leaf() -> None:
    graph = _import_graph(PACKAGE)
    assert not {d for d in graph["beyond_inet.reference"] if d.startswith("beyond_inet")}


def _sources() -> Iterator[tuple[Path, ast.Module]]:
    for d in CODE_DIRS:
        for p in sorted((REPO / d).rglob("*.py")):
            yield p, ast.parse(p.read_text(), str(p))


def test_only_the_store_module_imports_duckdb() -> None:
    users = sorted(
        str(p.relative_to(REPO))
        for p, tree in _sources()
        if any(m.split(".")[0] == "duckdb" for m in _runtime_imports(tree, "x", False))
    )
    assert users == ["beyond_inet/store.py"]


def test_family_classes_stay_in_their_family_modules() -> None:
    """Callers ask a model's capabilities; no isinstance checks on family classes."""
    family_modules = {p.name for p in (PACKAGE / "models").glob("*_family.py")}
    assert {"timm_family.py", "open_clip_family.py", "hf_family.py"} <= family_modules
    classes = set()
    for p in (PACKAGE / "models").glob("*_family.py"):
        classes |= {
            n.name for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, ast.ClassDef)
        }
    assert "ZeroShotClassifier" in classes
    leaks = [
        f"{p.relative_to(REPO)}: {n.id}"
        for p, tree in _sources()
        if p.name not in family_modules
        for n in ast.walk(tree)
        if isinstance(n, ast.Name) and n.id in classes
    ]
    assert leaks == []


def test_metric_catalogue_entries_are_complete() -> None:
    for name, spec in metric_specs.METRICS.items():
        assert spec.name == name and spec.label and spec.summary and spec.description
        assert spec.unit in metric_specs.UNITS
    assert metric_specs.spec("error_ratio:pose").name == "error_ratio:<factor>"
    assert metric_specs.spec("top1_at:90").percent and not metric_specs.spec("ece").percent
    with pytest.raises(Exception, match=r"(?i)did you mean"):
        metric_specs.spec("top_1")
    with pytest.raises(Exception, match=r"'poze' is not one of .*Did you mean 'pose'"):
        metric_specs.spec("error_ratio:poze")  # an argument is checked, not just the prefix
    assert metric_specs.spec("top1_at:anything").name == "top1_at:<value>"  # open domain


def test_readme_metric_table_lists_every_catalogue_entry() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Metrics\n", 1)[1].split("\n## ", 1)[0]
    first_cells = re.findall(r"^\| ([^|]+) \|", section, flags=re.M)
    listed = {name for cell in first_cells for name in re.findall(r"`([^`]+)`", cell)}
    assert set(metric_specs.METRICS) <= listed, set(metric_specs.METRICS) - listed


def test_contributing_walks_through_the_three_extension_points() -> None:
    text = (REPO / "CONTRIBUTING.md").read_text()
    for heading in ("## Add a dataset", "## Add an evaluation", "## Add a model family"):
        assert heading in text
    for registry in ("DATASETS", "EVALUATIONS", "FAMILIES"):
        assert registry in text


def test_the_engines_outputs_are_the_per_image_records_fields() -> None:
    """One per-image record: every engine output (``score_logits``'s keys, the fields of
    ``LogitOutputs`` but the sample ``index``) is an ``ImageRecords`` field of that name,
    so the records are made by name (``records.record_from``), never field by field."""
    from dataclasses import fields

    import torch

    from beyond_inet.datasets.cue_conflict import CUE_CONFLICT
    from beyond_inet.records import ImageRecords
    from beyond_inet.run.engine import LogitOutputs, score_logits

    stored = {f.name for f in fields(ImageRecords)}
    outputs = {f.name for f in fields(LogitOutputs)} - {"index"}
    assert outputs <= stored, outputs - stored
    logits = torch.randn(3, 1000)
    keys = set(score_logits(logits, torch.tensor([1, -1, 5]), CUE_CONFLICT.protocol.decision))
    assert keys <= outputs, keys - outputs
    assert keys >= {"pred", "confidence", "p_true", "topk_idx", "brier", "decision"}
