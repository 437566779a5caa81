"""Validation of text input shared by every estimator."""

import numbers
from collections.abc import Iterator, Mapping, Set

import numpy as np

_BARE_STRING_MESSAGE = "Iterable over raw text documents expected, string object received."


def check_documents(X, *, allow_empty=False):
    """Return ``X`` as a list of ``str``, or raise an error naming the bad item.

    Accepted: a list or tuple of str, a 1-D numpy array, a Series or
    one-column DataFrame of pandas or polars, a pyarrow Array, ChunkedArray
    or one-column Table, a one-column 2-D array (so the estimators work
    inside ``ColumnTransformer``), any other iterable of str. ``bytes`` are
    decoded as UTF-8. Refused: a mapping (iterating it gives its keys) and
    a set (it has no row order); missing values (``None``, NaN, ``pd.NA``,
    ``pd.NaT``).

    Parameters
    ----------
    X : iterable of str
        The documents.
    allow_empty : bool, default=False
        Whether zero documents are accepted.

    Returns
    -------
    docs : list of str
    """
    if isinstance(X, (str, bytes)):
        raise ValueError(_BARE_STRING_MESSAGE)
    if X is None:
        raise ValueError("Expected an iterable of text documents, got None.")
    if isinstance(X, Mapping):
        raise TypeError(
            f"Expected a sequence of text documents, got a {type(X).__name__}, whose keys would "
            "be embedded; pass list(d.values()) to embed its values."
        )
    if isinstance(X, Set):
        raise TypeError(
            f"Expected a sequence of text documents, got a {type(X).__name__}, which has no row "
            "order; pass a list (e.g. sorted(documents))."
        )
    X = column_values(X, "text")
    if isinstance(X, np.ndarray):
        if X.ndim == 2 and X.shape[1] == 1:
            X = X[:, 0]
        elif X.ndim != 1:
            raise ValueError(
                f"Expected a 1-D array of text documents, got an array of shape {X.shape}."
            )
        docs = X.tolist()
    else:
        try:
            docs = list(X)
        except TypeError:
            raise TypeError(
                f"Expected an iterable of text documents, got {type(X).__name__}."
            ) from None
    if not docs and not allow_empty:
        raise ValueError("Found 0 documents; at least one is required.")
    if set(map(type, docs)) - {str}:
        docs = [_as_text(doc, i) for i, doc in enumerate(docs)]
    _check_encodable(docs)
    return docs


def read_once(X):
    """``X`` as a list when it is a one-shot iterator (a generator), else ``X`` unchanged.

    For methods that read the input twice, such as ``fit_transform`` as
    ``fit(X).transform(X)``: the second read of an iterator would find it
    empty. Containers (lists, arrays, Series, tables) are left as they are,
    so nothing is copied and their index still reaches ``set_output``.

    Parameters
    ----------
    X : object
        The input.

    Returns
    -------
    X : list or object
    """
    return list(X) if isinstance(X, Iterator) else X


def is_missing(value):
    """Whether ``value`` is a missing value: None, NaN, ``pd.NA`` or ``pd.NaT``.

    Recognises pandas' missing values by their type, so pandas is not
    imported.

    Parameters
    ----------
    value : object
        One item of the input.

    Returns
    -------
    missing : bool
    """
    if value is None:
        return True
    if isinstance(value, numbers.Real):
        return value != value
    return _is_pandas_missing(type(value))


def _is_pandas_missing(kind):
    return kind.__name__ in _PANDAS_MISSING and kind.__module__.startswith("pandas")


_PANDAS_MISSING = frozenset({"NAType", "NaTType"})


def column_values(X, noun):
    """The values of a column or one-column table of pandas, polars or pyarrow; else ``X``.

    pyarrow and polars columns become a list (missing values as ``None``),
    pandas ones an object array; anything else (a list, a numpy array, an
    iterator) is returned unchanged.

    Parameters
    ----------
    X : object
        The input.
    noun : str
        What the column holds (``"text"``, ``"image"``), for the error raised
        when a table has more than one column.

    Returns
    -------
    values : list, numpy.ndarray or X
    """
    X = _only_column(X, noun)
    if hasattr(X, "to_pylist"):  # pyarrow Array, ChunkedArray
        return X.to_pylist()
    if type(X).__module__.startswith("polars") and hasattr(X, "to_list"):  # polars Series
        return X.to_list()
    if hasattr(X, "to_numpy") and not isinstance(X, np.ndarray):  # pandas Series and friends
        return X.to_numpy(dtype=object)
    return X


def _only_column(X, noun):
    """The only column of a pandas, polars or pyarrow table, or ``X`` when it is not a table."""
    if hasattr(X, "iloc") and getattr(X, "ndim", 1) == 2:  # pandas DataFrame
        columns, first = list(X.columns), lambda: X.iloc[:, 0]
    elif hasattr(X, "get_columns") and hasattr(X, "to_series"):  # polars DataFrame
        columns, first = list(X.columns), lambda: X.to_series(0)
    elif hasattr(X, "column_names") and hasattr(X, "num_columns"):  # pyarrow Table, RecordBatch
        columns, first = list(X.column_names), lambda: X.column(0)
    else:
        return X
    if len(columns) != 1:
        raise ValueError(
            f"Expected one {noun} column, got a {type(X).__name__} with {len(columns)} columns "
            f"{columns[:5]}; select the {noun} column first."
        )
    return first()


def _check_encodable(docs):
    """Refuse lone surrogates (not Unicode text; tokenizers fail on them), naming the document."""
    if all(map(str.isascii, docs)):  # a flag of each string: no need to encode them
        return
    try:
        "".join(docs).encode("utf-8")
    except UnicodeEncodeError as err:
        ends = np.cumsum([len(doc) for doc in docs])
        index = int(np.searchsorted(ends, err.start, side="right"))
        offset = err.start - (int(ends[index - 1]) if index else 0)
        raise ValueError(
            f"document {index} holds {err.object[err.start]!r} at character {offset}, a lone "
            "surrogate that is not valid Unicode text (often bytes decoded with "
            "errors='surrogateescape'); clean or re-decode the text before embedding."
        ) from None


def _as_text(doc, index):
    if isinstance(doc, str):
        return str(doc)
    if isinstance(doc, (bytes, bytearray)):
        try:
            return bytes(doc).decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(
                f"document {index} is bytes that are not valid UTF-8 ({err.reason} at "
                f"byte {err.start}); decode it yourself before embedding."
            ) from None
    if is_missing(doc):
        raise ValueError(
            f"document {index} is {doc!r} (missing); fill or drop missing texts before embedding."
        )
    raise TypeError(
        f"document {index} is of type {type(doc).__name__} ({doc!r:.40}), not str; "
        "convert the documents to text before embedding."
    )


def check_label_types(labels):
    """Raise where ``labels`` (Python or numpy scalars) mix types other than numbers.

    Missing labels (None) are left to the caller's own check. Read the
    labels as given: ``np.asarray`` turns a list mixing numbers and str into
    str, so a list is checked before it becomes an array.
    """
    kinds = set(map(type, labels)) - {type(None)}
    if len({_label_kind(kind) for kind in kinds}) > 1:
        names = sorted({kind.__name__ for kind in kinds})
        raise ValueError(f"labels mix types {names}; convert them to one type (e.g. all str).")


def _label_kind(kind):
    """What a label type sorts with: numbers together, ``str`` with ``numpy.str_``..."""
    for family in (numbers.Number, str, bytes):
        if issubclass(kind, family):
            return family
    return kind


def missing_positions(values):
    """Positions of the missing values (:func:`is_missing`) in ``values``, a 1-D object array.

    Items are looked at one by one only where a type that can be missing
    (None, a float, pandas' NA) is among them.
    """
    kinds = set(map(type, values))
    if not any(
        kind is type(None) or issubclass(kind, (float, np.floating)) or _is_pandas_missing(kind)
        for kind in kinds
    ):
        return np.zeros(0, dtype=np.intp)
    return np.flatnonzero([is_missing(v) for v in values])
