"""Sphinx extension: MyST's warning about a ``{footcite}`` footnote it cannot see defined, and only that one.

sphinxcontrib-bibtex's ``{footcite}`` role inserts a footnote reference named ``footcite-<key>`` and adds the
footnote itself to the page's ``{footbibliography}``. MyST checks the footnotes of a page when it finishes parsing
it, and knows only the ``[^label]:`` definitions of the Markdown, so every ``{footcite}`` gets "No footnote
definitions found for label: 'footcite-<key>'" although its footnote exists. This filter drops exactly that
message; every other footnote warning (a duplicate definition, a missing ``[^label]:``) still fails the ``-W``
build. A page that cites without a ``{footbibliography}`` is caught by ``book/build.py`` (``footcite_problems``).
"""

from __future__ import annotations

import logging

from sphinx.application import Sphinx

FOOTCITE_MISSING = "No footnote definitions found for label: 'footcite-"


class FootciteDefinitionFilter(logging.Filter):
    """Drops MyST's missing-definition warning for footnotes that sphinxcontrib-bibtex defines."""

    def filter(self, record: logging.LogRecord) -> bool:
        return FOOTCITE_MISSING not in record.getMessage()


def setup(app: Sphinx) -> dict:
    # Sphinx's handlers are set up before the extensions; the filter goes first, before -W turns it into an error
    for handler in logging.getLogger("sphinx").handlers:
        handler.filters.insert(0, FootciteDefinitionFilter())
    return {"parallel_read_safe": True, "parallel_write_safe": True}
