"""``main``: parse the arguments, run the command, turn user errors into one line."""

import logging
import os
import sys

from ..datasets import ColumnNotFoundError
from ._errors import CLIError
from ._model_names import UnknownModelError
from ._parser import build_parser

# Exceptions that describe a bad input or environment, not a bug: one line, exit 1.
_USER_ERRORS = (
    CLIError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
    ColumnNotFoundError,
    UnknownModelError,
    ConnectionError,
    ImportError,
    ValueError,
    OSError,
)


def main(argv=None):
    """Run the command line; return the exit status.

    Parameters
    ----------
    argv : list of str, default=None
        Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns
    -------
    status : int
        0 on success, 1 on an error, 130 when interrupted.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    if not args.verbose:
        # Library progress bars (weight loading) would interleave with ours.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    root = logging.getLogger()
    root_level = root.level
    if not args.verbose:
        # Libraries that log on the root logger (onnxruntime's quantiser) speak only
        # with --verbose; their errors still show.
        root.setLevel(logging.ERROR)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        print("embedxfer: interrupted", file=sys.stderr)
        return 130
    except _USER_ERRORS as err:
        if args.traceback:
            raise
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"embedxfer: error: {message}", file=sys.stderr)
        return 1
    finally:
        root.setLevel(root_level)
