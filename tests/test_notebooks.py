"""The chapters' parameter contract (papermill's ``parameters`` cell), checked without executing any notebook.

Every chapter listed in ``_toc.yml`` must: carry kernelspec and language_info metadata (papermill needs both);
have exactly one ``parameters``-tagged cell, which is its first code cell and holds only literal assignments;
accept papermill's injection (the Python API and the command line exactly as the README types it); and be
committed without outputs or execution counts (nbval then only checks that every cell runs).

The house style, also checked here: every chapter sets up through one ``udalib.chapter.setup`` call in a cell tagged
``hide-input``, declares only parameters it uses, shows its method's code statically with MyST ``literalinclude``
directives that name existing objects, and shares no block of code with another chapter (repeated scaffolding
belongs in ``udalib/chapter.py``).
"""

from __future__ import annotations

import ast
import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
CHAPTERS = ["data", "source_only", "adaptsegnet", "advent", "globallocal", "sdca", "bafft", "clustering", "results"]
#: Chapters that train a run: they share the run parameters of the CLI.
RUN_CHAPTERS = ["source_only", "adaptsegnet", "advent", "globallocal", "sdca", "bafft", "clustering"]


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


@pytest.mark.parametrize("name", RUN_CHAPTERS)
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
        "confirm_long_run",
    ):
        assert key in params, f"{name}: parameter {key!r} missing"
    assert params["preset"]["default"] == '"auto"'  # the headline rule (udalib.preset_choice)
    assert params["confirm_long_run"]["default"] == "False"
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


def test_data_chapter_declares_the_data_parameters():
    import papermill

    params = papermill.inspect_notebook(str(NOTEBOOKS / "data.ipynb"))
    assert set(params) == {"preset", "dataset", "data_root", "target_root", "n_images"}
    assert params["preset"]["default"] == '"auto"'


# ----------------------------------------------------------------------------------------------------------------
# House style: setup through the chapter helper, parameters used, code shown statically, no shared blocks


def _python(source: str) -> str:
    """A code cell's source without IPython magics (``%matplotlib inline``), for ``ast``."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def _body_cells(nb) -> list:
    """The code cells after the parameters cell."""
    return [c for c in _code_cells(nb) if not _is_parameters(c)]


def _setup_calls(source: str) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(ast.parse(_python(source)))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "setup"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "chapter"
    ]


@pytest.mark.parametrize("name", CHAPTERS)
def test_no_import_path_hack_and_no_old_api(name):
    """udalib is installed (``pip install -e .``): no chapter edits sys.path or uses the pre-refactoring API."""
    for cell in _body_cells(_read(name)):
        assert "sys.path" not in cell.source, f"{name}: sys.path edited"
        for old in (
            "udalib import pipeline",
            "pipeline.",
            "show_source",
            "segmenter_for",
            "load_model_weights",
            "max_iters",
            "source_eval_loader",
            "viz.PUBLISHED",
            "viz.results_",
            "viz.gain_table",
        ):
            assert old not in cell.source, f"{name}: uses the old API {old!r}"


@pytest.mark.parametrize("name", [c for c in CHAPTERS if c != "results"])
def test_setup_through_one_chapter_helper_call(name):
    """One ``chapter.setup(...)`` call, in the cell right after the parameters, tagged hide-input."""
    cells = _body_cells(_read(name))
    calls = [(i, call) for i, c in enumerate(cells) for call in _setup_calls(c.source)]
    assert len(calls) == 1, f"{name}: {len(calls)} chapter.setup calls"
    assert calls[0][0] == 0, f"{name}: chapter.setup is not in the cell after the parameters"
    assert "hide-input" in cells[0].metadata.get("tags", []), f"{name}: the setup cell is not tagged hide-input"


@pytest.mark.parametrize("name", CHAPTERS)
def test_every_parameter_is_used(name):
    """A parameter the chapter never reads would be documented by papermill and silently ignored."""
    nb = _read(name)
    params = [stmt.targets[0].id for stmt in ast.parse(_code_cells(nb)[0].source).body]
    used = {
        node.id
        for cell in _body_cells(nb)
        for node in ast.walk(ast.parse(_python(cell.source)))
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
    }
    unused = [p for p in params if p not in used]
    assert not unused, f"{name}: parameters never used: {unused}"


@pytest.mark.parametrize("name", CHAPTERS)
def test_matplotlib_inline_before_the_first_figure(name):
    """``%matplotlib inline`` comes in the first cell that draws (CI runs with MPLBACKEND=Agg)."""
    cells = _body_cells(_read(name))
    draws = [i for i, c in enumerate(cells) if re.search(r"\bviz\.(plot_|show_samples)|display\(fig\)", c.source)]
    inline = [i for i, c in enumerate(cells) if "%matplotlib inline" in c.source]
    assert draws and inline == [draws[0]], f"{name}: %matplotlib inline in cells {inline}, first figure in {draws[:1]}"


# -- the method's code, shown statically -------------------------------------------------------------------------

LITERALINCLUDE = re.compile(r"```\{literalinclude\}[ \t]+(?P<path>\S+)[ \t]*\n(?P<options>(?:[ \t]*:[\w-]+:.*\n)*)")

#: What each method chapter must show: its losses and its training step (``:pyobject:`` names).
METHOD_CODE = {
    "source_only": {"source_ce_step", "Supervised", "multi_level_ce"},
    "adaptsegnet": {
        "AdaptSegNet.training_step",
        "level_maps",
        "OutputDiscriminators.generator_step",
        "OutputDiscriminators.discriminator_step",
        "generator_loss",
        "discriminator_loss",
    },
    "advent": {"self_information", "entropy_map", "minent_loss", "MinEnt.training_step", "AdvEnt"},
    "globallocal": {"GlobalLocal.training_step", "GlobalLocal.void_mask", "GlobalLocal.active"},
    "sdca": {
        "contrastive_bound",
        "ClassStatistics.merge_sums",
        "threshold_labels",
        "SDCA.prepare",
        "SDCA.training_step",
    },
}


def _literalincludes(nb) -> list[tuple[Path, dict[str, str]]]:
    """(file, {option: value}) of every literalinclude directive in the markdown cells."""
    found = []
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for m in LITERALINCLUDE.finditer(cell.source + "\n"):
            options = dict(re.match(r"\s*:([\w-]+):\s*(.*)", line).groups() for line in m["options"].splitlines())
            found.append((NOTEBOOKS / m["path"], options))
    return found


def _defines(path: Path, dotted: str) -> bool:
    """Whether `path` defines the class or function `dotted` (``Class.method`` for a method), as Sphinx's
    ``:pyobject:`` reads it."""
    body = ast.parse(path.read_text()).body
    for part in dotted.split("."):
        node = next(
            (
                n
                for n in body
                if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == part
            ),
            None,
        )
        if node is None:
            return False
        body = node.body
    return True


@pytest.mark.parametrize("name", CHAPTERS)
def test_literalincludes_name_existing_code(name):
    """Every literalinclude's file exists, its ``:pyobject:`` is defined there and its line markers occur in it
    (the book build would otherwise warn, and `-W` fail)."""
    for path, options in _literalincludes(_read(name)):
        assert path.resolve().is_file(), f"{name}: literalinclude of a missing file {path}"
        assert path.resolve().is_relative_to(ROOT / "udalib"), f"{name}: {path} is not library code"
        if "pyobject" in options:
            assert _defines(path, options["pyobject"]), f"{name}: {path.name} defines no {options['pyobject']}"
        for marker in ("start-after", "start-at", "end-before", "end-at"):
            if marker in options:
                assert options[marker] in path.read_text(), f"{name}: {options[marker]!r} not in {path.name}"


@pytest.mark.parametrize("name", sorted(METHOD_CODE))
def test_method_chapters_show_their_code_statically(name):
    """The method's losses and training step are rendered from the library file (readable without executing the
    notebook), not printed by a code cell."""
    shown = {options.get("pyobject") for _, options in _literalincludes(_read(name))}
    missing = METHOD_CODE[name] - shown
    assert not missing, f"{name}: no literalinclude of {sorted(missing)}"


# -- no block of code shared between chapters --------------------------------------------------------------------

SHARED_BLOCK = 6  # consecutive non-blank lines of one code cell
_STRING = re.compile(r"""[rRbBfFuU]{0,2}("([^"\\\n]|\\.)*"|'([^'\\\n]|\\.)*')""")
_NUMBER = re.compile(r"\b\d+(\.\d*)?(e-?\d+)?\b")


def _shape(line: str) -> str:
    """A code line with string and number literals replaced, comments and whitespace dropped: lines that differ
    only in labels, messages, constants or spacing have the same shape."""
    line = _STRING.sub("S", line).split("#", 1)[0]
    return "".join(_NUMBER.sub("N", line).split())


def _blocks(nb, n: int = SHARED_BLOCK) -> set[tuple[str, ...]]:
    """Every run of `n` consecutive non-blank, non-comment lines (by shape) inside one code cell after the
    parameters cell."""
    found = set()
    for cell in _body_cells(nb):
        lines = [s for s in (_shape(line) for line in cell.source.splitlines()) if s]
        found |= {tuple(lines[i : i + n]) for i in range(len(lines) - n + 1)}
    return found


def shared_blocks(names: list[str] = CHAPTERS, n: int = SHARED_BLOCK) -> dict[tuple[str, str], list[tuple]]:
    """{(chapter, chapter): blocks of `n` same-shape lines both have}; empty when the chapters share none."""
    blocks = {name: _blocks(_read(name), n) for name in names}
    return {(a, b): sorted(blocks[a] & blocks[b]) for a, b in itertools.combinations(names, 2) if blocks[a] & blocks[b]}


def test_no_code_block_shared_between_chapters():
    """Scaffolding repeated across chapters goes into ``udalib/chapter.py``; run this file as a script to list
    the shared blocks."""
    shared = shared_blocks()
    report = [
        f"{a} and {b} share {len(bs)} block(s), e.g.\n    " + "\n    ".join(bs[0]) for (a, b), bs in shared.items()
    ]
    assert not shared, "\n".join(report)


def test_the_shared_block_check_finds_a_copied_block():
    cell = "\n".join(f'x{i} = f("label {i}", {i})' for i in range(SHARED_BLOCK))
    nb_a, nb_b = nbformat.v4.new_notebook(), nbformat.v4.new_notebook()
    nb_a.cells = [nbformat.v4.new_code_cell(cell)]
    nb_b.cells = [nbformat.v4.new_code_cell("y = 1\n\n" + cell.replace("label", "other label").replace("f(", "f( "))]
    assert _blocks(nb_a) & _blocks(nb_b)
    nb_b.cells = [nbformat.v4.new_code_cell(cell.replace("x3 =", "z3 ="))]
    assert not _blocks(nb_a) & _blocks(nb_b)


if __name__ == "__main__":
    for (a, b), bs in shared_blocks().items():
        print(f"{a} ~ {b}: {len(bs)} shared block(s) of {SHARED_BLOCK} lines")
        for line in bs[0]:
            print("    " + line)
    print("no shared blocks" if not shared_blocks() else "")


# -- measured numbers come from the records, never typed by hand ---------------------------------------------------

#: A number that looks measured: a decimal followed by "mIoU", "points" or "%", points counted in words, or a time
#: (a number, or one counted in words, followed by "min", "minutes", "s", "seconds", "h" or "hours").
_WORDS = r"\b(?:one|two|three|four|five|six|seven|eight|nine|ten)\b(?:\s+(?:to|or)\s+\w+)?"
MEASURED = re.compile(
    r"\d+\.\d+\s*(?:mIoU|points?\b|%)"
    rf"|{_WORDS}\s+points?\b"
    r"|\b\d+(?:[.,]\d+)?(?:\s?(?:minutes?|min|seconds?|hours?)|\s[sh])\b"  # "1990s" is a decade, "5 s" a time
    rf"|{_WORDS}\s+(?:minutes?|seconds?|hours?)\b",
    re.IGNORECASE,
)
#: Where such a number may stand: fenced code, display and inline math, glue roles, inline code, table rows.
_ALLOWED = [
    re.compile(r"```.*?```", re.S),
    re.compile(r"\$\$.*?\$\$", re.S),
    re.compile(r"\{glue(?::\w+)?\}`[^`]*`"),
    re.compile(r"`[^`]*`"),
    re.compile(r"\$[^$\n]*\$"),
    re.compile(r"^\s*\|.*$", re.M),
]


def hand_typed_numbers(markdown: str) -> list[str]:
    """The measured-looking numbers of a Markdown cell outside the places they may stand."""
    for allowed in _ALLOWED:
        markdown = allowed.sub(" ", markdown)
    return [m.group(0) for m in MEASURED.finditer(markdown)]


def test_the_prose_check_finds_hand_typed_numbers_and_allows_the_rest():
    assert hand_typed_numbers("AdvEnt gains 7.9 mIoU here, and 53.2 % of the gap.") == ["7.9 mIoU", "53.2 %"]
    assert hand_typed_numbers("All three gain five to eight points; LS-GAN spreads over three points.") == [
        "five to eight points",
        "three points",
    ]
    allowed = (
        "It gains {glue:text}`gain:.1f` mIoU, $0.5 \\%$ in math, `3.2 mIoU` in code.\n"
        "| AdvEnt | 43.8 mIoU |\n```\n45.5 mIoU\n```\n$$\n1.0\\%\n$$"
    )
    assert hand_typed_numbers(allowed) == []
    times = "It took 6.0 minutes, about one minute, 14.5 min, 28 s, 2 h or two to three hours; in 2019s no."
    assert hand_typed_numbers(times) == ["6.0 minutes", "one minute", "14.5 min", "28 s", "2 h", "two to three hours"]


@pytest.mark.parametrize("name", CHAPTERS)
def test_no_measured_number_is_typed_by_hand(name):
    found = {
        i: hand_typed_numbers(cell.source)
        for i, cell in enumerate(_read(name).cells)
        if cell.cell_type == "markdown" and hand_typed_numbers(cell.source)
    }
    assert not found, f"{name}: state measured numbers through the records (glue or results.findings): {found}"


#: The README's numbers of the MEASURED kind that may stand: each is a setting, or a measurement whose test keeps it
#: equal to the file it is read from.
README_ALLOWED = [
    # a setting: pyproject.toml's pytest-timeout per test
    re.compile(r"pytest-timeout:\s+120\s+s"),
    # a setting: book/build.py's default cell time limit
    re.compile(r"default\s+1,800\s+s\s+per\s+cell"),
    # results/quick/source_only.json, kept equal by tests/test_results.py (the quick schedule's recorded time)
    re.compile(r"\([\d.]+\s+minutes\s+in\s+the\s+fastest\s+of\s+the\s+runs\s+recorded\s+in"),
    # benchmarks/data_loading.json's step_s, kept equal by the test below
    re.compile(r"a\s+GPU\s+step\s+of\s+[\d.]+\s+s\b"),
]


def test_no_measured_number_is_typed_by_hand_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    for allowed in README_ALLOWED:
        assert allowed.search(readme), f"README_ALLOWED names a sentence the README no longer has: {allowed.pattern}"
        readme = allowed.sub(" ", readme)
    found = hand_typed_numbers(readme)
    assert not found, f"README.md: read these from a record or benchmark file (and test it), or drop them: {found}"


def test_the_readme_quotes_the_data_loading_benchmarks_step_time():
    report = json.loads((ROOT / "benchmarks" / "data_loading.json").read_text())
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert f"a GPU step of {report['step_s']} s" in readme
