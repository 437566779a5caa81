"""Validation of text input shared by every estimator."""

import numbers

import numpy as np

_BARE_STRING_MESSAGE = "Iterable over raw text documents expected, string object received."


def check_documents(X, *, allow_empty=False):
    """Return ``X`` as a list of ``str``, or raise an error naming the bad item.

    Accepted: a list or tuple of str, a 1-D numpy array, a pandas Series, a
    one-column DataFrame or 2-D array (so the estimators work inside
    ``ColumnTransformer``), any other iterable of str. ``bytes`` are decoded
    as UTF-8.

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
    if hasattr(X, "iloc") and getattr(X, "ndim", 1) == 2:  # pandas DataFrame
        if X.shape[1] != 1:
            raise ValueError(
                f"Expected one text column, got a DataFrame with {X.shape[1]} columns "
                f"{list(X.columns)[:5]}; select the text column first."
            )
        X = X.iloc[:, 0]
    if hasattr(X, "to_numpy") and not isinstance(X, np.ndarray):  # Series and friends
        X = X.to_numpy(dtype=object)
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
    if not all(type(doc) is str for doc in docs):
        docs = [_as_text(doc, i) for i, doc in enumerate(docs)]
    _check_encodable(docs)
    return docs


def _check_encodable(docs):
    """Refuse lone surrogates (not Unicode text; tokenizers fail on them), naming the document."""
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
    if doc is None or (isinstance(doc, numbers.Real) and doc != doc):
        raise ValueError(
            f"document {index} is {doc!r} (missing); fill or drop missing texts before embedding."
        )
    raise TypeError(
        f"document {index} is of type {type(doc).__name__} ({doc!r:.40}), not str; "
        "convert the documents to text before embedding."
    )
