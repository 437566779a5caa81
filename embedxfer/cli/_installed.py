"""What is installed here: importable modules and distributions' versions."""

import importlib.util
from importlib import metadata


def has_module(name):
    """Whether ``name`` can be imported (without importing it)."""
    return importlib.util.find_spec(name) is not None


def dist_version(name):
    """The installed version of the distribution ``name``, or ``"?"``."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"
