"""The command line's errors: what a verb reports in one line."""

from __future__ import annotations

__all__ = ["CommandError"]


class CommandError(Exception):
    """A user error the command line reports in one line."""
