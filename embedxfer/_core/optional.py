"""Optional dependencies: import one, or say how to install it.

Heavy libraries (torch, transformers, onnxruntime, Pillow, Dask) are
imported inside the functions that need them, so ``import embedxfer`` stays
light; when one is missing the ImportError names the extra that installs it.
"""

import sys

__all__ = ["PYARROW_INSTALL_HINT", "import_optional", "install_hint"]

# How to install pyarrow (Parquet input and output).
PYARROW_INSTALL_HINT = "pip install pyarrow"


def install_hint(extra):
    """The command that installs an extra: ``pip install 'embedxfer[EXTRA]'``.

    Examples
    --------
    >>> install_hint("onnx")
    "pip install 'embedxfer[onnx]'"
    """
    return f"pip install 'embedxfer[{extra}]'"


def import_optional(name, message):
    """Import module ``name``, or raise ``ImportError(message)`` from the failure.

    Parameters
    ----------
    name : str
        The module, e.g. ``"onnxruntime"``.
    message : str
        The whole error message: what needs the module and how to install
        it (usually ending with :func:`install_hint`).

    Returns
    -------
    module
    """
    try:
        # The import statement's own machinery (not importlib), so that tests
        # can simulate a missing package by patching ``builtins.__import__``.
        __import__(name)
    except ImportError as err:
        raise ImportError(message) from err
    return sys.modules[name]
