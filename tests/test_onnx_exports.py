"""Stored ONNX exports are verified before use (text/_encoder_onnx.py, a tiny random BERT)."""

import os
import subprocess
import sys
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from embedxfer.text._encoder_onnx import exported_graph, make_session


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
    from embedxfer.text._encoder_onnx import onnx_home

    home = tmp_path / "home"
    home.write_text("not a folder", encoding="utf-8")
    monkeypatch.setenv("EMBEDXFER_HOME", str(home))
    with pytest.raises(NotADirectoryError, match="EMBEDXFER_HOME=.*is a file"):
        onnx_home()


# -- fused graphs (ONNX Runtime's transformer optimizer) ---------------------------------


def _fused(tiny, home, precision="float32"):
    return exported_graph(
        tiny, IDENTITY, all_layers=False, precision=precision, fused=True, home=home
    )


def _tokens(path, ids, mask):
    session = make_session(path, 1)
    names = {i.name for i in session.get_inputs()}
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    (tokens,) = session.run(["tokens"], {k: v for k, v in feeds.items() if k in names})
    return tokens[mask.astype(bool)]


def _ops(path):
    import onnx

    return {node.op_type for node in onnx.load(str(path)).graph.node}


@pytest.fixture(scope="module")
def padded_batch():
    rng = np.random.default_rng(1)
    mask = (np.arange(9)[None, :] < np.array([[9], [5], [2], [7]])).astype(np.int64)
    return rng.integers(1, 120, size=mask.shape) * mask, mask


def test_fused_graph_fuses_attention_and_equals_the_plain_graph(tiny, tmp_path, padded_batch):
    plain, fused = _export(tiny, tmp_path), _fused(tiny, tmp_path)
    assert fused.parent != plain.parent
    assert {"Attention", "SkipLayerNormalization"} <= _ops(fused)
    assert "Attention" not in _ops(plain)
    np.testing.assert_allclose(
        _tokens(fused, *padded_batch), _tokens(plain, *padded_batch), atol=1e-4, rtol=0
    )
    int8 = _fused(tiny, tmp_path, "int8")
    assert int8.parent not in (plain.parent, fused.parent)
    assert "QAttention" in _ops(int8)
    # sound stored exports are used silently
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _fused(tiny, tmp_path) == fused and _fused(tiny, tmp_path, "int8") == int8


def test_fused_key_changes_with_the_fusion_recipe(monkeypatch):
    import embedxfer.text._encoder_onnx as onnx_module

    def key(**settings):
        return onnx_module.export_key(IDENTITY, all_layers=False, **settings)[0]

    plain, fused = key(precision="float32"), key(precision="float32", fused=True)
    assert len({plain, fused, key(precision="int8", fused=True)}) == 3
    monkeypatch.setattr(onnx_module, "_FUSION_VERSION", onnx_module._FUSION_VERSION + 1)
    assert key(precision="float32", fused=True) != fused
    assert key(precision="float32") == plain


def test_a_damaged_fused_export_is_rebuilt(tiny, tmp_path, padded_batch):
    path = _fused(tiny, tmp_path)
    expected = _tokens(path, *padded_batch)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.warns(UserWarning, match="ignoring the ONNX export.*checksum"):
        assert _fused(tiny, tmp_path) == path
    np.testing.assert_array_equal(_tokens(path, *padded_batch), expected)


def _raise(*args, **kwargs):
    raise RuntimeError("unsupported pattern")


@pytest.mark.parametrize(
    "breakage, match",
    [
        ("optimizer fails", r"optimizer failed \(RuntimeError: unsupported pattern"),
        ("output changes", r"differ from the plain graph's by"),
        ("optimizer missing", r"transformer optimizer is unavailable"),
    ],
)
def test_without_a_fused_graph_the_plain_export_is_used(
    tiny, tmp_path, monkeypatch, breakage, match
):
    import embedxfer.text._encoder_onnx as onnx_module
    from embedxfer.exceptions import EmbedxferWarning

    if breakage == "optimizer fails":
        import onnxruntime.transformers.optimizer as optimizer

        monkeypatch.setattr(optimizer, "optimize_model", _raise)
    elif breakage == "output changes":
        monkeypatch.setattr(onnx_module, "_FUSION_TOLERANCE", -1.0)
    else:
        monkeypatch.setitem(sys.modules, "onnxruntime.transformers.optimizer", None)
    with pytest.warns(EmbedxferWarning, match=f"no fused ONNX graph: .*{match}.*plain export"):
        fp32 = _fused(tiny, tmp_path)
    assert fp32 == _export(tiny, tmp_path)
    with pytest.warns(EmbedxferWarning, match="no fused ONNX graph"):
        int8 = _fused(tiny, tmp_path, "int8")
    assert int8 == _export(tiny, tmp_path, "int8")
    # nothing half-made is left behind: only the two plain exports
    assert len(list(tmp_path.iterdir())) == 2


def test_sessions_block_instead_of_spinning(tiny, tmp_path):
    session = make_session(_export(tiny, tmp_path), 2)
    options = session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.intra_op_num_threads == 2


class _CountingSession:
    def __init__(self, session):
        self.session, self.rows = session, []

    def run(self, names, feeds):
        self.rows.append(len(feeds["input_ids"]))
        return self.session.run(names, feeds)


@pytest.mark.parametrize("all_layers", [False, True])
def test_a_batch_runs_in_parts_of_bounded_tokens(
    tiny, tmp_path, padded_batch, monkeypatch, all_layers
):
    import embedxfer.text._encoder_onnx as onnx_module

    path = exported_graph(tiny, IDENTITY, all_layers=all_layers, precision="float32", home=tmp_path)
    ids, mask = padded_batch
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    session = _CountingSession(make_session(path, 1))
    (whole,) = session.session.run(["tokens"], feeds)
    monkeypatch.setattr(onnx_module, "TOKENS_PER_RUN", 2 * ids.shape[1])  # two rows a run
    parts = onnx_module.run_in_parts(session, feeds, batch_axis=int(all_layers))
    assert session.rows == [2, 2]
    np.testing.assert_allclose(parts, whole, atol=1e-6, rtol=0)
    monkeypatch.setattr(onnx_module, "TOKENS_PER_RUN", 1)  # never fewer than one row
    onnx_module.run_in_parts(session, feeds, batch_axis=int(all_layers))
    assert session.rows[2:] == [1, 1, 1, 1]


class _Session(_CountingSession):
    def get_inputs(self):
        return self.session.get_inputs()


@pytest.mark.parametrize("precision, runs", [("float32", [2, 2]), ("int8", [4])])
def test_only_float32_batches_run_in_parts(
    tiny, tmp_path, padded_batch, monkeypatch, precision, runs
):
    import embedxfer.text._encoder_onnx as onnx_module

    ids, mask = padded_batch
    session = _Session(make_session(_export(tiny, tmp_path, precision), 1))
    backend = onnx_module.OnnxEncoderBackend(tiny, {False: session}, precision=precision)
    monkeypatch.setattr(onnx_module, "TOKENS_PER_RUN", 2 * ids.shape[1])
    features = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
    features["token_type_ids"] = torch.zeros_like(features["input_ids"])
    tokens = backend._run(features, False)
    assert session.rows == runs and tuple(tokens.shape[:2]) == ids.shape
