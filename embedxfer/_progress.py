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
    if verbose:
        try:
            from tqdm.auto import tqdm

            return tqdm(total=total, desc=desc, leave=False)
        except ImportError:
            pass
    return _NoBar()
