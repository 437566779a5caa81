import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from embedxfer._core.validation import check_documents, is_missing, read_once


@pytest.mark.parametrize(
    "X",
    [
        ["a", "b"],
        ("a", "b"),
        np.array(["a", "b"]),
        np.array(["a", "b"], dtype=object),
        np.array([["a"], ["b"]], dtype=object),
        pd.Series(["a", "b"]),
        pd.DataFrame({"text": ["a", "b"]}),
        iter(["a", "b"]),
        [b"a", "b"],
        pd.Series(["a", "b"], dtype="string"),
        pd.Series(["a", "b"], dtype="string[pyarrow]"),
        pl.Series(["a", "b"]),
        pl.DataFrame({"text": ["a", "b"]}),
        pl.Series(["a", "b"], dtype=pl.Categorical),
        pa.array(["a", "b"]),
        pa.array(["a", "b"], type=pa.large_string()),
        pa.chunked_array([["a"], ["b"]]),
        pa.table({"text": ["a", "b"]}),
        pa.record_batch({"text": ["a", "b"]}),
    ],
)
def test_accepted_containers(X):
    assert check_documents(X) == ["a", "b"]


def test_bare_string_rejected_with_sklearn_message():
    with pytest.raises(ValueError, match="Iterable over raw text documents expected"):
        check_documents("one document")


@pytest.mark.parametrize(
    "X, error, message",
    [
        (["ok", None], ValueError, r"document 1 is None \(missing\)"),
        (["ok", "fine", float("nan")], ValueError, r"document 2 is nan \(missing\)"),
        (pd.Series(["ok", None]), ValueError, r"document 1 is (None|nan) \(missing\)"),
        (["ok", 3], TypeError, "document 1 is of type int"),
        ([b"\xff\xfe"], ValueError, "document 0 is bytes that are not valid UTF-8"),
        (pd.DataFrame({"a": ["x"], "b": ["y"]}), ValueError, r"one text column.*\['a', 'b'\]"),
        (np.array([["a", "b"]]), ValueError, "one text column|1-D"),
        (pl.Series(["ok", None]), ValueError, r"document 1 is None \(missing\)"),
        (pa.chunked_array([["ok"], [None]]), ValueError, r"document 1 is None \(missing\)"),
        (pl.DataFrame({"a": ["x"], "b": ["y"]}), ValueError, r"one text column.*\['a', 'b'\]"),
        (pa.table({"a": ["x"], "b": ["y"]}), ValueError, r"one text column.*\['a', 'b'\]"),
        (pl.Series([1, 2]), TypeError, "document 0 is of type int"),
        ([], ValueError, "0 documents"),
        (None, ValueError, "got None"),
        (42, TypeError, "got int"),
        (pd.Series(["ok", pd.NA], dtype="string"), ValueError, r"document 1 is <NA> \(missing\)"),
        (pd.Series(["ok", None], dtype="string[pyarrow]"), ValueError, r"1 is <NA> \(missing\)"),
        (["ok", pd.NaT], ValueError, r"document 1 is NaT \(missing\)"),
        ({"a": "a good film"}, TypeError, r"got a dict, whose keys .*list\(d.values\(\)\)"),
        ({"a", "b"}, TypeError, "got a set, which has no row order; pass a list"),
        (frozenset({"a"}), TypeError, "got a frozenset, which has no row order"),
        ({"a": 1}.keys(), TypeError, "got a dict_keys, which has no row order"),
    ],
)
def test_bad_input_names_the_problem(X, error, message):
    with pytest.raises(error, match=message):
        check_documents(X)


def test_empty_allowed_when_asked():
    assert check_documents([], allow_empty=True) == []


def test_missing_values_are_recognised_without_pandas_types_mixed_up():
    assert all(map(is_missing, [None, float("nan"), np.float32("nan"), pd.NA, pd.NaT]))
    assert not any(map(is_missing, ["", 0, 0.0, False, "nan", "NA", np.datetime64("2020")]))


def test_read_once_lists_iterators_only():
    series = pd.Series(["a", "b"])
    assert read_once(series) is series
    assert read_once(d for d in ["a", "b"]) == ["a", "b"]
    assert read_once(iter(("a",))) == ["a"]
