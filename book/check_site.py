"""Open every page of the built book in headless Chromium, offline, and check what a reader sees.

Usage (from the repository root, after building the book into ``_build/html``)::

    python book/check_site.py                      # check _build/html
    python book/check_site.py /tmp/book/_build/html
    python book/check_site.py --screenshots book/images/screenshots   # also refresh the committed screenshots

The pages are served from a local ``http.server`` on 127.0.0.1 and opened at 1280x900 in the Debian Chromium
(``/usr/bin/chromium``, or ``--chromium PATH`` / ``UDABOOK_CHROMIUM``) through Playwright; every request that does
not go to that server is aborted and reported, so a page that needs the internet fails here as it would for a
reader offline. Per page it checks:

- math: every ``.math`` element holds an ``mjx-container`` (MathJax typeset it) and no ``mjx-merror`` appears;
- images: every ``<img>`` loaded (``complete`` and ``naturalWidth > 0``);
- console: no JavaScript console error or uncaught page error outside ``ALLOWED_CONSOLE``;
- layout: no display equation, table, figure or image ends right of the article's content box, a ``pre`` whose
  code is wider than it scrolls (``overflow-x: auto/scroll``) instead of widening the page, and the page itself
  does not scroll sideways;
- links: every relative ``href`` names a file of the build, and every ``#fragment`` an id on the target page;
- widgets: on a page that embeds ipywidgets state, a slider is rendered, and moving each slider one step with
  the keyboard changes the figure shown (the visible image, e.g. the child a ``Stack`` shows).

``--screenshots DIR`` saves a full-page JPEG of every chapter page (a page built from ``notebooks/``; the file is
named after the page, e.g. ``sdca.jpg``). The report lists one line per problem (page, check, detail); the exit
status is 1 when there is any, 0 otherwise.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BUILD = REPO / "_build" / "html"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1280, "height": 900}
# Pages built from these folders are the chapters that get a screenshot.
CHAPTER_DIRS = ("notebooks/",)
# Build folders that hold assets and sources, not pages a reader navigates to.
ASSET_DIRS = ("_static/", "_sources/", "_images/", "_downloads/")
# Console messages a reader cannot act on and that do not mean a broken page: (regular expression, why allowed).
# Keep this short; every entry needs its reason.
ALLOWED_CONSOLE: tuple[tuple[str, str], ...] = (
    (
        r"Identifier 'THEBE_JS_URL' has already been declared",
        "sphinx-thebe 0.3 adds its inline config script (const THEBE_JS_URL, ...) twice to every page; the second"
        " copy fails to redeclare the constants the first one set, so thebe's configuration is intact",
    ),
)
# A slider as ipywidgets 8 renders it (noUiSlider handle), as ipywidgets 7 did (jQuery UI), or a plain range input.
SLIDER_SELECTOR = (
    ".widget-slider .noUi-handle, .widget-slider .ui-slider-handle, .widget-slider input[type=range], [role=slider]"
)
WIDGET_STATE_SELECTOR = 'script[type="application/vnd.jupyter.widget-state+json"]'
PAGE_TIMEOUT_MS = 30_000
WIDGET_TIMEOUT_MS = 10_000
# A pixel of slack: layout rounds sub-pixel edges.
TOLERANCE_PX = 1


@dataclass(frozen=True, order=True)
class Finding:
    """One problem: the page (relative to the build), the check that failed and what exactly is wrong."""

    page: str
    check: str
    detail: str


# --------------------------------------------------------------------------------------------------- pages, links


class _PageParser(HTMLParser):
    """Collects a page's element ids, its links and whether it only redirects (``<meta http-equiv=refresh>``)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.hrefs: list[str] = []
        self.redirect: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value for name, value in attrs if value is not None}
        if "id" in values:
            self.ids.add(values["id"])
        if tag == "a" and "name" in values:
            self.ids.add(values["name"])
        if tag in ("a", "area") and "href" in values:
            self.hrefs.append(values["href"])
        if tag == "meta" and values.get("http-equiv", "").lower() == "refresh":
            _, _, url = values.get("content", "").partition("url=")
            self.redirect = url.strip() or None


def _parse(path: Path) -> _PageParser:
    parser = _PageParser()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return parser


def html_pages(root: Path) -> list[str]:
    """Every HTML page of the build, as POSIX paths relative to ``root``, sorted; asset folders are left out."""
    pages = (p.relative_to(root).as_posix() for p in root.rglob("*.html"))
    return sorted(p for p in pages if not p.startswith(ASSET_DIRS))


def is_redirect(root: Path, page: str) -> bool:
    """Whether the page only forwards the reader elsewhere (jupyter-book's root ``index.html``)."""
    return _parse(root / page).redirect is not None


def widget_pages(root: Path, pages: list[str]) -> list[str]:
    """The pages that embed ipywidgets state, i.e. the ones whose sliders the browser check moves."""
    marker = "application/vnd.jupyter.widget-state+json"
    return [page for page in pages if marker in (root / page).read_text(encoding="utf-8", errors="replace")]


def _internal_target(page: str, href: str) -> tuple[str, str] | None:
    """The (build-relative path, fragment) a link points to, or None for an external or non-file link."""
    parts = urlsplit(href)
    if parts.scheme or parts.netloc or href.startswith("//"):
        return None  # http(s), mailto, javascript, data: not part of the build
    path = unquote(parts.path)
    if not path:
        return page, unquote(parts.fragment)
    base = "" if path.startswith("/") else os.path.dirname(page)
    target = os.path.normpath(os.path.join(base, path.lstrip("/"))).replace(os.sep, "/")
    if path.endswith("/"):
        target += "/index.html"
    return target, unquote(parts.fragment)


def check_links(root: Path, pages: list[str]) -> list[Finding]:
    """Every relative link of every page names a file of the build, and its ``#fragment`` an id on that page."""
    findings: list[Finding] = []
    cache: dict[Path, _PageParser] = {}

    def parse(path: Path) -> _PageParser:
        if path not in cache:
            cache[path] = _parse(path)
        return cache[path]

    for page in pages:
        parsed = parse(root / page)
        hrefs = [*parsed.hrefs, *([parsed.redirect] if parsed.redirect else [])]
        for href in hrefs:
            resolved = _internal_target(page, href)
            if resolved is None:
                continue
            target, fragment = resolved
            path = root / target
            if target.startswith("../") or not path.is_file():
                findings.append(Finding(page, "link", f"{href!r}: no file {target} in the build"))
            elif fragment and target.endswith(".html") and fragment not in parse(path).ids:
                findings.append(Finding(page, "link", f"{href!r}: no element with id {fragment!r} on {target}"))
    return findings


# ------------------------------------------------------------------------------------------------------- browser

# Runs in the page once it has loaded: returns the math, image and layout problems it sees as [check, detail]
# pairs; an image's entry carries its absolute URL third, so the request and console lines about it are not
# reported again.
_INSPECT_JS = """
async () => {
  const problems = [];
  const shown = (el) => {
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && (!el.checkVisibility || el.checkVisibility());
  };
  const describe = (el) => {
    const id = el.id || (el.closest('[id]') || {}).id || '';
    // MathJax's output has no text of its own: name an equation by its TeX source.
    const items = (window.MathJax && MathJax.startup && MathJax.startup.document &&
                   MathJax.startup.document.getMathItemsWithin) ? MathJax.startup.document.getMathItemsWithin(el) : [];
    const source = items.length ? items[0].math : (el.getAttribute('src') || el.textContent || '');
    const text = source.replace(/\\s+/g, ' ').trim().slice(0, 60);
    return `<${el.tagName.toLowerCase()}>` + (id ? ` in #${id}` : '') + (text ? ` "${text}"` : '');
  };

  // Lazy images below the fold would never load in a screenshot-less check: load them all, then wait.
  const images = [...document.images];
  images.forEach((img) => { if (img.loading === 'lazy') img.loading = 'eager'; });
  await Promise.race([
    Promise.all(images.map((img) => img.complete ? null :
      new Promise((done) => { img.addEventListener('load', done); img.addEventListener('error', done); }))),
    new Promise((done) => setTimeout(done, 10000)),
  ]);
  for (const img of images) {
    if (!(img.complete && img.naturalWidth > 0)) {
      problems.push(['image', `not loaded: ${img.getAttribute('src')}`, img.currentSrc || img.src]);
    }
  }

  const maths = [...document.querySelectorAll('.math')];
  const untypeset = maths.filter((el) => !el.querySelector('mjx-container') && !el.closest('mjx-container'));
  if (untypeset.length) {
    const first = untypeset[0].textContent.replace(/\\s+/g, ' ').trim().slice(0, 60);
    problems.push(['math', `${untypeset.length} of ${maths.length} math elements not typeset by MathJax ` +
                           `(first: "${first}")`]);
  }
  for (const err of document.querySelectorAll('mjx-merror')) {
    problems.push(['math', `MathJax error: ${err.getAttribute('data-mjx-error') || err.textContent}`]);
  }

  const article = document.querySelector('article.bd-article') || document.querySelector('article') ||
                  document.querySelector('main') || document.body;
  const box = article.getBoundingClientRect();
  const style = getComputedStyle(article);
  const right = box.right - parseFloat(style.paddingRight) - parseFloat(style.borderRightWidth);
  const left = box.left + parseFloat(style.paddingLeft) + parseFloat(style.borderLeftWidth);
  const column = Math.round(right - left);
  const wide = 'mjx-container[display], table, figure, img';
  for (const el of article.querySelectorAll(wide)) {
    if (!shown(el)) continue;
    // A display equation's box is the column's width; what it typesets (mjx-math) may run past it.
    const drawn = el.tagName === 'MJX-CONTAINER' ? (el.querySelector('mjx-math') || el) : el;
    const r = drawn.getBoundingClientRect();
    if (r.right > right + TOLERANCE) {
      const kind = el.tagName === 'MJX-CONTAINER' ? 'equation' : el.tagName.toLowerCase();
      const scrolls = ['auto', 'scroll'].includes(getComputedStyle(el.parentElement).overflowX) ||
                      (drawn !== el && ['auto', 'scroll'].includes(getComputedStyle(el).overflowX));
      problems.push(['layout', `${kind} ${describe(el)} is ${Math.round(r.width)} px wide and ends ` +
                               `${Math.round(r.right - right)} px right of the ${column} px content column` +
                               (scrolls ? ' (it scrolls inside its box)' : '')]);
    }
  }
  for (const pre of article.querySelectorAll('pre')) {
    if (!shown(pre)) continue;
    const overflowX = getComputedStyle(pre).overflowX;
    if (pre.scrollWidth > pre.clientWidth + TOLERANCE && !['auto', 'scroll'].includes(overflowX)) {
      problems.push(['layout', `code block ${describe(pre)} is ${pre.scrollWidth} px wide in a ` +
                               `${pre.clientWidth} px box and does not scroll (overflow-x: ${overflowX})`]);
    }
    const r = pre.getBoundingClientRect();
    if (r.right > right + TOLERANCE) {
      problems.push(['layout', `code block ${describe(pre)} ends ${Math.round(r.right - right)} px right of ` +
                               `the ${column} px content column`]);
    }
  }
  const pageWidth = document.documentElement.scrollWidth;
  if (pageWidth > window.innerWidth) {
    problems.push(['layout', `the page scrolls sideways: ${pageWidth} px wide in a ${window.innerWidth} px window`]);
  }
  return problems;
}
""".replace("TOLERANCE", str(TOLERANCE_PX))

# The figure a widget shows: the sources of the visible images inside rendered widgets.
_FIGURE_JS = """
() => [...document.querySelectorAll('img')]
  .filter((img) => img.closest('.jupyter-widgets, .widget-subarea, [class*="widget-"]'))
  .filter((img) => { const r = img.getBoundingClientRect();
                     return r.width > 0 && r.height > 0 && (!img.checkVisibility || img.checkVisibility()); })
  .map((img) => img.currentSrc || img.src).join('\\n')
"""

# A slider's current value: noUiSlider and jQuery UI handles announce it in aria-valuenow, a range input holds it.
_VALUE_JS = "(el) => el.getAttribute('aria-valuenow') ?? el.value"


def console_allowed(message: str) -> bool:
    """Whether a console error matches an entry of ``ALLOWED_CONSOLE``."""
    return any(re.search(pattern, message) for pattern, _ in ALLOWED_CONSOLE)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass  # the report names the failures; a line per request would bury it


@contextmanager
def serve(root: Path) -> Iterator[str]:
    """Serve ``root`` on a free localhost port for the duration of the block; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _check_widgets(page_obj, page: str) -> list[Finding]:
    """On a page with embedded widget state: a slider is rendered, and each one changes the figure it drives."""
    if page_obj.locator(WIDGET_STATE_SELECTOR).count() == 0:
        return []
    try:
        page_obj.wait_for_selector(SLIDER_SELECTOR, state="visible", timeout=WIDGET_TIMEOUT_MS)
    except Exception:  # playwright's TimeoutError, imported only with playwright
        return [Finding(page, "widget", "the page embeds widget state but no slider was rendered")]
    findings = []
    sliders = page_obj.locator(SLIDER_SELECTOR)
    for index in range(sliders.count()):
        slider = sliders.nth(index)
        if not slider.is_visible():
            continue
        before = page_obj.evaluate(_FIGURE_JS)
        value = slider.evaluate(_VALUE_JS)
        slider.focus()
        slider.press("ArrowRight")
        # At the maximum, one step right does nothing: step left instead.
        if slider.evaluate(_VALUE_JS) == value:
            slider.press("ArrowLeft")
        try:
            page_obj.wait_for_function(f"(before) => ({_FIGURE_JS})() !== before", arg=before, timeout=5_000)
        except Exception:  # playwright's TimeoutError: the figure stayed the same
            label = slider.evaluate(
                "(el) => ((el.closest('.widget-slider') || el).querySelector('.widget-label') || {}).textContent"
            )
            findings.append(
                Finding(page, "widget", f"moving slider {index} ({label or 'no label'}) did not change the figure")
            )
    return findings


def _open_page(browser, base: str, page: str, screenshots: Path | None) -> list[Finding]:
    """Open one page in a fresh context of the Playwright ``browser`` and return everything wrong with it.

    A fresh context per page starts without cookies or local storage, like a reader arriving from a search engine,
    so what a page logs does not depend on the pages opened before it.
    """
    host = urlsplit(base).netloc
    blocked: list[str] = []
    errors: list[tuple[str, str]] = []  # (message, URL of the resource it is about, or "")
    missing_images: set[str] = set()
    findings: list[Finding] = []

    def route(route, request) -> None:
        if urlsplit(request.url).netloc == host:
            route.continue_()
        else:
            blocked.append(request.url)
            route.abort()

    def on_console(message) -> None:
        url = message.location.get("url", "")
        # A request this check aborted is already reported as a network finding.
        if message.type == "error" and url not in blocked and not console_allowed(message.text):
            errors.append((message.text + (f" ({url})" if url else ""), url))

    def on_page_error(error) -> None:
        text = f"uncaught {error.name}: {error.message}"
        if not console_allowed(text):
            errors.append((text, ""))

    context = browser.new_context(viewport=VIEWPORT)
    tab = context.new_page()
    tab.route("**/*", route)
    tab.on("console", on_console)
    tab.on("pageerror", on_page_error)
    try:
        response = tab.goto(base + page, wait_until="networkidle", timeout=PAGE_TIMEOUT_MS)
        if response is not None and not response.ok:
            return [Finding(page, "load", f"HTTP {response.status} for the page itself")]
        # MathJax typesets after load; wait for it when it is there (it is missing when blocked).
        tab.evaluate(
            "() => (window.MathJax && MathJax.startup && MathJax.startup.promise) ?"
            " Promise.race([MathJax.startup.promise, new Promise((r) => setTimeout(r, 20000))]) : null"
        )
        for check, detail, *url in tab.evaluate(_INSPECT_JS):
            if url and url[0] in blocked:
                detail += " (needs the network)"
            findings.append(Finding(page, check, detail))
            missing_images.update(url)
        findings += _check_widgets(tab, page)
        if screenshots is not None and page.startswith(CHAPTER_DIRS):
            screenshots.mkdir(parents=True, exist_ok=True)
            # JPEG: a full chapter page with its figures is several MB as PNG, and the screenshots are committed
            tab.screenshot(path=str(screenshots / f"{Path(page).stem}.jpg"), full_page=True, quality=60)
    except Exception as error:  # a page that cannot be opened is one finding, not the end of the check
        findings.append(Finding(page, "load", f"{type(error).__name__}: {str(error).splitlines()[0]}"))
    finally:
        context.close()
    # An image that did not load is reported once, as an image, not again as a request or a console line.
    findings += [
        Finding(page, "network", f"request to {url} (blocked: no network)")
        for url in blocked
        if url not in missing_images
    ]
    findings += [Finding(page, "console", text) for text, url in errors if url not in missing_images]
    return findings


def check_pages_in_browser(
    root: Path,
    pages: list[str],
    *,
    chromium: str = DEFAULT_CHROMIUM,
    screenshots: Path | None = None,
) -> list[Finding]:
    """Open each page offline in headless Chromium and run the math, image, console, layout and widget checks."""
    from playwright.sync_api import sync_playwright

    findings: list[Finding] = []
    with serve(root) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        for page in pages:
            findings += _open_page(browser, base, page, screenshots)
        browser.close()
    return findings


def check_site(
    root: Path, *, chromium: str = DEFAULT_CHROMIUM, screenshots: Path | None = None
) -> tuple[list[str], list[Finding]]:
    """Run every check on the build at ``root``; returns the pages checked and the findings, sorted."""
    pages = html_pages(root) if root.is_dir() else []
    if not pages:
        raise FileNotFoundError(f"no built book at {root} (build it first, e.g. python book/build.py --fast)")
    # A redirect page shows another page: its target is checked as a link, not opened twice.
    shown = [p for p in pages if not is_redirect(root, p)]
    findings = check_links(root, pages)
    findings += check_pages_in_browser(root, shown, chromium=chromium, screenshots=screenshots)
    return pages, sorted(set(findings))


def format_report(pages: list[str], findings: list[Finding]) -> str:
    """The report: one line per problem (page, check, detail), then a summary line."""
    lines = [f"{f.page}  [{f.check}]  {f.detail}" for f in findings]
    failing = len({f.page for f in findings})
    lines.append(
        f"{len(pages)} pages checked: {len(findings)} problems on {failing} pages"
        if findings
        else f"{len(pages)} pages checked: no problems"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: check a built book, print the report, return 1 when anything failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("build", nargs="?", type=Path, default=DEFAULT_BUILD, help="the built HTML (_build/html)")
    parser.add_argument("--screenshots", type=Path, metavar="DIR", help="save a full-page JPEG per chapter page here")
    parser.add_argument(
        "--chromium",
        default=os.environ.get("UDABOOK_CHROMIUM", DEFAULT_CHROMIUM),
        help="the Chromium binary (default: /usr/bin/chromium, or $UDABOOK_CHROMIUM)",
    )
    args = parser.parse_args(argv)
    if not Path(args.chromium).is_file():
        parser.error(f"no Chromium at {args.chromium}: apt-get install chromium chromium-driver, or pass --chromium")
    try:
        pages, findings = check_site(args.build.resolve(), chromium=args.chromium, screenshots=args.screenshots)
    except FileNotFoundError as error:
        parser.error(str(error))
    print(format_report(pages, findings))
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
