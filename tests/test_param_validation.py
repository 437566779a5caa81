"""The declarative parameter checks shared by every estimator (embedxfer/_param_validation.py)."""

from numbers import Integral, Real

import numpy as np
import pytest
from sklearn.base import BaseEstimator

from embedxfer._param_validation import (
    Interval,
    InvalidParameterError,
    Options,
    Rule,
    check_param,
    validate_params,
)


class Toy(BaseEstimator):
    _parameter_constraints = {
        "lr": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None), None],
        "pooling": {"constraints": [Options(["mean", "max"])], "hint": "Pick one."},
        "unfreeze": [Interval(Integral, 0, None), Options(["all"])],
        "flag": ["boolean"],
        "even": [Rule(lambda v: None if v % 2 == 0 else f"even={v!r} is odd.")],
    }

    def __init__(self, lr=0.1, batch_size=8, pooling="mean", unfreeze=0, flag=True, even=2):
        self.lr = lr
        self.batch_size = batch_size
        self.pooling = pooling
        self.unfreeze = unfreeze
        self.flag = flag
        self.even = even


def test_error_is_both_value_and_type_error():
    assert issubclass(InvalidParameterError, ValueError)
    assert issubclass(InvalidParameterError, TypeError)


def test_valid_parameters_pass():
    validate_params(Toy())
    validate_params(Toy(batch_size=None, unfreeze="all", flag=False, even=4))


@pytest.mark.parametrize(
    "params, message",
    [
        ({"lr": 0}, r"lr=0 is out of range; expected a value in \(0, inf\)\."),
        ({"lr": "fast"}, r"lr must be a number, got 'fast' \(str\)\."),
        ({"batch_size": 0}, r"batch_size=0 is out of range; expected a value in \[1, inf\)\."),
        ({"batch_size": 2.0}, r"batch_size must be an integer or None, got 2\.0 \(float\)\."),
        ({"batch_size": True}, r"batch_size must be an integer or None"),
        (
            {"pooling": "sum"},
            r"pooling='sum' is not supported; expected one of 'mean', 'max'\. "
            r"Pick one\.",
        ),
        ({"unfreeze": -1}, r"unfreeze=-1 is not supported; expected one of 'all', an integer in"),
        ({"flag": 1}, r"flag=1; expected True or False\."),
        ({"even": 3}, r"even=3 is odd\."),
    ],
)
def test_invalid_parameters_name_the_problem(params, message):
    with pytest.raises(InvalidParameterError, match=message):
        validate_params(Toy(**params))


def test_check_param_returns_the_value():
    assert check_param("k", 3, [Interval(Integral, 1, 5)]) == 3
    with pytest.raises(
        InvalidParameterError, match=r"k=6 is out of range; expected a value in \[1, 5\]"
    ):
        check_param("k", 6, [Interval(Integral, 1, 5)])


def test_only_named_parameters_are_checked():
    validate_params(Toy(lr=-1), params=["batch_size"])
    with pytest.raises(InvalidParameterError):
        validate_params(Toy(lr=-1), params=["lr"])


def test_numpy_strings_are_accepted_for_string_options():
    assert Options(["mean", "max"]).accepts(np.str_("max"))
    validate_params(Toy(pooling=np.str_("max"), unfreeze=np.str_("all")))
    with pytest.raises(InvalidParameterError, match=r"pooling=.*'sum'.* is not supported"):
        validate_params(Toy(pooling=np.str_("sum")))


def test_bool_and_int_options_stay_distinct():
    assert Options([1]).accepts(1)
    assert not Options([1]).accepts(True)
    assert Options([True]).accepts(True)
    assert not Options([True]).accepts(1)
    assert not Options(["1"]).accepts(1)
