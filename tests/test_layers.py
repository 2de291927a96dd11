"""The house's shape, from the source itself: layers, no import cycles, one place that says what a preset means."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from udalib import methods, presets

PACKAGE = Path(__file__).resolve().parent.parent / "udalib"

#: Lowest first. A module may import from its own layer or below, never above.
LAYERS: dict[str, int] = {
    "config": 0,
    "files": 0,
    "run_folder": 0,
    "user_error": 0,
    "dataset_roots": 0,
    "data": 1,
    "models": 1,
    "losses": 1,
    "inference": 1,
    "evaluate": 1,
    "pseudo_labels": 1,
    "adabn": 1,
    "analysis": 1,
    "viz": 1,
    "widgets": 1,
    "record": 1,
    "methods": 2,
    "presets": 3,
    "train": 3,
    "pretrain": 3,
    "stages": 4,
    "results": 4,  # reports on what the trainer made: above train, which imports nothing from it
    "reproduce": 4,
    "chapter": 4,
    "preset_choice": 4,
    "cli": 5,
}


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("udalib", *path.relative_to(PACKAGE).with_suffix("").parts)
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return mods


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The udalib modules `name` imports (``from . import x`` counts as importing module ``x``)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [module] + [f"{module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in known and t not in (name, "udalib")}
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, path, set(mods)) for name, path in mods.items()}


def _component(module: str) -> str:
    return module.split(".")[1]


def test_every_module_has_a_layer():
    assert {_component(m) for m in _graph() if m != "udalib"} <= set(LAYERS)


def test_no_module_imports_one_above_it():
    upward = [
        f"{a} -> {b}"
        for a, targets in _graph().items()
        if a != "udalib"
        for b in targets
        if LAYERS[_component(b)] > LAYERS[_component(a)]
    ]
    assert not upward, upward


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path + [nxt]
            if nxt not in state and (cycle := visit(nxt, path + [nxt])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [start])
            assert cycle is None, " -> ".join(cycle)


def test_the_layering_test_sees_a_cycle_and_an_upward_import(tmp_path, monkeypatch):
    """The checks above can fail: a fake package with a cycle and an upward import is caught."""
    pkg = tmp_path / "udalib"
    (pkg / "methods").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "config.py").write_text("from .presets import x\n")
    (pkg / "presets.py").write_text("from . import config\n")
    (pkg / "methods" / "__init__.py").write_text("from ..presets import table\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)
    with pytest.raises(AssertionError, match="udalib.config -> udalib.presets"):
        test_no_module_imports_one_above_it()
    with pytest.raises(AssertionError, match="->"):
        test_no_import_cycle()


def test_only_the_preset_table_compares_preset_names():
    hits = [
        f"{p.relative_to(PACKAGE)}:{i}"
        for p in PACKAGE.rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if "preset ==" in line or "preset !=" in line
    ]
    # presets.py says what a preset means; preset_choice.py only decides which one a run gets on this machine
    assert hits and all(h.startswith(("presets.py:", "preset_choice.py:")) for h in hits), hits


def test_every_registered_method_has_a_quick_and_a_paper_row():
    assert set(presets.TABLE) == set(methods.REGISTRY)
    assert all(set(rows) == set(presets.PRESETS) for rows in presets.TABLE.values())


def test_rows_name_only_real_fields():
    """A typo in the table would otherwise only fail when that method runs."""
    import dataclasses

    from udalib.config import DataConfig, TrainConfig

    data, train = {f.name for f in dataclasses.fields(DataConfig)}, {f.name for f in dataclasses.fields(TrainConfig)}
    settings = {(name, f"paper {s}"): row for name, rows in presets.PAPER_SETTINGS.items() for s, row in rows.items()}
    table = {(name, preset): row for name, rows in presets.TABLE.items() for preset, row in rows.items()}
    for (name, preset), row in {**table, **settings}.items():
        fields = {f.name for f in dataclasses.fields(methods.get(name).config)}
        where = f"{name}/{preset}"
        assert set(row.data) <= data, where
        assert set(row.train) <= train, where
        assert set(row.method) | set(row.scale) <= fields, where


def test_the_trainer_and_the_methods_reach_no_reporting_code():
    """Training a method never loads the results package (its catalogue, store or tables), not even indirectly."""
    graph = _graph()
    for start in [m for m in graph if m == "udalib.train" or m.startswith("udalib.methods")]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        assert not {m for m in seen if m.startswith("udalib.results")}, start
