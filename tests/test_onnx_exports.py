"""Stored ONNX exports are verified before use (embedxfer/_onnx.py with a tiny random BERT)."""

import os
import subprocess
import sys
import warnings
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from embedxfer._onnx import exported_graph, make_session


@pytest.fixture(scope="module")
def tiny():
    config = transformers.BertConfig(
        vocab_size=120,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    torch.manual_seed(0)
    model = transformers.BertModel(config).eval()
    return SimpleNamespace(model=model, uses_token_type_ids=True)


IDENTITY = {"model": "tiny-bert", "weights": 1}


def _export(tiny, home, precision="float32"):
    return exported_graph(tiny, IDENTITY, all_layers=False, precision=precision, home=home)


def _quiet_export(tiny, home, precision="float32"):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a sound export is used silently
        return _export(tiny, home, precision)


def test_a_replaced_graph_is_exported_again(tiny, tmp_path):
    fp32 = _export(tiny, tmp_path)
    original = fp32.read_bytes()
    int8 = _export(tiny, tmp_path, "int8")
    assert int8 != fp32 and _quiet_export(tiny, tmp_path) == fp32
    # the int8 graph put in place of the float32 one is not served for float32
    fp32.write_bytes(int8.read_bytes())
    with pytest.warns(UserWarning, match="ignoring the ONNX export.*checksum"):
        assert _export(tiny, tmp_path) == fp32
    assert fp32.read_bytes() == original
    make_session(fp32, 1)


@pytest.mark.parametrize("damage", ["truncate", "remove", "manifest"])
def test_a_damaged_export_is_rebuilt(tiny, tmp_path, damage):
    path = _export(tiny, tmp_path)
    original = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(original[: len(original) // 2])
    elif damage == "remove":
        path.unlink()
    else:
        (path.parent / "manifest.json").write_text("{", encoding="utf-8")
    with pytest.warns(UserWarning, match="ignoring the ONNX export"):
        assert _export(tiny, tmp_path) == path
    assert path.read_bytes() == original
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    make_session(_quiet_export(tiny, tmp_path), 1)


def test_temporaries_of_killed_exports_are_removed(tiny, tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    orphan = tmp_path / f".0123abcd.{int(dead.stdout)}.x1y2"
    orphan.mkdir()
    (orphan / "model.onnx").write_bytes(b"\0" * 1000)
    alive = tmp_path / f".0123abcd.{os.getppid()}.x1y2"
    alive.mkdir()
    _export(tiny, tmp_path)
    assert not orphan.exists() and alive.exists()


def test_embedxfer_home_pointing_at_a_file_is_a_clear_error(tmp_path, monkeypatch):
    from embedxfer._onnx import onnx_home

    home = tmp_path / "home"
    home.write_text("not a folder", encoding="utf-8")
    monkeypatch.setenv("EMBEDXFER_HOME", str(home))
    with pytest.raises(NotADirectoryError, match="EMBEDXFER_HOME=.*is a file"):
        onnx_home()
