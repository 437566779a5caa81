"""The ``argparse`` parser: the top-level options and one subparser per command."""

import argparse
from importlib import metadata

from . import _demo, _embed, _evaluate, _models
from ._options import add_run_switches, common_options, evaluation_options


def build_parser():
    """The ``argparse`` parser with its subcommands."""
    common = common_options()
    parser = _top_level_parser()
    sub = parser.add_subparsers(title="subcommands", metavar="COMMAND")
    _embed.add_parser(sub, [common])
    shared = evaluation_options()
    _evaluate.add_parser(sub, [common, shared])
    _demo.add_parser(sub, [common, shared])
    _models.add_parser(sub, [common])
    return parser


def _top_level_parser():
    parser = argparse.ArgumentParser(
        prog="embedxfer",
        description="Transfer learning with pretrained text encoders inside scikit-learn.",
    )
    # Separate actions from the subcommands' common ones: set_defaults would change those.
    add_run_switches(parser)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    return parser


def _version():
    try:
        return metadata.version("embedxfer")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a checkout
        from .. import __version__

        return __version__
