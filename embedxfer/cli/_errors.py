"""The command line's own errors: a bad input (one line), and SIGTERM as an exception."""

from ..exceptions import CLIError

__all__ = ["CLIError", "Terminated"]


class Terminated(BaseException):
    """SIGTERM (``kill``, a job scheduler, ``docker stop``) raised as an exception.

    The default action ends the process at once; as an exception it unwinds
    like Ctrl-C, so that half-written outputs are removed and what is kept is
    said.
    """
