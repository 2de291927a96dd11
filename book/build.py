"""Build the book: execute its pages on the quick preset, then render the HTML with jupyter-book.

    python book/build.py            # every page executed (or taken from the cache); HTML in _build/html
    python book/build.py --fast     # CI: only the pages that train nothing are executed, the rest render
                                    # without outputs; a few minutes

Both fail (exit 1, ``_build/html`` removed) on any cell error, timeout, dead kernel or Sphinx warning, so a page
with a traceback or a half-run notebook is never published. Steps:

1. **Static files.** ``npm ci`` in ``book/`` when ``book/node_modules`` is missing, then the MathJax and
   ipywidgets-embedding files the pages load are copied into ``book/_vendor`` (served as ``_static/mathjax`` and
   ``_static/widgets``): a page needs no network when it is read.
2. **Execution.** Every notebook page of ``_toc.yml`` runs in a fresh kernel (nbclient; widget state stored,
   so widgets work in the page without a kernel), one cell after another with its progress printed, in its
   own folder, with no GPU visible (the quick preset on the CPU, as on a reader's laptop). A page is taken
   from the cache in ``_build/executed`` instead when its code cells, the ``udalib`` sources and, for a page
   that reads the records, every file under ``results/`` are unchanged; a new record therefore re-executes
   the pages that quote records, and no table goes stale. ``--fast`` executes only ``ALWAYS_EXECUTED``. The cell
   time limit and the error policy are jupyter-book's own ``execute`` settings in ``_config.yml`` (``timeout``,
   ``allow_errors``). jupyter-book does not execute itself (``execute_notebooks: off``): its cache (jupyter-cache)
   keys a page by its code cells alone, so a change to ``udalib`` or a new record would leave pages stale, and it
   reports a page, not a cell, so a 25-minute training cell would run without a sign of life.
3. **Rendering.** A staging tree ``_build/stage`` holds the executed copies beside links to the sources, and
   ``jupyter-book build`` renders it (``execute_notebooks: off``; ``-W -n --keep-going``) into ``_build/html``.
   The notebooks in ``notebooks/`` are never written to: they stay without outputs.

A full build (no ``--fast``) also records each page's execution wall time in ``book/chapter_times.json``,
which the teachers' page reads. ``UDABOOK_CACHE`` (the shared stages, default ``~/.cache/udabook``) is used as
the chapters use it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import nbformat
import yaml
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
EXECUTED = BUILD / "executed"  # executed copies and their cache keys, one pair per page
STAGE = BUILD / "stage"
HTML = BUILD / "html"
TIMES = ROOT / "book" / "chapter_times.json"
VENDOR = ROOT / "book" / "_vendor"

# Pages that train nothing: they read the records or print, so even the fast build executes them.
ALWAYS_EXECUTED = ("notebooks/results", "book/cli", "book/teachers")
# Files a page can read besides its own cells: the library and, for pages that quote them, the records.
LIBRARY_GLOB = "udalib/**/*.py"
RESULTS_DIR = "results"
HEARTBEAT_S = 60  # how often a long cell reports that it is still running

# What the pages load from book/node_modules, copied as (package path, destination under _static).
STATIC_FILES = (
    ("mathjax/es5/tex-chtml.js", "mathjax/tex-chtml.js"),
    ("mathjax/es5/input/tex/extensions", "mathjax/input/tex/extensions"),  # \boldsymbol etc., loaded on use
    ("mathjax/es5/output/chtml/fonts/woff-v2", "mathjax/output/chtml/fonts/woff-v2"),
    ("mathjax/es5/ui", "mathjax/ui"),  # the right-click menu's lazily loaded parts
    ("mathjax/es5/a11y", "mathjax/a11y"),
    ("requirejs/require.js", "widgets/require.js"),
    ("@jupyter-widgets/html-manager/dist/embed-amd.js", "widgets/embed-amd.js"),
)
STAGE_SKIPPED = ("node_modules", "__pycache__", ".ipynb_checkpoints")  # large or irrelevant to Sphinx
WIDGET_ASSET_SUFFIXES = (".woff", ".woff2", ".ttf", ".eot", ".svg")  # embed-amd.js's fonts, beside it


class BuildError(RuntimeError):
    """A step of the build failed; the message names the page or file."""


@dataclass(frozen=True)
class Page:
    """A page of the table of contents: its docname (``notebooks/sdca``) and source file."""

    docname: str
    path: Path

    @property
    def is_notebook(self) -> bool:
        return self.path.suffix == ".ipynb"


def toc_docnames(toc: dict) -> list[str]:
    """Docnames of a jupyter-book ``_toc.yml`` (root, parts, chapters, sections), in reading order."""
    names = [toc["root"]]

    def walk(entries: Iterable[dict]) -> None:
        for entry in entries:
            if "file" in entry:
                names.append(entry["file"])
            for key in ("parts", "chapters", "sections"):
                walk(entry.get(key, ()))

    for key in ("parts", "chapters"):
        walk(toc.get(key, ()))
    return names


def toc_pages(root: Path = ROOT) -> list[Page]:
    """The pages `root`/_toc.yml lists, each resolved to its ``.ipynb`` or ``.md`` file."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    pages = []
    for name in toc_docnames(toc):
        stem = name.removesuffix(".ipynb").removesuffix(".md")
        found = [root / f"{stem}{ext}" for ext in (".ipynb", ".md") if (root / f"{stem}{ext}").is_file()]
        if not found:
            raise BuildError(f"_toc.yml lists {name!r}, but neither {stem}.ipynb nor {stem}.md exists")
        pages.append(Page(stem, found[0]))
    return pages


def files_digest(paths: Iterable[Path], root: Path) -> str:
    """SHA-256 over the relative names and contents of `paths` (order-independent)."""
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def library_digest(root: Path = ROOT) -> str:
    return files_digest(root.glob(LIBRARY_GLOB), root)


def results_digest(root: Path = ROOT) -> str:
    return files_digest((p for p in (root / RESULTS_DIR).rglob("*") if p.is_file()), root)


def reads_results(nb: nbformat.NotebookNode) -> bool:
    """Whether a notebook quotes the records: it imports ``udalib.results`` or names the ``results/`` folder."""
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    return "results" in code


def reads_times(nb: nbformat.NotebookNode) -> bool:
    """Whether a notebook reads ``book/chapter_times.json`` (the teachers' page): it runs after the others."""
    return any(TIMES.name in c.source for c in nb.cells if c.cell_type == "code")


def cache_key(nb: nbformat.NotebookNode, *, library: str, results: str, timeout: int, times: str = "") -> str:
    """What an executed copy depends on: the code cells, the kernel, the library and, for the pages that read
    them, the records and the chapter times."""
    h = hashlib.sha256()
    for cell in nb.cells:
        if cell.cell_type == "code":
            h.update(cell.source.encode() + b"\0")
    h.update(nb.metadata.get("kernelspec", {}).get("name", "python3").encode())
    read = (results if reads_results(nb) else "", times if reads_times(nb) else "")
    h.update(f"\0{library}\0{read[0]}\0{read[1]}\0{timeout}".encode())
    return h.hexdigest()


def times_digest() -> str:
    return hashlib.sha256(TIMES.read_bytes()).hexdigest() if TIMES.is_file() else ""


def kernel_env() -> dict[str, str]:
    """The environment a page runs in: ``udalib`` importable from this checkout, no GPU (the quick preset)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), env.get("PYTHONPATH"))))
    env["CUDA_VISIBLE_DEVICES"] = ""
    # inline figures even where the shell exports MPLBACKEND=Agg (as CI does), or plt.show() would draw nothing
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    return env


class ProgressClient(NotebookClient):
    """An nbclient that prints ``page: cell i/n`` as each code cell starts and its time when it ends."""

    def __init__(self, nb: nbformat.NotebookNode, label: str, **kwargs) -> None:
        super().__init__(nb, on_cell_start=self._started, on_cell_executed=self._finished, **kwargs)
        self.label = label
        self.code_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
        self.t0 = time.monotonic()
        self.cell_t0 = self.t0
        self.running: int | None = None
        self.stop = threading.Event()

    def _position(self, cell_index: int) -> str:
        return f"{self.label}: cell {self.code_cells.index(cell_index) + 1}/{len(self.code_cells)}"

    def _started(self, cell, cell_index: int) -> None:
        if cell.cell_type != "code":  # nbclient calls the hooks for every cell
            return
        self.running, self.cell_t0 = cell_index, time.monotonic()
        print(f"{self._position(cell_index)} ...", flush=True)

    def _finished(self, cell, cell_index: int, execute_reply) -> None:
        if cell.cell_type != "code":
            return
        now = time.monotonic()
        self.running = None
        print(f"{self._position(cell_index)} done in {now - self.cell_t0:.1f} s ({now - self.t0:.0f} s)", flush=True)

    def _heartbeat(self) -> None:
        while not self.stop.wait(HEARTBEAT_S):
            if self.running is not None:
                print(
                    f"{self._position(self.running)} still running, {time.monotonic() - self.cell_t0:.0f} s", flush=True
                )

    def run(self) -> nbformat.NotebookNode:
        beat = threading.Thread(target=self._heartbeat, daemon=True)
        beat.start()
        try:
            return self.execute(env=kernel_env())
        finally:
            self.stop.set()


def error_outputs(nb: nbformat.NotebookNode) -> list[str]:
    """``cell N: Ename: value`` for every error output (a second guard besides nbclient's exceptions)."""
    return [
        f"cell {i}: {out.get('ename')}: {out.get('evalue')}"
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        for out in cell.get("outputs", ())
        if out.get("output_type") == "error"
    ]


def shown(path: Path) -> str:
    """`path` relative to the checkout when it is inside it (messages name files as a reader types them)."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def execution_settings(root: Path = ROOT) -> dict:
    """The ``execute`` section of `root`/_config.yml: jupyter-book's own keys, which this build executes with."""
    return yaml.safe_load((root / "_config.yml").read_text()).get("execute", {})


def execute(path: Path, label: str, timeout: int) -> tuple[nbformat.NotebookNode, float]:
    """Run the notebook at `path` in its own folder; its executed copy and wall time, or BuildError."""
    nb = nbformat.read(path, as_version=4)
    allow_errors = bool(execution_settings().get("allow_errors", False))
    client = ProgressClient(
        nb,
        label,
        timeout=timeout,
        kernel_name=nb.metadata.get("kernelspec", {}).get("name", "python3"),
        allow_errors=allow_errors,
        store_widget_state=True,
        resources={"metadata": {"path": str(path.parent)}},
    )
    t0 = time.monotonic()
    try:
        client.run()
    except CellTimeoutError as e:
        raise BuildError(f"{shown(path)}: a cell ran past {timeout} s (--timeout)\n{e}") from e
    except DeadKernelError as e:
        raise BuildError(f"{shown(path)}: the kernel died (out of memory?)\n{e}") from e
    except CellExecutionError as e:
        raise BuildError(f"{shown(path)}: a cell failed\n{e}") from e
    errors = [] if allow_errors else error_outputs(nb)
    if errors:
        raise BuildError(f"{shown(path)}: error outputs in " + "; ".join(errors))
    return nb, time.monotonic() - t0


def git_revision() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def provenance() -> dict:
    """Where and when a page was executed: the numbers of a time are meaningless without it."""
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": git_revision(),
        "cores": os.cpu_count(),
        "threads": int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)),
    }


def executed_page(page: Page, key: str, timeout: int, force: bool) -> tuple[nbformat.NotebookNode, dict]:
    """The executed notebook of `page` (from the cache when its key matches) and its record."""
    copy, record_file = EXECUTED / f"{page.docname}.ipynb", EXECUTED / f"{page.docname}.json"
    if not force and copy.is_file() and record_file.is_file():
        record = json.loads(record_file.read_text())
        if record.get("key") == key:
            print(f"{page.docname}: unchanged, executed copy from {record['date']} ({record['seconds']:.0f} s)")
            return nbformat.read(copy, as_version=4), record
    print(f"{page.docname}: executing", flush=True)
    nb, seconds = execute(page.path, page.docname, timeout)
    record = {"key": key, "seconds": round(seconds, 1), **provenance()}
    copy.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, copy)
    record_file.write_text(json.dumps(record, indent=2) + "\n")
    print(f"{page.docname}: executed in {seconds:.0f} s", flush=True)
    return nb, record


def vendor_static(root: Path = ROOT) -> None:
    """Copy MathJax and the widget embedder from ``book/node_modules`` (``npm ci`` first if missing)."""
    modules = root / "book" / "node_modules"
    if not modules.is_dir():
        if shutil.which("npm") is None:
            raise BuildError("npm not found: it installs MathJax and the widget embedder (book/package.json)")
        print("npm ci (book/package.json)", flush=True)
        subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=root / "book", check=True)
    shutil.rmtree(VENDOR, ignore_errors=True)
    for src, dst in STATIC_FILES:
        source, target = modules / src, VENDOR / dst
        if not source.exists():
            raise BuildError(f"{source} missing: run `npm ci` in book/ (book/package-lock.json)")
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, target)
    dist = modules / "@jupyter-widgets" / "html-manager" / "dist"
    for asset in dist.iterdir():
        if asset.suffix in WIDGET_ASSET_SUFFIXES:
            shutil.copy2(asset, VENDOR / "widgets" / asset.name)


def footcite_problems(pages: list[Page]) -> list[str]:
    """Pages that cite with ``{footcite}`` but have no ``{footbibliography}``: their citations link nowhere.

    ``book/_ext/footcite_footnotes.py`` filters MyST's warning that every ``{footcite}`` raises before
    sphinxcontrib-bibtex fills the footnotes in; this is the case that warning would rightly have reported.
    """
    problems = []
    for page in pages:
        text = page.path.read_text(encoding="utf-8")
        if "{footcite" in text and "{footbibliography}" not in text:
            problems.append(f"{shown(page.path)} cites with {{footcite}} but has no {{footbibliography}}")
    return problems


def staged_config(fast: bool) -> dict:
    """``_config.yml`` as the staging tree gets it: in the fast build, pages rendered without outputs have no
    glued values, so only there myst-nb's missing-glue warning is expected and suppressed."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    if fast:
        config["sphinx"]["config"].setdefault("suppress_warnings", []).append("mystnb.glue")
    return config


def stage(pages: list[Page], executed: dict[str, nbformat.NotebookNode], fast: bool) -> None:
    """``_build/stage``: the book's sources as links, with each notebook page replaced by its executed copy
    (or copied as it is, without outputs, when it was not executed)."""
    shutil.rmtree(STAGE, ignore_errors=True)
    STAGE.mkdir(parents=True)
    (STAGE / "_config.yml").write_text(yaml.safe_dump(staged_config(fast), sort_keys=False))
    for name in ("_toc.yml", "udalib", RESULTS_DIR):
        (STAGE / name).symlink_to(ROOT / name)
    page_files = {page.path for page in pages if page.is_notebook}
    # folders holding pages are real folders (a notebook in them is replaced); everything else is a link
    page_dirs = {parent for page in pages for parent in page.path.parents if parent != ROOT and ROOT in parent.parents}
    for folder in sorted(page_dirs):
        target = STAGE / folder.relative_to(ROOT)
        target.mkdir(parents=True, exist_ok=True)
        for entry in folder.iterdir():
            if entry in page_files or entry in page_dirs or entry.name in STAGE_SKIPPED:
                continue
            (target / entry.name).symlink_to(entry)
    for page in pages:
        if page.is_notebook:
            copy = STAGE / page.path.relative_to(ROOT)
            if page.docname in executed:
                nbformat.write(with_outputs(nbformat.read(page.path, as_version=4), executed[page.docname]), copy)
            else:
                shutil.copy2(page.path, copy)


def with_outputs(source: nbformat.NotebookNode, executed: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The page as it is now with the outputs (and widget state) of its executed copy.

    The cache key covers the code cells only, so the prose may have changed since the copy was executed; its
    code cells are the same ones, in the same order, and take their outputs from it."""
    code = [c for c in source.cells if c.cell_type == "code"]
    ran = [c for c in executed.cells if c.cell_type == "code"]
    if [c.source for c in code] != [c.source for c in ran]:
        raise BuildError("an executed copy's code cells differ from its page's (the cache key should prevent it)")
    for cell, done in zip(code, ran, strict=True):
        cell.outputs, cell.execution_count = done.outputs, done.execution_count
    if "widgets" in executed.metadata:  # the widget state stored at execution: the page embeds it
        source.metadata["widgets"] = executed.metadata["widgets"]
    return source


def render() -> None:
    """jupyter-book on the staging tree, into ``_build/html``; any warning fails the build."""
    cmd = ["jupyter-book", "build", str(STAGE), "--path-output", str(ROOT), "--all", "-W", "-n", "--keep-going"]
    print(" ".join(cmd), flush=True)
    if subprocess.run(cmd, cwd=ROOT).returncode != 0:
        shutil.rmtree(HTML, ignore_errors=True)
        raise BuildError("jupyter-book reported warnings or errors (above); nothing published")


def times_document(records: dict[str, dict]) -> dict:
    """The content of book/chapter_times.json: each page's execution time with where and when it was measured
    (a page taken from the cache keeps the record of the build that executed it, so the file changes only when
    a page is executed again)."""
    keep = ("seconds", "date", "git", "cores", "threads")
    return {
        "about": "execution wall time of each page of the book on the quick preset, written by book/build.py",
        "chapters": {page: {k: record[k] for k in keep} for page, record in records.items()},
    }


def write_times(records: dict[str, dict]) -> None:
    TIMES.write_text(json.dumps(times_document(records), indent=2) + "\n")
    print(f"wrote {TIMES.relative_to(ROOT)}")


def build(fast: bool, timeout: int, force: bool, only: list[str] | None) -> None:
    pages = toc_pages()
    notebooks = [p for p in pages if p.is_notebook]
    if only:
        unknown = sorted(set(only) - {p.docname for p in notebooks})
        if unknown:
            raise BuildError(f"--only: not a notebook page of _toc.yml: {', '.join(unknown)}")
    problems = footcite_problems(pages)
    if problems:
        raise BuildError("; ".join(problems))
    to_run = [p for p in notebooks if (p.docname in only if only else not fast or p.docname in ALWAYS_EXECUTED)]
    full = not fast and not only
    shutil.rmtree(HTML, ignore_errors=True)
    vendor_static()
    library, results = library_digest(), results_digest()
    sources = {page.docname: nbformat.read(page.path, as_version=4) for page in to_run}
    # the pages that read the chapter times run last, after a full build has written them
    order = sorted(to_run, key=lambda page: reads_times(sources[page.docname]))
    executed, records = {}, {}
    times_written = False
    for i, page in enumerate(order, 1):
        nb = sources[page.docname]
        if full and reads_times(nb) and not times_written:
            write_times(records)  # every other page has run by now
            times_written = True
        print(f"[{i}/{len(order)}] {page.docname}", flush=True)
        key = cache_key(nb, library=library, results=results, timeout=timeout, times=times_digest())
        executed[page.docname], records[page.docname] = executed_page(page, key, timeout, force)
    if full and not times_written:
        write_times(records)
    stage(pages, executed, not full)
    render()
    print(f"HTML in {HTML.relative_to(ROOT)}/ ({len(executed)} of {len(notebooks)} notebook pages executed)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true", help="execute only " + ", ".join(ALWAYS_EXECUTED))
    parser.add_argument("--only", nargs="+", metavar="DOCNAME", help="execute only these pages (no times file)")
    parser.add_argument(
        "--timeout",
        type=int,
        default=int(execution_settings()["timeout"]),
        help="seconds per cell (default %(default)s, _config.yml's execute.timeout)",
    )
    parser.add_argument("--force", action="store_true", help="execute even the pages the cache holds")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.timeout <= 0:
        print("--timeout: must be a positive number of seconds", file=sys.stderr)
        return 2
    # A terminated build stops its kernel too: SystemExit unwinds through nbclient's cleanup.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    start = time.monotonic()
    try:
        build(args.fast, args.timeout, args.force, args.only)
    except BuildError as e:
        print(f"book build failed: {e}", file=sys.stderr)
        return 1
    print(f"book built in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
