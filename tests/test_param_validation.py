"""The declarative parameter checks every estimator shares (_core/param_validation.py)."""

import re
from numbers import Integral, Real

import numpy as np
import pytest
import sklearn.utils._param_validation as skpv
from sklearn.base import BaseEstimator
from sklearn.utils.estimator_checks import check_param_validation

from embedxfer._core.param_validation import (
    ConstraintTableMixin,
    Hint,
    Interval,
    InvalidParameterError,
    Options,
    Rule,
    check_param,
    constraint_table,
    validate_params,
)
from embedxfer.exceptions import EmbedxferError


class Toy(ConstraintTableMixin, BaseEstimator):
    _parameter_constraints = {
        "lr": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None), None],
        # The older dict form, put in scikit-learn's schema when the class is defined.
        "pooling": {"constraints": [Options(["mean", "max"])], "hint": "Pick one."},
        "unfreeze": [Interval(Integral, 0, None), Options(["all"]), Hint("Or 'all'.")],
        "flag": ["boolean"],
        "even": [Rule(lambda v: None if v % 2 == 0 else f"{v!r} is odd.", "an even int")],
        "func": ["callable", None],
    }

    def __init__(
        self, lr=0.1, batch_size=8, pooling="mean", unfreeze=0, flag=True, even=2, func=None
    ):
        self.lr = lr
        self.batch_size = batch_size
        self.pooling = pooling
        self.unfreeze = unfreeze
        self.flag = flag
        self.even = even
        self.func = func

    def fit(self, X, y=None):
        validate_params(self)
        return self


def test_error_is_scikit_learns_and_both_value_and_type_error():
    assert issubclass(InvalidParameterError, skpv.InvalidParameterError)
    assert issubclass(InvalidParameterError, ValueError)
    assert issubclass(InvalidParameterError, TypeError)
    assert issubclass(InvalidParameterError, EmbedxferError)


def test_constraints_are_scikit_learns():
    for constraint in (Interval(Integral, 1, None), Options(["a"]), Options([1]), Rule(bool)):
        assert skpv.make_constraint(constraint) is constraint
    assert isinstance(Options(["a", "b"]), skpv.StrOptions)
    assert not isinstance(Options(["a", 1]), skpv.StrOptions)


def test_valid_parameters_pass():
    validate_params(Toy())
    validate_params(Toy(batch_size=None, unfreeze="all", flag=False, even=4, func=len))


@pytest.mark.parametrize(
    "params, message",
    [
        ({"lr": 0}, r"'lr' parameter of Toy must be a float in the range \(0\.0, inf\)\. Got 0 "),
        ({"lr": "fast"}, r"'lr' parameter of Toy must be a float .*Got 'fast' instead\.$"),
        ({"batch_size": 0}, r"'batch_size' .*an int in the range \[1, inf\) or None\. Got 0 "),
        ({"batch_size": 2.0}, r"'batch_size' .*Got 2\.0 instead\."),
        ({"batch_size": True}, r"'batch_size' .*Got True instead\."),
        (
            {"pooling": "sum"},
            r"'pooling' .*a str among \{'mean', 'max'\}\. Got 'sum' .* Pick one\.$",
        ),
        (
            {"unfreeze": -1},
            r"'unfreeze' .*\[0, inf\) or a str among \{'all'\}\. Got -1 .* Or 'all'",
        ),
        ({"flag": 1}, r"'flag' parameter of Toy must be an instance of 'bool'.*Got 1 instead"),
        ({"even": 3}, r"'even' parameter of Toy must be an even int\. Got 3 instead\. 3 is odd\.$"),
        ({"func": "len"}, r"'func' parameter of Toy must be a callable or None\. Got 'len'"),
    ],
)
def test_invalid_parameters_name_the_estimator_parameter_and_way_out(params, message):
    with pytest.raises(InvalidParameterError, match=f"^The {message}"):
        validate_params(Toy(**params))


def test_scikit_learn_validation_works_on_the_table():
    """The inherited ``_validate_params`` and scikit-learn's own common check."""
    Toy()._validate_params()
    with pytest.raises(skpv.InvalidParameterError, match="The 'pooling' parameter of Toy"):
        Toy(pooling="sum")._validate_params()
    check_param_validation("Toy", Toy())


def test_out_of_range_values_as_scikit_learn_generates_them():
    for name, entry in Toy._parameter_constraints.items():
        for constraint in map(skpv.make_constraint, entry):
            try:
                bad = skpv.generate_invalid_param_val(constraint)
            except NotImplementedError:
                continue
            with pytest.raises(InvalidParameterError, match=f"The '{name}' parameter of Toy"):
                validate_params(Toy(**{name: bad}))


def test_long_values_are_cut_in_the_message():
    with pytest.raises(InvalidParameterError) as info:
        validate_params(Toy(pooling="x" * 500))
    assert len(str(info.value)) < 200 and "..." in str(info.value)


def test_check_param_returns_the_value():
    assert check_param("k", 3, [Interval(Integral, 1, 5)]) == 3
    with pytest.raises(
        InvalidParameterError,
        match=r"^The 'k' parameter must be an int in the range \[1, 5\]\. Got 6 instead\. Lower",
    ):
        check_param("k", 6, [Interval(Integral, 1, 5)], hint="Lower it.")


def test_only_named_parameters_are_checked():
    validate_params(Toy(lr=-1), params=["batch_size"])
    with pytest.raises(InvalidParameterError):
        validate_params(Toy(lr=-1), params=["lr"])


def test_numpy_strings_are_accepted_for_string_options():
    assert Options(["mean", "max"]).is_satisfied_by(np.str_("max"))
    validate_params(Toy(pooling=np.str_("max"), unfreeze=np.str_("all")))
    with pytest.raises(InvalidParameterError, match=r"'pooling' .*Got np\.str_\('sum'\)"):
        validate_params(Toy(pooling=np.str_("sum")))


def test_bool_and_int_options_stay_distinct():
    assert Options([1]).is_satisfied_by(1)
    assert not Options([1]).is_satisfied_by(True)
    assert Options([True]).is_satisfied_by(True)
    assert not Options([True]).is_satisfied_by(1)
    assert not Options(["1"]).is_satisfied_by(1)
    assert not Interval(Integral, 0, None).is_satisfied_by(np.True_)
    assert not Options(["a"]).is_satisfied_by(["a"])  # unhashable: rejected, not a crash


def test_a_table_entry_that_is_no_constraint_fails_when_the_class_is_defined():
    with pytest.raises(ValueError, match=re.escape("Unknown constraint type: 3")):

        class Broken(ConstraintTableMixin, BaseEstimator):
            _parameter_constraints = {"x": [3]}

    assert constraint_table({"x": "no_validation"}) == {"x": "no_validation"}
