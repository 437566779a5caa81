"""The command line's own error: a bad input, reported as one line."""

from ..exceptions import CLIError

__all__ = ["CLIError"]
