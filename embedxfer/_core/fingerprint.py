"""Fingerprints of user-supplied callables for the embedding cache.

A cache key must change whenever the output could: two different tokenizers
must never share a fingerprint. Module-level functions are identified by
their module, qualified name and compiled code; picklable callable objects by
their pickled state. Lambdas, closures and anything else whose behaviour is
not captured that way get no fingerprint, and are then not cached.
"""

import hashlib
import pickle
import types
import warnings

from ..exceptions import NotCachedWarning

_WARNED = set()


def callable_fingerprint(obj):
    """A string identifying ``obj``'s behaviour, or None when that cannot be done safely.

    Non-callables (None, strings) are identified by their ``repr``.
    """
    if not callable(obj):
        return repr(obj)
    if isinstance(obj, types.FunctionType):
        if obj.__name__ == "<lambda>" or "<locals>" in obj.__qualname__ or obj.__closure__:
            return None
        h = hashlib.blake2b(digest_size=16)
        for part in (
            obj.__module__,
            obj.__qualname__,
            repr(obj.__defaults__),
            repr(obj.__kwdefaults__),
        ):
            h.update(repr(part).encode())
        _hash_code(h, obj.__code__)
        return f"function:{obj.__module__}.{obj.__qualname__}:{h.hexdigest()}"
    if isinstance(obj, (types.BuiltinFunctionType, types.MethodDescriptorType)):
        return f"builtin:{getattr(obj, '__module__', None)}.{obj.__qualname__}"
    try:
        blob = pickle.dumps(obj, protocol=4)
    except (
        pickle.PicklingError,
        TypeError,
        AttributeError,
        ValueError,
        RecursionError,
    ):
        return None
    return (
        f"object:{type(obj).__module__}.{type(obj).__qualname__}:"
        + hashlib.blake2b(blob, digest_size=16).hexdigest()
    )


def _hash_code(h, code):
    h.update(code.co_code)
    h.update(repr(code.co_names).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _hash_code(h, const)
        else:
            h.update(repr(const).encode())


def warn_not_cached(reason):
    """Warn once per reason that an input is not cached."""
    if reason in _WARNED:
        return
    _WARNED.add(reason)
    warnings.warn(f"{reason}: its vectors are not cached.", NotCachedWarning, stacklevel=4)
