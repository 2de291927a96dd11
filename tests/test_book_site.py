"""The built book as a reader's browser shows it (book/check_site.py), and the checker's own logic on tiny pages.

The browser tests need the Debian Chromium (``/usr/bin/chromium`` or ``$UDABOOK_CHROMIUM``). Without it they skip
and say why, unless ``UDABOOK_REQUIRE_BROWSER`` is set (CI sets it), in which case they fail: CI cannot pass by
skipping the browser.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
# How CI builds the book: every page executed (this is where CI runs the chapters, once) or taken from the build's
# cache, with myst-nb's warnings (a missing glued number among them) failing the build; where the HTML lands; how
# long the build may take (every chapter trains its quick runs: about 18 minutes on 2 cores, more when loaded).
BUILD_COMMAND = [sys.executable, "book/build.py"]
BUILD_HTML = REPO / "_build" / "html"
BUILD_TIMEOUT_S = 60 * 60
TIMES = REPO / "book" / "chapter_times.json"


def _load(name: str) -> ModuleType:
    """A script of ``book/`` as a module (``book`` is not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "book" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


check_site = _load("check_site")
CHROMIUM = os.environ.get("UDABOOK_CHROMIUM", check_site.DEFAULT_CHROMIUM)


def require(missing: str | None) -> None:
    """Skip when something the browser check needs is missing, or fail if UDABOOK_REQUIRE_BROWSER is set."""
    if missing is None:
        return
    if os.environ.get("UDABOOK_REQUIRE_BROWSER"):
        pytest.fail(missing + "; UDABOOK_REQUIRE_BROWSER is set, so the browser check may not be skipped")
    pytest.skip(missing)


def require_browser() -> None:
    """Chromium is installed (or the test skips, see ``require``)."""
    if not Path(CHROMIUM).is_file():
        require(f"no Chromium at {CHROMIUM} (apt-get install chromium chromium-driver, or set UDABOOK_CHROMIUM)")


# ------------------------------------------------------------------------------------------------- the real book


@pytest.mark.slow
@pytest.mark.timeout(BUILD_TIMEOUT_S + 300)
def test_built_book_passes_the_browser_check() -> None:
    """Build the book as CI does, every chapter executed, and open every page offline: no problem on any page."""
    require_browser()
    if importlib.util.find_spec("jupyter_book") is None:
        require('jupyter-book is not installed (pip install -e ".[book]")')
    committed_times = TIMES.read_bytes()
    try:  # a full build writes this machine's page times; the committed ones stay those of the build that made them
        build = subprocess.run(
            BUILD_COMMAND, cwd=REPO, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
        )
    finally:
        TIMES.write_bytes(committed_times)
    assert build.returncode == 0, f"{' '.join(BUILD_COMMAND[1:])} failed:\n{build.stdout[-4000:]}{build.stderr[-4000:]}"
    pages, findings = check_site.check_site(BUILD_HTML, chromium=CHROMIUM)
    assert any(p.startswith("notebooks/") for p in pages), f"no chapter pages in {BUILD_HTML}"
    assert not findings, "\n" + check_site.format_report(pages, findings)


# The settings of the book's _config.yml that make a page work offline: its static files and how it loads them.
STATIC_SETTINGS = ("html_static_path", "html_css_files", "html_context", "mathjax_path", "nb_ipywidgets_js")
SLIDER_CELL = """import numpy as np
from udalib.widgets import frame_slider

frame_slider([np.full((24, 32, 3), v, np.uint8) for v in (0, 120, 250)], ["dark", "grey", "light"], "shade")"""


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_frame_slider_switches_frames_in_a_built_page(tmp_path: Path) -> None:
    """A chapter's kernel-less slider, executed and rendered with the book's own static settings, works offline.

    A page of one slider checks the slider's parts apart from any chapter: udalib.widgets.frame_slider, its saved
    widget state, the embedder book/build.py vendors, the browser.
    """
    require_browser()
    if importlib.util.find_spec("jupyter_book") is None:
        require('jupyter-book is not installed (pip install -e ".[book]")')
    import nbformat
    import yaml
    from nbclient import NotebookClient

    _load("build").vendor_static()
    notebook = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        cells=[nbformat.v4.new_markdown_cell("# A slider"), nbformat.v4.new_code_cell(SLIDER_CELL)],
    )
    NotebookClient(notebook, timeout=120, kernel_name="python3", store_widget_state=True).execute()
    (tmp_path / "notebooks").mkdir()
    nbformat.write(notebook, tmp_path / "notebooks" / "slider.ipynb")
    (tmp_path / "intro.md").write_text("# Intro\n\n[The slider](notebooks/slider.ipynb)\n")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: notebooks/slider\n")
    book = yaml.safe_load((REPO / "_config.yml").read_text())["sphinx"]["config"]
    settings = {key: book[key] for key in STATIC_SETTINGS if key in book}
    settings["html_static_path"] = [str(REPO / path) for path in settings.get("html_static_path", [])]
    config = {"title": "slider", "execute": {"execute_notebooks": "off"}, "sphinx": {"config": settings}}
    # Key order matters: nb_ipywidgets_js loads require.js before the embedder.
    (tmp_path / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    build = subprocess.run(
        ["jupyter-book", "build", str(tmp_path), "-W", "-n"], capture_output=True, text=True, timeout=600, check=False
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    html = tmp_path / "_build" / "html"
    pages, findings = check_site.check_site(html, chromium=CHROMIUM)
    assert check_site.widget_pages(html, pages) == ["notebooks/slider.html"]
    assert not findings, "\n" + check_site.format_report(pages, findings)


# --------------------------------------------------------------------------------------- the checker, tiny pages

PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>t</title>
<style>body {{ margin: 0 }} article {{ width: 600px; padding: 0 20px }}</style></head>
<body><article class="bd-article">{body}</article></body></html>"""
# A transparent 1x1 PNG.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)
# A widget page as the embedder leaves it: a slider whose keyboard step switches the visible frame of a stack.
WIDGET = """<script type="application/vnd.jupyter.widget-state+json">{{}}</script>
<div class="widget-vbox"><div class="widget-slider"><label class="widget-label">frame</label>
<input type="range" min="0" max="1" value="0" id="s"></div>
<div class="widget-box"><img id="f0" src="a.png"><img id="f1" src="b.png" style="display: none"></div></div>
<script>document.getElementById('s').addEventListener('input', (e) => {{
  if ({switches}) {{ f0.style.display = e.target.value === '0' ? '' : 'none';
                    f1.style.display = e.target.value === '1' ? '' : 'none'; }} }});</script>"""


def write_site(root: Path, pages: dict[str, str]) -> Path:
    """A tiny built book: each page's body inside an article of 600 px, and two loadable images."""
    for name, body in pages.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(PAGE.format(body=body), encoding="utf-8")
    (root / "a.png").write_bytes(PNG)
    (root / "b.png").write_bytes(PNG)
    return root


def kinds(findings: list) -> set[tuple[str, str]]:
    return {(f.page, f.check) for f in findings}


def test_links_report_missing_files_and_fragments(tmp_path: Path) -> None:
    root = write_site(
        tmp_path,
        {
            "index.html": '<a href="gone.html">x</a> <a href="sub/page.html#nope">y</a>'
            ' <a href="sub/page.html#here">ok</a>'
            ' <a href="#top">ok</a> <a href="https://example.org/elsewhere.html">external</a>'
            ' <a href="sub/">dir</a> <a href="mailto:a@b.c">mail</a> <span id="top"></span>',
            "sub/page.html": '<h1 id="here">h</h1> <a href="../index.html#top">back</a> <a name="old"></a>'
            ' <a href="#old">anchor by name</a>',
            "sub/index.html": "",
        },
    )
    findings = check_site.check_links(root, check_site.html_pages(root))
    details = sorted(f.detail for f in findings)
    assert kinds(findings) == {("index.html", "link")}
    assert len(details) == 2
    assert "no file gone.html" in details[0]
    assert "no element with id 'nope' on sub/page.html" in details[1]


def test_redirect_pages_are_recognised(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=book/intro.html" />')
    assert check_site.is_redirect(tmp_path, "index.html")
    findings = check_site.check_links(tmp_path, ["index.html"])
    assert [f.detail for f in findings] == ["'book/intro.html': no file book/intro.html in the build"]


def test_console_allow_list_entries_have_reasons() -> None:
    for pattern, reason in check_site.ALLOWED_CONSOLE:
        assert pattern and len(reason) > 20
    assert not check_site.console_allowed("Uncaught TypeError: x is undefined")


@dataclass
class CheckedSite:
    root: Path
    pages: list[str]
    findings: list

    def on(self, page: str) -> list[tuple[str, str]]:
        """The (check, detail) pairs reported on one page, sorted."""
        return sorted((f.check, f.detail) for f in self.findings if f.page == page)

    def report(self) -> str:
        return "\n" + check_site.format_report(self.pages, self.findings)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> CheckedSite:
    """One tiny site, each page with known problems (or none), checked once in the browser."""
    require_browser()
    root = tmp_path_factory.mktemp("site")
    write_site(
        root,
        {
            # Exactly the five problems the brief names, and nothing else wrong.
            "broken.html": '<a href="gone.html">dead link</a> <a href="fine.html#nope">missing fragment</a>'
            ' <img src="corrupt.png"> <table style="width: 800px"><tr><td>wide</td></tr></table>'
            ' <script>console.error("boom")</script>',
            # Nothing wrong: a long code line that scrolls in its own box, typeset math, a fitting table.
            "fine.html": '<pre style="overflow-x: auto">' + "x" * 400 + "</pre>"
            '<span class="math"><mjx-container>m</mjx-container></span> <table><tr><td>t</td></tr></table>'
            ' <img src="a.png">',
            "code.html": '<pre style="overflow-x: visible">' + "y" * 100 + "</pre>",
            "math.html": '<span class="math">\\(x^2\\)</span>',
            "offline.html": '<script src="https://cdn.example.org/lib.js"></script>',
            "thrown.html": "<script>throw new Error('kaput')</script>",
            "widget.html": WIDGET.format(switches="true"),
            "dead_widget.html": WIDGET.format(switches="false"),
            "unrendered_widget.html": '<script type="application/vnd.jupyter.widget-state+json">{}</script>',
            "notebooks/chapter.html": "<p>a chapter</p>",
        },
    )
    (root / "corrupt.png").write_text("not a png")
    pages, findings = check_site.check_site(root, chromium=CHROMIUM, screenshots=root / "shots")
    return CheckedSite(root, pages, findings)


def test_browser_check_reports_exactly_the_planted_problems(site: CheckedSite) -> None:
    found = site.on("broken.html")
    assert [check for check, _ in found] == ["console", "image", "layout", "link", "link"], site.report()
    detail = dict(found)
    assert "boom" in detail["console"]
    assert detail["image"] == "not loaded: corrupt.png"
    assert "table <table>" in detail["layout"] and "800 px wide" in detail["layout"]
    assert "ends 200 px right of the 600 px content column" in detail["layout"]


def test_browser_check_passes_clean_pages(site: CheckedSite) -> None:
    for page in ("fine.html", "widget.html", "notebooks/chapter.html"):
        assert page in site.pages
        assert site.on(page) == [], site.report()


def test_browser_check_reports_each_other_kind(site: CheckedSite) -> None:
    code = site.on("code.html")
    assert [check for check, _ in code] == ["layout"] and "does not scroll" in code[0][1], site.report()
    assert site.on("math.html") == [("math", '1 of 1 math elements not typeset by MathJax (first: "\\(x^2\\)")')]
    assert site.on("offline.html") == [("network", "request to https://cdn.example.org/lib.js (blocked: no network)")]
    assert site.on("thrown.html") == [("console", "uncaught Error: kaput")]
    assert site.on("dead_widget.html") == [("widget", "moving slider 0 (frame) did not change the figure")]
    assert site.on("unrendered_widget.html") == [("widget", "the page embeds widget state but no slider was rendered")]


def test_widget_pages_are_found(site: CheckedSite) -> None:
    assert check_site.widget_pages(site.root, site.pages) == [
        "dead_widget.html",
        "unrendered_widget.html",
        "widget.html",
    ]


def test_screenshots_are_taken_of_chapter_pages_only(site: CheckedSite) -> None:
    assert sorted(p.name for p in (site.root / "shots").iterdir()) == ["chapter.jpg"]
    assert (site.root / "shots" / "chapter.jpg").read_bytes()[:3] == b"\xff\xd8\xff"  # a JPEG


def test_report_names_page_check_and_detail() -> None:
    findings = [check_site.Finding("a.html", "link", "'x.html': no file x.html in the build")]
    assert check_site.format_report(["a.html", "b.html"], findings).splitlines() == [
        "a.html  [link]  'x.html': no file x.html in the build",
        "2 pages checked: 1 problems on 1 pages",
    ]
    assert check_site.format_report(["a.html"], []) == "1 pages checked: no problems"


def test_a_page_that_cannot_be_served_is_one_finding(tmp_path: Path) -> None:
    require_browser()
    findings = check_site.check_pages_in_browser(tmp_path, ["vanished.html"], chromium=CHROMIUM)
    assert findings == [check_site.Finding("vanished.html", "load", "HTTP 404 for the page itself")]
