"""Tests for embedxfer/datasets: the packaged SMS Spam Collection and the file loaders."""

import gzip
import json

import numpy as np
import pytest
from _shared_data import DATA_DIR as SHARED_DATA

from embedxfer.datasets import ColumnNotFoundError, load_csv, load_sms_spam, load_text_lines
from embedxfer.datasets._packaged import DATA_DIR

# -- the packaged dataset -------------------------------------------------------


def test_sms_spam_is_the_full_collection():
    sms = load_sms_spam()
    assert len(sms.data) == len(sms.target) == 5574
    assert all(type(text) is str and text for text in sms.data)
    assert sms.target.dtype == np.int64
    assert sms.target_names.tolist() == ["ham", "spam"]
    assert np.bincount(sms.target).tolist() == [4827, 747]
    assert sms.data[0].startswith("Go until jurong point")
    assert sms.target_names[sms.target[2]] == "spam"
    assert sms.frame is None


def test_sms_spam_matches_the_shared_copy():
    path = SHARED_DATA / "sms_spam" / "all.csv"
    if not path.exists():
        pytest.skip(f"shared dataset {path} is not available")
    import pandas as pd

    frame = pd.read_csv(path, keep_default_na=False)
    sms = load_sms_spam()
    assert sms.data == frame["text"].tolist()
    assert sms.target_names[sms.target].tolist() == frame["label"].tolist()


def test_sms_spam_carries_its_attribution_and_licence():
    sms = load_sms_spam()
    for needle in (
        "Almeida",
        "Hidalgo",
        "CC BY 4.0",
        "creativecommons.org/licenses/by/4.0",
        "archive.ics.uci.edu",
        "Changes",
    ):
        assert needle in sms.DESCR
    readme = (DATA_DIR / "README.md").read_text(encoding="utf-8")
    assert "Almeida" in readme and "CC BY 4.0" in readme and "Changes made" in readme
    licence = (DATA_DIR / "LICENSE-CC-BY-4.0.txt").read_text(encoding="utf-8")
    assert "Attribution 4.0 International Public License" in licence
    assert (DATA_DIR / "sms_spam.csv.gz").stat().st_size < 300_000


def test_sms_spam_as_frame_and_return_X_y():
    pytest.importorskip("pandas")
    sms = load_sms_spam(as_frame=True)
    assert list(sms.frame.columns) == ["text", "target"]
    assert sms.frame.shape == (5574, 2)
    assert sms.data.name == "text" and sms.target.name == "target"
    X, y = load_sms_spam(return_X_y=True)
    assert isinstance(X, list) and len(X) == len(y) == 5574


# -- load_csv -------------------------------------------------------------------


ROWS = [("a great film, really", 1), ('she said "no"\nthen left', 0), ("", 1), ("123", 0)]


def _write_csv(path, sep=","):
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter=sep)
        writer.writerow(["id", "text", "label"])
        for i, (text, label) in enumerate(ROWS):
            writer.writerow([i, text, label])


def test_load_csv_reads_quoted_fields_and_integer_labels(tmp_path):
    path = tmp_path / "d.csv"
    _write_csv(path)
    bunch = load_csv(path)
    assert bunch.data == [text for text, _ in ROWS]
    assert bunch.target.tolist() == [1, 0, 1, 0]
    assert bunch.target.dtype.kind == "i"
    assert bunch.target_names.tolist() == [0, 1]
    assert bunch.columns == ["id", "text", "label"]
    assert "4 documents" in bunch.DESCR


@pytest.mark.parametrize("suffix", [".tsv", ".csv.gz"])
def test_load_csv_tsv_and_gzip(tmp_path, suffix):
    plain = tmp_path / ("d.tsv" if suffix == ".tsv" else "d.csv")
    _write_csv(plain, sep="\t" if suffix == ".tsv" else ",")
    path = plain
    if suffix == ".csv.gz":
        path = tmp_path / "d.csv.gz"
        path.write_bytes(gzip.compress(plain.read_bytes()))
    assert load_csv(path).data == [text for text, _ in ROWS]


def test_load_csv_jsonl_with_other_columns(tmp_path):
    path = tmp_path / "d.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for text, label in ROWS:
            fh.write(json.dumps({"body": text, "topic": ["neg", "pos"][label]}) + "\n")
        fh.write("\n")  # a trailing blank line is not a record
    bunch = load_csv(path, text_column="body", label_column="topic")
    assert bunch.data == [text for text, _ in ROWS]
    assert bunch.target.tolist() == ["pos", "neg", "pos", "neg"]
    assert bunch.target_names.tolist() == ["neg", "pos"]


def test_load_csv_parquet_and_no_labels(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    table = pa.table({"text": [t for t, _ in ROWS], "label": [y for _, y in ROWS]})
    pq.write_table(table, path)
    bunch = load_csv(path, label_column=None)
    assert bunch.data == [text for text, _ in ROWS]
    assert bunch.target is None and bunch.target_names is None
    assert load_csv(path).target.tolist() == [1, 0, 1, 0]


def test_load_csv_on_shared_data_matches_pandas():
    path = SHARED_DATA / "bbc_news" / "all.csv"
    if not path.exists():
        pytest.skip(f"shared dataset {path} is not available")
    import pandas as pd

    frame = pd.read_csv(path, keep_default_na=False)
    bunch = load_csv(path)
    assert bunch.data == frame["text"].tolist()
    assert bunch.target.tolist() == frame["label"].tolist()


def test_load_csv_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file: .*missing.csv"):
        load_csv(tmp_path / "missing.csv")


def test_load_csv_wrong_column_lists_the_columns(tmp_path):
    path = tmp_path / "d.csv"
    _write_csv(path)
    with pytest.raises(ColumnNotFoundError) as err:
        load_csv(path, text_column="txt")
    message = str(err.value)
    assert "no column 'txt'" in message
    assert "'id', 'text', 'label'" in message
    assert "Did you mean 'text'?" in message
    with pytest.raises(ColumnNotFoundError, match="label_column"):
        load_csv(path, label_column="category")


def test_load_csv_missing_values_are_named(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "ok", "label": 1}\n{"text": null, "label": 0}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="row 1 of column 'text' is missing"):
        load_csv(path)
    path.write_text('{"text": "ok", "label": 1}\n{"text": "b"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="row 1 of label column 'label' is missing"):
        load_csv(path)


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("d.csv", "text,label\na,1,extra\n", "record 1 has 3 fields"),
        ("d.csv", b"text,label\n\xff\xfe,1\n", "not UTF-8"),
        ("d.csv", "", "is empty"),
        ("d.jsonl", "[1, 2]\n", "not an object"),
        ("d.jsonl", "{bad json\n", "not valid JSON"),
        ("d.xlsx", "x", "cannot tell the format"),
        ("d.txt", "one\ntwo\n", "plain text file"),
    ],
)
def test_load_csv_bad_files(tmp_path, name, content, match):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=match):
        load_csv(path)


def test_load_text_lines_keeps_empty_lines(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_bytes("first doc\r\n\nthird doc ünï\n".encode())
    assert load_text_lines(path) == ["first doc", "", "third doc ünï"]
    gz = tmp_path / "docs.txt.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert load_text_lines(gz) == ["first doc", "", "third doc ünï"]
    with pytest.raises(FileNotFoundError):
        load_text_lines(tmp_path / "none.txt")
