"""Sphinx extension for the API pages: library docstrings that are not valid reStructuredText are shown verbatim.

``udalib``'s docstrings are written to be read in an editor: equations with ``|x|``, indented continuation lines,
Google-style sections. Parsed as reStructuredText, some of them turn into substitution references or broken
indentation, and under ``-W`` the book would not build. Each docstring is therefore parsed once on its own with
docutils; if that reports a problem, it is rendered as a literal block, exactly as written (the text is all
there, just not typeset), and the build names the object at the verbose level. Docstrings that parse cleanly are
rendered normally.

Short cross-references in docstrings (``:func:`build_model``` in a package docstring, a ``RunConfig`` annotation)
are resolved to the one documented ``udalib`` object of that name when there is exactly one.
"""

from __future__ import annotations

import re

import docutils.core
import docutils.utils
from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

# Sphinx's roles are unknown to plain docutils: for the check they become plain literals.
SPHINX_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|data|attr|exc|obj|const|math|ref|doc|term):`")


def parse_problems(text: str) -> list[str]:
    """The docutils messages (warning level and above) that parsing `text` on its own reports."""
    source = SPHINX_ROLE.sub("`", text)
    # report_level keeps the transforms' messages (e.g. an undefined substitution) in the tree; nothing is printed
    settings = {"report_level": docutils.utils.Reporter.WARNING_LEVEL, "halt_level": 5, "warning_stream": False}
    doctree = docutils.core.publish_doctree(source, settings_overrides=settings)
    # parser messages are in the tree, the transforms' (undefined substitutions, ...) are kept aside
    messages = [*doctree.findall(nodes.system_message), *doctree.transform_messages]
    return [msg.astext() for msg in messages if msg["level"] >= docutils.utils.Reporter.WARNING_LEVEL]


def verbatim_if_invalid(app: Sphinx, what: str, name: str, obj, options, lines: list[str]) -> None:
    """autodoc-process-docstring: replace `lines` by a literal block of themselves when they do not parse."""
    text = "\n".join(lines)
    if not text.strip() or not parse_problems(text):
        return
    logger.verbose("udalib docstring shown verbatim (not valid reStructuredText): %s", name)
    lines[:] = ["::", ""] + [f"    {line}" if line else "" for line in lines] + [""]


def resolve_short_name(app: Sphinx, env, node, contnode):
    """missing-reference: a bare name resolves to the single documented ``udalib`` object ending in it."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"]
    if "." in target:
        target = target.rsplit(".", 1)[1] if target.startswith("udalib.") else target
    domain = env.get_domain("py")
    matches = [name for name in domain.objects if name.startswith("udalib.") and name.endswith("." + target)]
    if len(matches) != 1:
        return None
    obj = domain.objects[matches[0]]
    return domain.resolve_xref(env, node["refdoc"], app.builder, obj.objtype, matches[0], node, contnode)


def setup(app: Sphinx) -> dict:
    app.connect("autodoc-process-docstring", verbatim_if_invalid)
    app.connect("missing-reference", resolve_short_name)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
