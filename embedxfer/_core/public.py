"""Public names: a class's ``__module__`` set to the path users import it from."""

__all__ = ["set_module"]


def set_module(module):
    """Class decorator: report ``module`` (e.g. ``"embedxfer"``) as the class's module.

    Classes live in private modules (``embedxfer.text._word``) and are imported
    from the package (``embedxfer.WordVectorEmbedder``). Setting
    ``__module__`` to the public path, as numpy's ``set_module`` does, makes
    that path the one that reprs, pickles, joblib files and skops' list of
    types to trust (``skops.io.get_untrusted_types``) show, so moving a class
    between private modules breaks no saved model.

    Parameters
    ----------
    module : str
        The public module; the class must be reachable as ``module.<name>``.

    Returns
    -------
    decorator : callable
    """

    def decorator(cls):
        cls.__module__ = module
        return cls

    return decorator
