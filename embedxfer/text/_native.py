"""The compiled kernels (``_kernels.c``), when the package was built with them.

They are optional: an install without a C compiler has none, and the numpy
code gives the same results. ``kernels()`` is what the hot paths ask; tests
and benchmarks set ``ENABLED`` to False to run the numpy code instead.
"""

try:
    from . import _kernels as _KERNELS
except ImportError:
    _KERNELS = None

ENABLED = True


def kernels():
    """The ``_kernels`` module, or None when it is not built or is turned off."""
    return _KERNELS if ENABLED else None


def available():
    """Whether this install has the compiled kernels."""
    return _KERNELS is not None


def half_widening():
    """How the kernels widen float16 rows: ``"f16c"``, ``"portable"``, or None without them."""
    return None if _KERNELS is None else _KERNELS.half_kernels()
