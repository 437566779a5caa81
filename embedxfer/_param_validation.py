"""Declarative parameter constraints, checked by one function at the start of ``fit``.

Each estimator lists what its parameters accept in a class attribute
``_parameter_constraints``: a dict from parameter name to a list of
constraints, any one of which the value must satisfy (scikit-learn's
convention). ``validate_params(estimator)`` checks them all and raises
``InvalidParameterError``, a subclass of both ``ValueError`` and
``TypeError``, so that callers who caught either before still catch it.

Messages name the parameter, the offending value and what it accepts, e.g.
``lr=-1 is out of range; expected a value in (0, inf).``.
"""

import math
import numbers
from collections.abc import Callable, Iterable

import numpy as np

__all__ = [
    "Interval",
    "InvalidParameterError",
    "Options",
    "Rule",
    "validate_params",
]


class InvalidParameterError(ValueError, TypeError):
    """A parameter has a value or type its estimator does not accept.

    Subclasses both ``ValueError`` and ``TypeError`` (as scikit-learn's
    ``InvalidParameterError`` does), so code written against either keeps
    working.
    """


class Interval:
    """Numbers of one kind between two bounds.

    Parameters
    ----------
    kind : {numbers.Integral, numbers.Real}
        ``Integral`` accepts ints (numpy's too), ``Real`` any real number;
        ``bool`` and NaN are never accepted.
    left, right : number or None
        The bounds; None leaves that side open-ended.
    closed : {"both", "left", "right", "neither"}, default="both"
        Which bounds belong to the interval.
    """

    def __init__(self, kind, left, right, *, closed="both"):
        self.kind = kind
        self.left = left
        self.right = right
        self.closed = closed

    def accepts_type(self, value):
        return isinstance(value, self.kind) and not isinstance(value, bool)

    def accepts(self, value):
        if not self.accepts_type(value) or math.isnan(value):
            return False
        left_closed = self.closed in ("both", "left")
        right_closed = self.closed in ("both", "right")
        if self.left is not None and (value < self.left if left_closed else value <= self.left):
            return False
        if self.right is not None and (value > self.right if right_closed else value >= self.right):
            return False
        return True

    def type_name(self):
        return "an integer" if self.kind is numbers.Integral else "a number"

    def describe(self):
        lo = "-inf" if self.left is None else repr(self.left)
        hi = "inf" if self.right is None else repr(self.right)
        left = "[" if self.closed in ("both", "left") and self.left is not None else "("
        right = "]" if self.closed in ("both", "right") and self.right is not None else ")"
        return f"{left}{lo}, {hi}{right}"


def _same_kind(value, option):
    if isinstance(option, str):
        return isinstance(value, str)
    return type(value) is type(option)


class Options:
    """One of a fixed set of values (compared with ``==``, type included).

    A string option accepts any ``str`` instance (numpy's ``np.str_`` too, which
    ``ParameterGrid`` over a numpy array produces); other options need the exact
    type, so ``True`` never matches ``1`` nor ``1`` matches ``True``.

    Parameters
    ----------
    values : iterable
        The accepted values, in the order error messages list them.
    """

    def __init__(self, values):
        self.values = tuple(values)

    def accepts(self, value):
        return any(_same_kind(value, option) and value == option for option in self.values)

    def describe(self):
        return ", ".join(repr(v) for v in self.values)


class Rule:
    """A check that does not fit the other constraint kinds.

    Parameters
    ----------
    check : callable
        ``check(value)`` returns None when the value is accepted, otherwise
        the whole error message (naming the parameter and the way out).
    """

    def __init__(self, check: Callable):
        self.check = check

    def accepts(self, value):
        return self.check(value) is None


def _matches(constraint, value):
    if constraint is None:
        return value is None
    if constraint == "boolean":
        return isinstance(value, (bool, np.bool_))
    if constraint == "callable":
        return callable(value)
    if isinstance(constraint, type):
        return isinstance(value, constraint)
    return constraint.accepts(value)


def _message(name, value, constraints, hint):
    rules = [c for c in constraints if isinstance(c, Rule)]
    for rule in rules:
        message = rule.check(value)
        if message is not None:
            return message
    intervals = [c for c in constraints if isinstance(c, Interval)]
    options = [c for c in constraints if isinstance(c, Options)]
    allows_none = any(c is None for c in constraints)
    accepted = []
    for option in options:
        accepted.append(option.describe())
    in_range = [c for c in intervals if c.accepts_type(value)]
    if list(constraints) == ["boolean"]:
        message = f"{name}={value!r}; expected True or False"
    elif in_range and not options:
        # Right type, wrong size: say which values are accepted.
        ranges = " or ".join(c.describe() for c in in_range)
        message = f"{name}={value!r} is out of range; expected a value in {ranges}"
    elif intervals and not options:
        kinds = [c.type_name() for c in intervals]
        kinds += [f"a {c.__name__}" for c in constraints if isinstance(c, type)]
        what = " or ".join(dict.fromkeys(kinds))
        if allows_none:
            what += " or None"
        message = f"{name} must be {what}, got {value!r} ({type(value).__name__})"
    else:
        for interval in intervals:
            accepted.append(f"{interval.type_name()} in {interval.describe()}")
        for constraint in constraints:
            if constraint == "boolean":
                accepted.append("True or False")
            elif constraint == "callable":
                accepted.append("a callable")
            elif isinstance(constraint, type):
                accepted.append(f"a {constraint.__name__}")
        if allows_none:
            accepted.append("None")
        message = f"{name}={value!r} is not supported; expected one of {', '.join(accepted)}"
    return f"{message}. {hint}" if hint else f"{message}."


def check_param(name, value, constraints, *, hint=None):
    """Check one value against ``constraints``; return it or raise.

    Parameters
    ----------
    name : str
        The parameter's name, for the message.
    value : object
        Its value.
    constraints : list
        Accepted kinds: ``Interval``, ``Options``, ``Rule``, a type, None
        (the value None), ``"boolean"``, ``"callable"``.
    hint : str, optional
        A sentence appended to the message (the way out).

    Returns
    -------
    value : object
        ``value``, unchanged.

    Raises
    ------
    InvalidParameterError
        When no constraint accepts the value.
    """
    if any(_matches(c, value) for c in constraints):
        return value
    raise InvalidParameterError(_message(name, value, constraints, hint))


def validate_params(estimator, params: Iterable[str] | None = None):
    """Check ``estimator``'s parameters against its ``_parameter_constraints``.

    Parameters
    ----------
    estimator : estimator
        Its class has ``_parameter_constraints``: parameter name -> list of
        constraints (or a dict ``{"constraints": [...], "hint": "..."}`` to
        add a sentence naming the way out). Parameters missing from the
        table are not checked (``"no_validation"`` marks them explicitly).
    params : iterable of str, optional
        Check only these parameters (default: all in the table).

    Raises
    ------
    InvalidParameterError
        Naming the first parameter no constraint accepts.
    """
    table = type(estimator)._parameter_constraints
    values = estimator.get_params(deep=False)
    for name in table if params is None else params:
        entry = table[name]
        if entry == "no_validation":
            continue
        if isinstance(entry, dict):
            constraints, hint = entry["constraints"], entry.get("hint")
        else:
            constraints, hint = entry, None
        check_param(name, values[name], constraints, hint=hint)
