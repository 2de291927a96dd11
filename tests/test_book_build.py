"""The book build's own logic (book/build.py): the table of contents, the cache key, the citation check, and
that a notebook with a failing cell stops the build. A kernel is started once; nothing is rendered."""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]


def _load_build():
    spec = importlib.util.spec_from_file_location("book_build", ROOT / "book" / "build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["book_build"] = module
    spec.loader.exec_module(module)
    return module


build = _load_build()


def _notebook(*code: str) -> nbformat.NotebookNode:
    nb = new_notebook(cells=[new_markdown_cell("# A page"), *(new_code_cell(c) for c in code)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def _key(nb: nbformat.NotebookNode, results: str = "r0", library: str = "l0") -> str:
    return build.cache_key(nb, library=library, results=results, timeout=60)


def test_toc_docnames_in_reading_order():
    toc = {
        "root": "book/intro",
        "parts": [
            {"caption": "A", "chapters": [{"file": "notebooks/a"}, {"file": "notebooks/b"}]},
            {"caption": "B", "chapters": [{"file": "book/api/index", "sections": [{"file": "book/api/x"}]}]},
        ],
    }
    assert build.toc_docnames(toc) == ["book/intro", "notebooks/a", "notebooks/b", "book/api/index", "book/api/x"]


def test_every_page_of_the_book_exists_and_the_fast_pages_are_in_it():
    names = {page.docname for page in build.toc_pages()}
    assert set(build.ALWAYS_EXECUTED) <= names


def test_cache_key_follows_records_only_for_pages_that_read_them():
    reader = _notebook("from udalib import results", "print(results.load('quick'))")
    other = _notebook("print(1 + 1)")
    assert _key(reader, results="r0") != _key(reader, results="r1")  # a new record re-executes the page
    assert _key(other, results="r0") == _key(other, results="r1")
    assert _key(other, library="l0") != _key(other, library="l1")  # so does a change in udalib
    edited = _notebook("print(1 + 2)")
    assert _key(other) != _key(edited)
    other.cells[0].source = "# A page, reworded"  # prose does not change what executing produces
    assert _key(other) == _key(_notebook("print(1 + 1)"))


def test_results_digest_changes_with_a_record(tmp_path):
    (tmp_path / "results" / "quick").mkdir(parents=True)
    record = tmp_path / "results" / "quick" / "advent.json"
    record.write_text('[{"miou": 30.0}]')
    before = build.results_digest(tmp_path)
    record.write_text('[{"miou": 31.0}]')
    assert build.results_digest(tmp_path) != before
    (tmp_path / "results" / "quick" / "minent.json").write_text("[]")
    assert len({before, build.results_digest(tmp_path)}) == 2


def test_footcite_without_footbibliography_is_reported(tmp_path):
    good, bad = tmp_path / "good.md", tmp_path / "bad.md"
    good.write_text("As shown{footcite}`a2020`.\n\n```{footbibliography}\n```\n")
    bad.write_text("As shown{footcite}`a2020`.\n")
    problems = build.footcite_problems([build.Page("good", good), build.Page("bad", bad)])
    assert len(problems) == 1 and "bad.md" in problems[0]


def test_no_page_of_the_book_cites_into_nowhere():
    """book/_ext/footcite_footnotes.py drops MyST's warning for {footcite} footnotes; this is what it would hide."""
    assert build.footcite_problems(build.toc_pages()) == []


def test_only_the_footcite_footnote_warning_is_filtered():
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    try:
        from footcite_footnotes import FootciteDefinitionFilter
    finally:
        sys.path.remove(str(ROOT / "book" / "_ext"))

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("sphinx.myst", logging.WARNING, "page.md", 1, message, None, None)

    keep = FootciteDefinitionFilter().filter
    assert not keep(record("No footnote definitions found for label: 'footcite-yang2020fda' [myst.footnote]"))
    assert keep(record("No footnote definitions found for label: 'mine' [myst.footnote]"))
    assert keep(record("Multiple footnote definitions found for label: 'footcite-a' [myst.footnote]"))


def test_the_cell_limit_and_errors_are_jupyter_books_execute_settings(tmp_path):
    (tmp_path / "_config.yml").write_text("execute:\n  timeout: 7\n  allow_errors: false\n")
    assert build.execution_settings(tmp_path) == {"timeout": 7, "allow_errors": False}
    book = build.execution_settings()
    assert build.build_parser().parse_args([]).timeout == book["timeout"] == 1800
    assert book["execute_notebooks"] == "off" and book["allow_errors"] is False


def test_a_failing_cell_fails_the_build(tmp_path):
    path = tmp_path / "broken.ipynb"
    nbformat.write(_notebook("x = 1", "raise ValueError('deliberately broken')", "y = 2"), path)
    with pytest.raises(build.BuildError, match="broken.ipynb: a cell failed"):
        build.execute(path, "broken", timeout=60)


def test_a_cell_past_the_timeout_fails_the_build(tmp_path):
    path = tmp_path / "slow.ipynb"
    nbformat.write(_notebook("import time\ntime.sleep(30)"), path)
    with pytest.raises(build.BuildError, match="slow.ipynb: a cell ran past 2 s"):
        build.execute(path, "slow", timeout=2)


def test_the_teachers_page_runs_after_the_times_it_reads():
    reader = _notebook("import json\ntimes = json.loads(open('chapter_times.json').read())")
    assert build.reads_times(reader) and not build.reads_times(_notebook("print(1)"))
    assert _key(reader) != build.cache_key(reader, library="l0", results="r0", timeout=60, times="t1")


def test_times_document_keeps_each_pages_provenance():
    record = {"key": "k", "seconds": 61.5, "date": "2026-01-01T00:00:00+00:00", "git": "abc", "cores": 2, "threads": 1}
    doc = build.times_document({"notebooks/data": record})
    assert doc["chapters"]["notebooks/data"] == {k: v for k, v in record.items() if k != "key"}


def test_a_cached_page_shows_its_current_prose_with_the_executed_outputs():
    ran = new_notebook(cells=[new_markdown_cell("old prose"), new_code_cell("print(1)")])
    ran.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    ran.cells[1].execution_count = 1
    ran.metadata["widgets"] = {"state": "kept"}
    now = new_notebook(cells=[new_markdown_cell("new prose"), new_code_cell("print(1)"), new_markdown_cell("more")])
    page = build.with_outputs(now, ran)
    assert [c.source for c in page.cells] == ["new prose", "print(1)", "more"]
    assert page.cells[1].outputs[0]["text"] == "1\n" and page.cells[1].execution_count == 1
    assert page.metadata["widgets"] == {"state": "kept"}
    with pytest.raises(build.BuildError, match="code cells differ"):
        build.with_outputs(new_notebook(cells=[new_code_cell("print(2)")]), ran)
