"""The command line's errors: what a verb reports in one line."""

from __future__ import annotations

__all__ = ["CommandError", "ReportError"]


class CommandError(Exception):
    """A user error the command line reports in one line."""


class ReportError(CommandError):
    """The report could not be drawn; the scores were saved first."""
