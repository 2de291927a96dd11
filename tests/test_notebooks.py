"""The chapters' parameter contract (spec notebooks_and_book.md), checked without executing any notebook.

Every chapter listed in ``_toc.yml`` must: carry kernelspec and language_info metadata (papermill needs both);
have exactly one ``parameters``-tagged cell, which is its first code cell and holds only literal assignments;
accept papermill's injection (the Python API and the command line exactly as the README types it); and be
committed without outputs or execution counts (nbval then only checks that every cell runs).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
CHAPTERS = ["data", "source_only", "adaptsegnet", "advent", "globallocal", "sdca", "results"]


def _toc_files() -> list[str]:
    """Every file the table of contents lists (root, chapters, sections, parts), without suffix."""
    yaml = pytest.importorskip("yaml")
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    walk(toc.get("chapters"))
    walk(toc.get("parts"))
    return [str(Path(f).with_suffix("")) for f in files]


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def _code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def _is_parameters(cell) -> bool:
    return "parameters" in cell.get("metadata", {}).get("tags", [])


def test_every_notebook_is_a_chapter_and_every_chapter_is_in_the_toc():
    on_disk = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
    assert on_disk == sorted(CHAPTERS)
    toc = _toc_files()
    assert toc[0] == "book/intro"
    for name in CHAPTERS:
        assert f"notebooks/{name}" in toc, f"notebooks/{name}.ipynb is not listed in _toc.yml"
    for entry in toc:
        assert (ROOT / f"{entry}.ipynb").exists() or (ROOT / f"{entry}.md").exists(), f"_toc.yml lists {entry}"


@pytest.mark.parametrize("name", CHAPTERS)
def test_metadata_for_papermill(name):
    nb = _read(name)
    assert nb.metadata["kernelspec"] == {"name": "python3", "display_name": "Python 3", "language": "python"}
    assert nb.metadata["language_info"]["name"] == "python"
    nbformat.validate(nb)


@pytest.mark.parametrize("name", CHAPTERS)
def test_title_first(name):
    first = _read(name).cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), "jupyter-book needs a title"


@pytest.mark.parametrize("name", CHAPTERS)
def test_one_parameters_cell_first_with_literals_only(name):
    nb = _read(name)
    tagged = [c for c in nb.cells if _is_parameters(c)]
    assert len(tagged) == 1, f"{name}: {len(tagged)} cells tagged 'parameters'"
    assert _code_cells(nb)[0] is tagged[0], f"{name}: the parameters cell must be the first code cell"
    source = tagged[0].source
    tree = ast.parse(source)
    assert tree.body, "empty parameters cell"
    names = []
    for stmt in tree.body:
        assert isinstance(stmt, ast.Assign), f"{name}: not an assignment: {ast.unparse(stmt)}"
        assert len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name), ast.unparse(stmt)
        assert isinstance(stmt.value, ast.Constant), f"{name}: not a literal: {ast.unparse(stmt)}"
        names.append(stmt.targets[0].id)
    assert len(names) == len(set(names)), f"{name}: a parameter is assigned twice"
    for line in source.splitlines():  # one per line, each documented (papermill --help-notebook shows it)
        assert "#" in line and line.index("#") > line.index("="), f"{name}: no comment on {line!r}"
        assert line.count("=") == 1, f"{name}: papermill cannot parse a line with two '=': {line!r}"


@pytest.mark.parametrize("name", [c for c in CHAPTERS if c != "results"])
def test_chapters_share_the_run_parameters(name):
    import papermill

    params = papermill.inspect_notebook(str(NOTEBOOKS / f"{name}.ipynb"))
    for key in (
        "preset",
        "dataset",
        "data_root",
        "target_root",
        "iters",
        "backbone",
        "device",
        "seed",
        "out_dir",
        "resume",
    ):
        assert key in params, f"{name}: parameter {key!r} missing"
    assert params["preset"]["default"] == '"quick"'
    assert params["iters"]["default"] == "None"
    assert params["out_dir"]["default"] == f'"runs/{name}"'
    assert params["iters"]["help"], "papermill reads the comment as the parameter's help"


@pytest.mark.parametrize("name", CHAPTERS)
def test_no_outputs_committed(name):
    for i, cell in enumerate(_code_cells(_read(name))):
        assert cell.execution_count is None, f"{name}: code cell {i} has an execution count"
        for out in cell.outputs:
            assert out.get("execution_count") is None, f"{name}: code cell {i} output has an execution count"
        assert not cell.outputs, f"{name}: code cell {i} has committed outputs"


@pytest.mark.parametrize("name", CHAPTERS)
def test_papermill_injects_parameters(name, tmp_path):
    import papermill

    out = tmp_path / f"{name}.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOKS / f"{name}.ipynb"), str(out), parameters={"iters": 40000}, prepare_only=True, progress_bar=False
    )
    nb = nbformat.read(out, as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "iters = 40000" in injected[0].source
    code = _code_cells(nb)
    assert _is_parameters(code[0]) and code[1] is injected[0], "papermill injects right after the parameters cell"


def test_papermill_cli_as_the_readme_types_it(tmp_path):
    """`papermill notebooks/sdca.ipynb OUT -p iters 40000` (no -k: the kernel comes from the metadata)."""
    out = tmp_path / "out.ipynb"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "papermill",
            "notebooks/sdca.ipynb",
            str(out),
            "-p",
            "iters",
            "40000",
            "-p",
            "preset",
            "paper",
            "-p",
            "data_root",
            "/data/GTA5",
            "-p",
            "target_root",
            "/data/cityscapes",
            "--prepare-only",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    nb = nbformat.read(out, as_version=4)
    injected = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    for line in ("iters = 40000", 'preset = "paper"', 'data_root = "/data/GTA5"', 'target_root = "/data/cityscapes"'):
        assert line in injected.source


def test_paper_preset_without_cuda_is_a_clear_error():
    """What the resolve cell does when `-p preset paper` meets a machine without CUDA."""
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from udalib.presets import resolve

    with pytest.raises(RuntimeError, match="needs CUDA"):
        resolve("sdca", "paper", dataset=None, data_root="/data/GTA5", target_root="/data/cityscapes", iters=40000)
