"""Declarative parameter constraints in scikit-learn's schema, checked at the start of ``fit``.

Each estimator lists what its parameters accept in a class attribute
``_parameter_constraints``: a dict from parameter name to a list of
constraints, any one of which the value must satisfy. The schema is
scikit-learn's (``sklearn.utils._param_validation``), so its
``check_param_validation`` and the inherited ``BaseEstimator._validate_params``
work on every estimator. A constraint is one of:

- ``Interval(numbers.Integral | numbers.Real | RealNotInt, left, right, closed=...)``;
- ``Options(values)`` (or scikit-learn's ``StrOptions``): one of fixed values;
- a type (any instance), ``None`` (the value None), ``callable`` or
  ``"callable"``, ``"boolean"``, ``"random_state"``, ``HasMethods([...])``;
- ``Rule(check, description)``: a check that fits none of the above;
- ``Hint(sentence)``: not a constraint but the way out, appended to the
  error message (it accepts nothing and is never listed as accepted).

``validate_params(estimator)`` checks them all and raises
:class:`~embedxfer.exceptions.InvalidParameterError` in scikit-learn's
words, followed by the hint, e.g. ``The 'lr' parameter of
TransformerClassifier must be a float in the range (0.0, inf). Got -1
instead.``.
"""

import numbers
from collections.abc import Callable, Collection, Iterable

import numpy as np
from sklearn.utils._param_validation import HasMethods, RealNotInt, StrOptions, make_constraint
from sklearn.utils._param_validation import Interval as _SklearnInterval
from sklearn.utils._param_validation import Options as _SklearnOptions

from ..exceptions import InvalidParameterError

__all__ = [
    "HasMethods",
    "Hint",
    "Interval",
    "InvalidParameterError",
    "Options",
    "RealNotInt",
    "Rule",
    "StrOptions",
    "check_param",
    "constraint_table",
    "validate_params",
]

_REPR_LIMIT = 80


class Interval(_SklearnInterval):
    """Numbers of one kind between two bounds (scikit-learn's ``Interval``).

    Parameters
    ----------
    kind : {numbers.Integral, numbers.Real, RealNotInt}
        ``Integral`` accepts ints (numpy's too), ``Real`` any real number;
        ``bool`` and NaN are never accepted.
    left, right : number or None
        The bounds; None leaves that side unbounded.
    closed : {"both", "left", "right", "neither"}, default="both"
        Which bounds belong to the interval. Over the integers an unbounded
        side is always open; over the reals a closed unbounded side admits
        infinity (scikit-learn's rule).
    """

    def __init__(self, kind, left, right, *, closed="both"):
        if kind is numbers.Integral:
            left_closed = closed in ("both", "left") and left is not None
            right_closed = closed in ("both", "right") and right is not None
            closed = {
                (True, True): "both",
                (True, False): "left",
                (False, True): "right",
                (False, False): "neither",
            }[left_closed, right_closed]
        super().__init__(kind, left, right, closed=closed)

    def is_satisfied_by(self, val):
        return not isinstance(val, (bool, np.bool_)) and super().is_satisfied_by(val)


class _ValueConstraint(_SklearnOptions):
    """Shared set-up of the constraints below that scikit-learn treats as ``Options``."""

    def __init__(self, options=(), value_type=object):
        # Not Options.__init__: it wants a set, and a tuple keeps the order messages list.
        self.hidden = False
        self.type = value_type
        self.options = tuple(options)
        self.deprecated = set()


def _same_kind(value, option):
    if isinstance(option, str):
        return isinstance(value, str)
    return type(value) is type(option)


class Options(_ValueConstraint):
    """One of a fixed set of values (compared with ``==``, type included).

    A string option accepts any ``str`` instance (numpy's ``np.str_`` too, which
    ``ParameterGrid`` over a numpy array produces); other options need the exact
    type, so ``True`` never matches ``1`` nor ``1`` matches ``True``. When every
    value is a string the instance is also scikit-learn's ``StrOptions``, so
    its tests generate an invalid string for it.

    Parameters
    ----------
    values : collection
        The accepted values, in the order error messages list them.
    """

    def __new__(cls, values=()):
        if (
            cls is Options
            and isinstance(values, Collection)
            and values
            and all(isinstance(v, str) for v in values)
        ):
            cls = _StrValues
        return super().__new__(cls)

    def __init__(self, values=()):
        values = tuple(values)
        strings = bool(values) and all(isinstance(v, str) for v in values)
        super().__init__(values, str if strings else object)

    def is_satisfied_by(self, val):
        return any(_same_kind(val, option) and val == option for option in self.options)

    def __str__(self):
        listed = ", ".join(repr(v) for v in self.options)
        if self.type is str:
            return f"a str among {{{listed}}}"
        return f"one of {{{listed}}}"


class _StrValues(Options, StrOptions):
    """``Options`` of strings only: scikit-learn's ``StrOptions`` as well."""


class Rule(_ValueConstraint):
    """A check that fits none of the other constraint kinds.

    Parameters
    ----------
    check : callable
        ``check(value)`` returns None when the value is accepted, otherwise
        the reason it is not (appended to the error message; may be ``""``).
        A value of a type the check cannot handle (it raises ``TypeError``,
        ``ValueError`` or ``AttributeError``) is not accepted.
    description : str, optional
        What the rule accepts, as the error message lists it ("a non-empty
        list of ints").
    """

    def __init__(self, check: Callable, description: str | None = None):
        super().__init__()
        self.check = check
        self.description = description

    def reason(self, val):
        """None when ``val`` is accepted, else why not (``""`` when the check says nothing)."""
        try:
            return self.check(val)
        except (TypeError, ValueError, AttributeError):
            return ""

    def is_satisfied_by(self, val):
        return self.reason(val) is None

    def __str__(self):
        return self.description or "a valid value"


class Hint(_ValueConstraint):
    """The way out, appended to a parameter's error message.

    Put it last in a parameter's list of constraints. It accepts no value
    and is hidden from the list of what the parameter accepts.

    Parameters
    ----------
    text : str
        A sentence naming the way out, e.g. "None uses the model's own limit."
    """

    def __init__(self, text: str):
        super().__init__()
        self.hidden = True
        self.text = text

    def is_satisfied_by(self, val):
        return False

    def __str__(self):
        return self.text


def _constraint_list(entry):
    """The constraints of one table entry in scikit-learn's form.

    Accepts the older ``{"constraints": [...], "hint": "..."}`` form and the
    string ``"callable"`` too.
    """
    if isinstance(entry, dict):
        hint = entry.get("hint")
        entry = [*entry["constraints"], *([Hint(hint)] if hint else [])]
    return [callable if isinstance(c, str) and c == "callable" else c for c in entry]


def constraint_table(table):
    """``table`` in scikit-learn's schema, every constraint checked.

    Parameters
    ----------
    table : dict
        Parameter name -> list of constraints, ``"no_validation"``, or the
        older ``{"constraints": [...], "hint": "..."}``.

    Returns
    -------
    table : dict
        Parameter name -> list of constraints or ``"no_validation"``.

    Raises
    ------
    ValueError
        When an entry holds something that is not a constraint.
    """
    out = {}
    for name, entry in table.items():
        if isinstance(entry, str) and entry == "no_validation":
            out[name] = entry
            continue
        out[name] = _constraint_list(entry)
        for constraint in out[name]:
            make_constraint(constraint)
    return out


class ConstraintTableMixin:
    """Puts a subclass's ``_parameter_constraints`` in scikit-learn's schema.

    Tables written in the older dict form (``{"constraints": [...], "hint":
    "..."}``) or with ``"callable"`` then work with scikit-learn's checks; an
    entry that is not a constraint fails when the class is defined.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        table = cls.__dict__.get("_parameter_constraints")
        if isinstance(table, dict):
            cls._parameter_constraints = constraint_table(table)


def _short_repr(value):
    text = repr(value)
    return text if len(text) <= _REPR_LIMIT else f"{text[: _REPR_LIMIT - 3]}..."


def _message(name, value, constraints, caller, hint):
    shown = [c for c in constraints if not c.hidden]
    accepted = [str(c) for c in shown]
    listed = accepted[0] if len(accepted) == 1 else f"{', '.join(accepted[:-1])} or {accepted[-1]}"
    owner = f" of {caller}" if caller else ""
    parts = [f"The {name!r} parameter{owner} must be {listed}. Got {_short_repr(value)} instead."]
    for constraint in constraints:
        if isinstance(constraint, Rule):
            reason = constraint.reason(value)
            if reason:
                parts.append(reason)
    parts += [c.text for c in constraints if isinstance(c, Hint)]
    if hint:
        parts.append(hint)
    return " ".join(parts)


def check_param(name, value, constraints, *, hint=None, caller=None):
    """Check one value against ``constraints``; return it or raise.

    Parameters
    ----------
    name : str
        The parameter's name, for the message.
    value : object
        Its value.
    constraints : list
        Accepted kinds (see the module's docstring).
    hint : str, optional
        A sentence appended to the message (the way out).
    caller : str, optional
        The estimator or function the parameter belongs to, for the message.

    Returns
    -------
    value : object
        ``value``, unchanged.

    Raises
    ------
    InvalidParameterError
        When no constraint accepts the value.
    """
    constraints = [make_constraint(c) for c in _constraint_list(constraints)]
    if any(c.is_satisfied_by(value) for c in constraints):
        return value
    raise InvalidParameterError(_message(name, value, constraints, caller, hint))


def validate_params(estimator, params: Iterable[str] | None = None):
    """Check ``estimator``'s parameters against its ``_parameter_constraints``.

    Parameters
    ----------
    estimator : estimator
        Its class has ``_parameter_constraints``: parameter name -> list of
        constraints. Parameters missing from the table are not checked
        (``"no_validation"`` marks them explicitly).
    params : iterable of str, optional
        Check only these parameters (default: all in the table).

    Raises
    ------
    InvalidParameterError
        Naming the first parameter no constraint accepts, and the estimator.
    """
    table = type(estimator)._parameter_constraints
    values = estimator.get_params(deep=False)
    caller = type(estimator).__name__
    for name in table if params is None else params:
        entry = table[name]
        if isinstance(entry, str) and entry == "no_validation":
            continue
        check_param(name, values[name], entry, caller=caller)
