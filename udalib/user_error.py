"""Errors written for the person running udalib, not for a debugger: a request refused before any work starts (a
preset that cannot run here, an unconfirmed long run, missing data, a run folder in use) or a run stopped on
purpose (Ctrl-C).

A :class:`UserError` is one block of text wherever it surfaces: ``udalib`` prints it as one line and exits with its
:attr:`~UserError.exit_code`; a notebook cell (JupyterLab, papermill, nbclient) shows its message without a
traceback, because IPython renders an exception through its ``_render_traceback_`` method when it has one. A
setting the reader should change is written with :func:`setting`, in the form each way of running udalib takes.
"""

from __future__ import annotations


class UserError(Exception):
    """A refusal or a deliberate stop, shown as its message alone (no traceback in a notebook, one line in the CLI).

    Example: ``raise UserError("iters must be a positive integer, got 0")`` in a chapter's setup cell shows
    ``UserError: iters must be a positive integer, got 0`` and nothing else.
    """

    #: The exit status ``udalib`` returns for it (2: a refused request, as argparse's usage errors).
    exit_code = 2

    def _render_traceback_(self) -> list[str]:
        # What IPython shows for the exception instead of the traceback; the cause stays in __cause__ for %debug.
        return [f"{type(self).__name__}: {self}"]


def setting(name: str, value: object) -> str:
    """Setting `name` = `value` as a chapter's parameters take it (papermill's ``-p name value``, the same name in
    the parameters cell) and as ``udalib train`` takes it (``--name value``, or ``--name`` for a switch).

    Example: ``setting("confirm_long_run", True)`` is
    ``"-p confirm_long_run True (papermill, or the parameters cell) / --confirm-long-run (udalib train)"``.
    """
    flag = "--" + name.replace("_", "-")
    cli = flag if value is True else f"{flag} {value}"
    return f"-p {name} {value} (papermill, or the parameters cell) / {cli} (udalib train)"
