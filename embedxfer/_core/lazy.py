"""Names a package imports on first access (PEP 562), so that importing it stays light."""

import importlib
import sys


def lazy_names(package, names):
    """The ``__getattr__`` and ``__dir__`` of a package with names imported on first use.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    names : dict of str to str
        Each name and the module (relative to ``package``) that holds it; a
        name that is the module's own last part (``"datasets"`` for
        ``".datasets"``) gives the module itself.

    Returns
    -------
    getattr, dir : callable
        To assign to the package's ``__getattr__`` and ``__dir__``.
    """

    def __getattr__(name):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(names[name], package)
        value = module if names[name].rsplit(".", 1)[-1] == name else getattr(module, name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__():
        namespace = sys.modules[package]
        return sorted(set(vars(namespace)) | set(getattr(namespace, "__all__", ())))

    return __getattr__, __dir__
