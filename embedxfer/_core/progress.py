"""The progress bar shared by the encoding and training loops."""


class _NoBar:
    """A silent stand-in for a tqdm bar."""

    def update(self, n=1):
        pass

    def set_postfix(self, **kwargs):
        pass

    def close(self):
        pass


def progress(total, verbose, desc):
    """A tqdm bar when ``verbose`` and tqdm is installed, else a silent counter."""
    bar = progress_bar(total, desc, leave=False) if verbose else None
    return bar if bar is not None else _NoBar()


def progress_bar(total, desc, **options):
    """A tqdm bar fitted to the terminal's width (``None`` without tqdm).

    ``options`` go to ``tqdm`` (e.g. ``file``, ``unit``, ``leave``).
    """
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, dynamic_ncols=True, **options)
