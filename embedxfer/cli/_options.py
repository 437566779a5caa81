"""Options several subcommands share, and the argument types they use."""

import argparse

from ..text._pooling import SENTENCE_POOLINGS, WORD_POOLINGS


def kind_choices():
    """``--kind`` values: ``"auto"`` (from the name) and each kind a name can be forced to."""
    from .._core.embedder import embedder_classes

    return ("auto", *(k for k, cls in embedder_classes().items() if cls._kind_option))


def positive_int(text):
    """``argparse`` type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_batch_size_option(parser):
    """``--batch-size N``: documents per forward pass of a sentence model."""
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=32,
        metavar="N",
        help="documents per forward pass of a sentence model (default: 32)",
    )


def add_kind_option(parser, help):
    """``--kind {auto,word,sentence}`` (default auto), with the subcommand's ``help``."""
    parser.add_argument("--kind", choices=kind_choices(), default="auto", help=help)


def pooling_help():
    """The ``--pooling`` help: the word and the sentence poolings."""
    return (
        f"word: {', '.join(WORD_POOLINGS)} or e.g. mean+max; "
        f"sentence: {', '.join(SENTENCE_POOLINGS[:-1])} or {SENTENCE_POOLINGS[-1]} "
        "(default: mean)"
    )


# The switches every command takes: (flags, help).
_RUN_SWITCHES = (
    (("--traceback",), "show the full traceback of an error"),
    (("--verbose",), "keep the libraries' own progress bars and messages"),
    (("-q", "--quiet"), "no progress on stderr"),
)


def add_run_switches(parser, *, default=False):
    """Add ``--traceback``, ``--verbose`` and ``-q`` to ``parser``."""
    for flags, text in _RUN_SWITCHES:
        parser.add_argument(*flags, action="store_true", default=default, help=text)


def common_options():
    """The options every subcommand accepts (a parent parser).

    SUPPRESS keeps a value given before the subcommand (``embedxfer -q demo``)
    from being reset by the subparser's default.
    """
    common = argparse.ArgumentParser(add_help=False)
    add_run_switches(common, default=argparse.SUPPRESS)
    return common


def evaluation_options():
    """The options ``evaluate`` and ``demo`` share (a parent parser)."""
    shared = argparse.ArgumentParser(add_help=False)
    _add_data_options(shared)
    _add_encoding_options(shared)
    return shared


def _add_data_options(shared):
    shared.add_argument(
        "--text-column",
        default="text",
        metavar="C",
        help="column holding the documents (default: text)",
    )
    shared.add_argument(
        "--label-column",
        default="label",
        metavar="C",
        help="column holding the labels (default: label)",
    )
    shared.add_argument(
        "--cv",
        type=positive_int,
        default=5,
        metavar="K",
        help="cross-validation folds (default: 5)",
    )
    shared.add_argument(
        "--max-docs",
        type=positive_int,
        metavar="N",
        help="use a stratified random sample of N documents",
    )
    shared.add_argument("--seed", type=int, default=0, help="seed of the sample (default: 0)")


def _add_encoding_options(shared):
    add_batch_size_option(shared)
    shared.add_argument("--device", help="cpu, cuda, mps or auto")
    shared.add_argument(
        "--cache", metavar="DIR", help="embedding cache folder, so a second run does not re-encode"
    )
    shared.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    shared.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow gensim native .kv / .model vector files: they are pickles, "
        "which can run code when loaded, so only for files you trust",
    )
