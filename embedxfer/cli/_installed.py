"""What is installed here: modules, distributions' versions, and imports that name the fix."""

import importlib.util
from importlib import metadata


def require(module, purpose):
    """Import ``module`` or raise an ImportError naming ``purpose`` and the install."""
    try:
        __import__(module)
    except ImportError:
        raise ImportError(f"{purpose} needs {module}; pip install {module}") from None


def has_module(name):
    """Whether ``name`` can be imported (without importing it)."""
    return importlib.util.find_spec(name) is not None


def dist_version(name):
    """The installed version of the distribution ``name``, or ``"?"``."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"
