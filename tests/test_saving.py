"""Saving fitted pipelines with the ecosystem's tools: skops, joblib and MLflow.

Every public estimator's own skops and pickle round trips are in
tests/test_common.py (and test_image*.py, test_cache.py); here a whole
pipeline holding a cache goes through each tool a user reaches for.
"""

import pickle
from pathlib import Path

import joblib
import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from embedxfer import EmbeddingCache, WordVectorEmbedder

TEXTS = ["a good film", "a dull film", "great acting", "awful plot", "fine", "boring"] * 2
LABELS = [1, 0, 1, 0, 1, 0] * 2
OURS = ["embedxfer.EmbeddingCache", "embedxfer.WordVectorEmbedder"]


@pytest.fixture(scope="module")
def pipeline(glove, tmp_path_factory):
    cache = EmbeddingCache(tmp_path_factory.mktemp("cache"))
    embedder = WordVectorEmbedder(vectors="glove-6B-50d", weighting="sif", cache=cache)
    return make_pipeline(embedder, LogisticRegression()).fit(TEXTS, LABELS)


def test_skops_needs_only_public_names_trusted(pipeline):
    blob = sio.dumps(pipeline)
    assert sio.get_untrusted_types(data=blob) == OURS
    assert len(blob) < 100_000  # the 400k GloVe vectors are named, not stored
    restored = sio.loads(blob, trusted=OURS)
    np.testing.assert_array_equal(restored.predict_proba(TEXTS), pipeline.predict_proba(TEXTS))
    assert restored[0].cache.path == pipeline[0].cache.path


def test_joblib_round_trip(pipeline, tmp_path):
    joblib.dump(pipeline, tmp_path / "model.joblib")
    assert (tmp_path / "model.joblib").stat().st_size < 100_000
    restored = joblib.load(tmp_path / "model.joblib")
    np.testing.assert_array_equal(restored.predict_proba(TEXTS), pipeline.predict_proba(TEXTS))


@pytest.mark.slow  # importing MLflow takes seconds
def test_mlflow_through_skops(pipeline, tmp_path):
    mlflow_sklearn = pytest.importorskip("mlflow.sklearn")
    folder = tmp_path / "model"
    mlflow_sklearn.save_model(
        pipeline,
        folder,
        serialization_format=mlflow_sklearn.SERIALIZATION_FORMAT_SKOPS,
        skops_trusted_types=OURS,
    )
    assert (folder / "model.skops").is_file()
    # The inferred requirements name embedxfer, whose core install brings the
    # default vectors and pyarrow: the environment MLflow rebuilds works.
    assert "embedxfer" in (folder / "requirements.txt").read_text()
    restored = mlflow_sklearn.load_model(str(folder))
    np.testing.assert_array_equal(restored.predict_proba(TEXTS), pipeline.predict_proba(TEXTS))


# Fitted estimators pickled by embedxfer 0.1.0 before its modules moved into the
# text/, image/, _core/ and _torch/ packages (on the first 60 packaged SMS
# messages, as below): pickles name the public path, so they still load.
# (StaticEmbedder's tables have since been keyed by the model's bytes instead of
# its path, so its earlier pickles name a table that no longer exists.)
PICKLED_BEFORE_THE_MOVE = Path(__file__).parent / "data" / "pickles"


def _sms(n=60):
    from embedxfer.datasets import load_sms_spam

    texts, labels = load_sms_spam(return_X_y=True)
    return [str(t) for t in texts[:n]], np.asarray(labels)[:n]


def _unpickle(name):
    return pickle.loads((PICKLED_BEFORE_THE_MOVE / f"{name}.pkl").read_bytes())


@pytest.mark.parametrize(
    "name, fresh",
    [
        ("word", lambda: WordVectorEmbedder("glove-6B-50d", weighting="usif")),
        ("sentence", lambda: __import__("embedxfer").SentenceEmbedder()),
    ],
)
def test_embedders_pickled_before_the_move_transform_as_a_fresh_fit(name, fresh):
    if name != "word":
        pytest.importorskip("torch")
    texts, _ = _sms()
    loaded = _unpickle(name)
    assert type(loaded).__module__ == "embedxfer"
    fitted = fresh().fit(texts if name != "sentence" else texts[:5])
    np.testing.assert_allclose(loaded.transform(texts[:8]), fitted.transform(texts[:8]), atol=1e-6)


def test_classifiers_pickled_before_the_move_predict():
    pytest.importorskip("torch")
    texts, labels = _sms()
    classifier = _unpickle("finetune")
    proba = classifier.predict_proba(texts[:8])
    assert proba.shape == (8, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert set(classifier.predict(texts)) <= set(labels)


def test_image_estimators_pickled_before_the_move_still_work():
    pytest.importorskip("torch")
    from _image_samples import texture_patches

    (X, y), _ = texture_patches(per_image=4)
    assert _unpickle("image").transform(X[:3]).shape[0] == 3
    assert set(_unpickle("image_clf").predict(X[:3])) <= set(y)
