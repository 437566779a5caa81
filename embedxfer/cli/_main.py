"""``main``: parse the arguments, run the command, turn user errors into one line."""

import contextlib
import logging
import os
import signal
import sys
import threading

from ..exceptions import EmbedxferError
from ._errors import Terminated
from ._parser import build_parser

# Exceptions that describe a bad input or environment, not a bug: one line, exit 1.
# EmbedxferError covers the package's own (a bad parameter, model name, column,
# vector file or image, a model that cannot be downloaded, the command's input);
# MemoryError, an input too large for this machine.
_USER_ERRORS = (
    EmbedxferError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
    ConnectionError,
    ImportError,
    OSError,
    MemoryError,
)

_PACKAGE_FOLDER = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# Environment settings that keep other libraries' bars and advice quiet
# unless --verbose is given.
_QUIET_LIBRARY_SETTINGS = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error"}


def _raise_terminated(signum, frame):
    raise Terminated


@contextlib.contextmanager
def _sigterm_unwinds():
    """Within the block, SIGTERM raises :class:`Terminated` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _one_line(err):
    """The message of a user error on one line; running out of memory says what to lower."""
    message = " ".join(str(err).split())
    if isinstance(err, MemoryError):
        return (
            f"out of memory{': ' + message if message else ''}; work on fewer documents "
            "(--max-docs) or in smaller batches (--batch-size, --chunk-size)."
        )
    return message or type(err).__name__


def _raised_by_embedxfer(err):
    """Whether the innermost frame of ``err``'s traceback is embedxfer's own code."""
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    path = os.path.abspath(tb.tb_frame.f_code.co_filename)
    return path.startswith(_PACKAGE_FOLDER + os.sep)


def is_user_error(err):
    """Whether ``err`` is a user's mistake, printed as one line, rather than a bug.

    Beyond ``_USER_ERRORS``: a ``ValueError`` or ``TypeError`` that embedxfer
    raised itself (its message names the problem for the user: a missing
    document, a bad pattern). One raised inside a dependency (numpy, torch,
    scikit-learn) means a check is missing or a bug, and keeps its traceback.
    """
    if isinstance(err, _USER_ERRORS):
        return True
    return isinstance(err, (ValueError, TypeError)) and _raised_by_embedxfer(err)


def main(argv=None):
    """Run the command line; return the exit status.

    Parameters
    ----------
    argv : list of str, default=None
        Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns
    -------
    status : int
        0 on success, 1 on an error, 130 when interrupted (Ctrl-C), 143 when
        terminated (SIGTERM).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    config = args.config.from_namespace(args)
    # main() may be called in a Python process (tests, notebooks): what it
    # changes in the environment and the root logger is put back on return.
    saved_environment = {name: os.environ.get(name) for name in _QUIET_LIBRARY_SETTINGS}
    if not config.verbose:
        # Library progress bars (Hub downloads) would interleave with ours.
        for name, value in _QUIET_LIBRARY_SETTINGS.items():
            os.environ.setdefault(name, value)
    root = logging.getLogger()
    root_level = root.level
    if not config.verbose:
        # Libraries that log on the root logger (onnxruntime's quantiser) speak only
        # with --verbose; their errors still show.
        root.setLevel(logging.ERROR)
    try:
        with _sigterm_unwinds():
            return args.func(config) or 0
    except KeyboardInterrupt:
        print("embedxfer: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("embedxfer: terminated", file=sys.stderr)
        return 143
    except Exception as err:
        if config.traceback or not is_user_error(err):
            raise
        print(f"embedxfer: error: {_one_line(err)}", file=sys.stderr)
        return 1
    finally:
        root.setLevel(root_level)
        for name, value in saved_environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
