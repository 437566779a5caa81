"""Reading labelled text from CSV, JSON Lines, Parquet and plain text files."""

import contextlib
import csv
import difflib
import gzip
import io
import json
import os
import sys
import zlib
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from .._core.optional import PYARROW_INSTALL_HINT, import_optional
from .._core.safe_files import read_regular_file
from ..exceptions import ColumnNotFoundError

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet", ".pq")
TEXT_SUFFIXES = (".txt", ".text")


def load_csv(path, text_column="text", label_column="label"):
    """Load documents (and labels) from a CSV, TSV, JSON Lines or Parquet file.

    The format follows the file name: ``.csv``, ``.tsv``, ``.jsonl`` /
    ``.ndjson`` / ``.json`` (one JSON object a line), ``.parquet`` / ``.pq``;
    ``.gz`` compressed CSV, TSV and JSON Lines are read as well. Text is read
    as UTF-8. Empty CSV cells are empty documents, not missing values.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    text_column : str, default="text"
        Column (or JSON field) holding the documents.
    label_column : str or None, default="label"
        Column holding the labels; ``None`` reads documents only.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``data`` (list of str), ``target`` (ndarray of labels, or ``None``),
        ``target_names`` (sorted distinct labels, or ``None``), ``columns``
        (all column names in the file), ``filename`` and ``DESCR``. Labels
        that are all integers (``"0"``, ``"1"``) come back as integers.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ColumnNotFoundError
        When a column is not in the file; the message lists the columns it
        has and the closest name.
    ValueError
        For an unknown file type, a missing value in the text or label
        column, or a document that is not text.

    See Also
    --------
    load_sms_spam : The labelled dataset shipped with embedxfer.

    Examples
    --------
    >>> import tempfile, os
    >>> from embedxfer.datasets import load_csv
    >>> folder = tempfile.mkdtemp()
    >>> path = os.path.join(folder, "reviews.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("text,label\\ngreat film,1\\n\\"dull, slow\\",0\\n")
    >>> bunch = load_csv(path)
    >>> bunch.data, bunch.target
    (['great film', 'dull, slow'], array([1, 0]))
    """
    path = check_file(path)
    columns, get_column = _read_table(path)
    raw_texts = get_column(_check_column(path, columns, text_column, "text_column"))
    texts = _text_values(raw_texts, path, text_column)
    target = target_names = None
    if label_column is not None:
        raw = get_column(_check_column(path, columns, label_column, "label_column"))
        target = _label_values(raw, path, label_column)
        target_names = np.unique(target)
    descr = f"{len(texts)} documents from {path} (text column {text_column!r}"
    if target is not None:
        descr += f", label column {label_column!r}, {len(target_names)} classes"
    descr += ")."
    return Bunch(
        data=texts,
        target=target,
        target_names=target_names,
        columns=list(columns),
        filename=str(path),
        DESCR=descr,
    )


def load_text_lines(path):
    """Read a UTF-8 text file as one document a line (line ends removed).

    Empty lines are kept as empty documents so that row ``i`` of the output
    is line ``i + 1`` of the file. ``"-"`` reads standard input.

    Parameters
    ----------
    path : str or os.PathLike
        The file, optionally ``.gz`` compressed, or ``"-"``.

    Returns
    -------
    documents : list of str
        One document per line of the file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from embedxfer.datasets import load_text_lines
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "docs.txt"
    >>> _ = path.write_text("first document\\n\\nthird, after an empty line\\n")
    >>> load_text_lines(path)
    ['first document', '', 'third, after an empty line']
    """
    if os.fspath(path) == "-":
        text = sys.stdin.buffer.read()
        return split_lines(_decode(text, "<stdin>"))
    path = check_file(path)
    return split_lines(_decode(_read_bytes(path), path))


def split_lines(text):
    """Lines ended by ``\n`` (or ``\r\n``), and only those.

    Unlike ``str.splitlines``, form feeds, vertical tabs and Unicode line or
    paragraph separators inside a line stay in it, so that item ``i`` is
    line ``i + 1`` as ``wc -l``, editors and other tools count lines.
    """
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def check_file(path):
    """``Path(path)``, raising a clear ``FileNotFoundError`` when it is not a file."""
    path = Path(os.fspath(path)).expanduser()
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; pass a data file.")
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    return path


def file_kind(path):
    """``"csv"``, ``"tsv"``, ``"jsonl"``, ``"parquet"`` or ``"text"`` from the file name."""
    name = Path(os.fspath(path)).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    suffix = Path(name).suffix
    kinds = {
        ".csv": "csv",
        ".tsv": "tsv",
        ".jsonl": "jsonl",
        ".ndjson": "jsonl",
        ".json": "jsonl",
        ".parquet": "parquet",
        ".pq": "parquet",
        ".txt": "text",
        ".text": "text",
    }
    if suffix not in kinds:
        raise ValueError(
            f"cannot tell the format of {path!s} from its name; expected one of "
            f"{', '.join(TABLE_SUFFIXES + TEXT_SUFFIXES)} (optionally .gz)."
        )
    return kinds[suffix]


# -- internals -----------------------------------------------------------------


def _read_bytes(path):
    try:
        data = read_regular_file(path)
    except ValueError as err:
        raise ValueError(f"{err}; pass a data file.") from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError(f"{path} looks gzip-compressed but cannot be read: {err}") from None
    return data


def _decode(data, path):
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path} is not UTF-8 text (byte {err.start}: {data[err.start : err.start + 1]!r}); "
            "convert it to UTF-8 first."
        ) from None


def _read_table(path):
    """``(columns, get_column)`` for a table file; ``get_column(name)`` gives a list."""
    kind = file_kind(path)
    if kind == "parquet":
        return _read_parquet(path)
    if kind == "text":
        raise ValueError(
            f"{path} is a plain text file (one document a line) and has no columns; "
            "use a CSV, TSV, JSON Lines or Parquet file for labelled data."
        )
    text = _decode(_read_bytes(path), path)
    if kind == "jsonl":
        return _read_jsonl(text, path)
    rows = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if kind == "tsv" else ",")
    with _field_size_limit(len(text) + 1):
        try:
            header = next(rows)
        except StopIteration:
            raise ValueError(
                f"{path} is empty; expected a header line naming the columns."
            ) from None
        except csv.Error as err:
            raise ValueError(f"{path}: cannot parse the header line: {err}") from None
        try:
            body = list(rows)
        except csv.Error as err:
            raise ValueError(f"{path}: malformed CSV near line {rows.line_num}: {err}") from None
    body = [row for row in body if row]  # blank lines carry no record
    width = len(header)
    bad = next((i for i, row in enumerate(body) if len(row) != width), None)
    if bad is not None:
        raise ValueError(
            f"{path}: record {bad + 1} has {len(body[bad])} fields but the header has {width} "
            f"({', '.join(map(repr, header))}); quote fields that contain the delimiter."
        )
    position = {name: i for i, name in enumerate(header)}
    return header, lambda name: [row[position[name]] for row in body]


@contextlib.contextmanager
def _field_size_limit(size):
    """Let the csv module read fields up to ``size`` characters (a long document is ordinary).

    Its default limit is 131,072 characters; no field can be longer than
    the whole text, so that bounds it. The module-wide limit is put back after.
    """
    before = csv.field_size_limit()
    csv.field_size_limit(max(before, min(size, sys.maxsize // 2)))
    try:
        yield
    finally:
        csv.field_size_limit(before)


def _read_jsonl(text, path):
    records = []
    for number, line in enumerate(split_lines(text), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{path}: line {number} is not valid JSON ({err.msg}); expected one JSON "
                "object a line (JSON Lines)."
            ) from None
        if not isinstance(record, dict):
            raise ValueError(
                f"{path}: line {number} is a JSON {type(record).__name__}, not an object; "
                "expected one JSON object a line (JSON Lines)."
            )
        records.append(record)
    columns = list(dict.fromkeys(key for record in records[:1000] for key in record))
    missing = object()

    def get_column(name):
        values = [record.get(name, missing) for record in records]
        return [None if value is missing else value for value in values]

    return columns, get_column


def _read_parquet(path):
    pq = import_optional(
        "pyarrow.parquet",
        f"reading Parquet files needs pyarrow; {PYARROW_INSTALL_HINT} (or 'embedxfer[all]').",
    )
    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for a bad file
        raise ValueError(f"{path} cannot be read as Parquet: {err}") from None
    return table.column_names, lambda name: table.column(name).to_pylist()


def _check_column(path, columns, name, parameter):
    if name in columns:
        return name
    close = difflib.get_close_matches(str(name), [str(c) for c in columns], n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    listed = ", ".join(repr(c) for c in columns) or "none"
    raise ColumnNotFoundError(
        f"{Path(path).name} has no column {name!r} ({parameter}); its columns are: {listed}.{hint}"
    )


def _text_values(values, path, column):
    bad = next((i for i, v in enumerate(values) if not isinstance(v, str)), None)
    if bad is None:
        return values
    value = values[bad]
    if value is None or (isinstance(value, float) and np.isnan(value)):
        raise ValueError(
            f"{Path(path).name}: row {bad} of column {column!r} is missing; fill or drop "
            "missing texts before embedding."
        )
    # Numbers in a text column (e.g. a JSON field) are texts that look numeric.
    if (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in values)
    ):
        return [v if isinstance(v, str) else str(v) for v in values]
    raise ValueError(
        f"{Path(path).name}: row {bad} of column {column!r} is a {type(value).__name__} "
        f"({value!r:.40}), not text."
    )


def _label_values(values, path, column):
    bad = next(
        (
            i
            for i, v in enumerate(values)
            if v is None or v == "" or (isinstance(v, float) and np.isnan(v))
        ),
        None,
    )
    if bad is not None:
        raise ValueError(
            f"{Path(path).name}: row {bad} of label column {column!r} is missing; drop "
            "unlabelled rows or pass the right label column."
        )
    labels = np.asarray(values)
    if labels.dtype.kind == "U":
        try:
            as_int = labels.astype(np.int64)
        except ValueError:
            return labels
        if np.array_equal(as_int.astype(str), labels):
            return as_int
    if labels.dtype == object:
        raise ValueError(
            f"{Path(path).name}: label column {column!r} mixes types "
            f"({', '.join(sorted({type(v).__name__ for v in values}))}); use one type of label."
        )
    return labels
