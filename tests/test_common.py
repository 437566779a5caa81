"""The scikit-learn contract, checked on every public estimator.

scikit-learn's ``parametrize_with_checks`` skips estimators whose input is raw
text (``input_tags.two_d_array = False``), so this module runs the checks
that apply to text directly and adds text-input versions of the rest.
"""

import importlib.util
import pickle

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
import skops.io as sio
from _shared_data import sample_dataset_or_sms
from _tiny_encoder import tiny_encoder_dir
from sklearn.base import clone, is_classifier
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.utils import estimator_checks as ec
from sklearn.utils._param_validation import generate_invalid_param_val, make_constraint

import embedxfer
from embedxfer._core.param_validation import InvalidParameterError, validate_params

PUBLIC_ESTIMATORS = [
    "WordVectorEmbedder",
    "SentenceEmbedder",
    "TransformerClassifier",
    "SequenceClassifier",
    "StaticEmbedder",
    "HybridEmbedder",
    "ContrastiveEmbedder",
]


# Estimators that fine-tune or encode with a transformer for each candidate: their
# grid searches and refits take tens of seconds, so they run in the full tier only.
TRAINED_PER_FIT = {"ContrastiveEmbedder", "SentenceEmbedder", "TransformerClassifier"}


def slow_for(names, heavy=TRAINED_PER_FIT):
    """``names`` as parameters, those in ``heavy`` marked ``slow``."""
    return [pytest.param(n, marks=pytest.mark.slow) if n in heavy else n for n in names]


def _cheap_hybrid_blocks():
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    lsa = make_pipeline(TfidfVectorizer(), TruncatedSVD(n_components=5, random_state=0))
    return [("lsa", lsa), ("glove", embedxfer.WordVectorEmbedder())]


# Small, fast settings; each estimator's real defaults are checked by
# check_parameters_default_constructible. ContrastiveEmbedder fine-tunes a tiny
# random encoder here (tests/_tiny_encoder.py): its grid search and refits on
# all-MiniLM-L6-v2 took a minute; test_contrastive.py checks the real model.
FAST_PARAMS = {
    "WordVectorEmbedder": {},
    "SentenceEmbedder": {"batch_size": 16, "max_length": 32},
    "TransformerClassifier": {"epochs": 1, "max_length": 24, "batch_size": 16, "random_state": 0},
    "SequenceClassifier": {"epochs": 1, "random_state": 0},
    "StaticEmbedder": {"vocabulary_limit": 600, "n_components": 32},
    "HybridEmbedder": {"blocks": _cheap_hybrid_blocks()},
    "ContrastiveEmbedder": {
        "pairs_per_example": 2,
        "max_length": 24,
        "unfreeze": 1,
        # Two head epochs, not the default 16: both stages run, and the refit
        # checks still see the head stage's per-epoch state.
        "head_epochs": 2,
        "random_state": 0,
    },
}

# A grid with one parameter of each estimator that GridSearchCV can tune.
GRID = {
    "WordVectorEmbedder": {"pooling": ["mean", "max"]},
    "SentenceEmbedder": {"pooling": ["mean", "cls"]},
    "TransformerClassifier": {"lr": [1e-3, 3e-3]},
    "SequenceClassifier": {"freeze_embeddings": [True, False]},
    "StaticEmbedder": {"pooling": ["mean", "max"]},
    "HybridEmbedder": {"weights": [None, {"lsa": 3.0}]},
    "ContrastiveEmbedder": {"pairs_per_example": [1, 2]},
}

SKLEARN_CHECKS = [
    ec.check_estimator_cloneable,
    ec.check_estimator_tags_renamed,
    ec.check_valid_tag_types,
    ec.check_estimator_repr,
    ec.check_no_attributes_set_in_init,
    ec.check_parameters_default_constructible,
    ec.check_get_params_invariance,
    ec.check_set_params,
    ec.check_do_not_raise_errors_in_init_or_set_params,
]


TORCH_BACKED = {
    "SentenceEmbedder",
    "TransformerClassifier",
    "SequenceClassifier",
    "StaticEmbedder",
    "ContrastiveEmbedder",
}


ON_TINY_ENCODER = {"ContrastiveEmbedder"}


def make(name, **params):
    if name in TORCH_BACKED and importlib.util.find_spec("torch") is None:
        pytest.skip(f"{name} needs the transformers extra (torch)")
    cls = getattr(embedxfer, name)
    if name in ON_TINY_ENCODER:
        params = {"model": tiny_encoder_dir(), **params}
    return cls(**{**FAST_PARAMS[name], **params})


@pytest.fixture(scope="module")
def data():
    texts, labels = sample_dataset_or_sms("sst2", 48, split="train", seed=1)
    return texts, labels


@pytest.fixture(scope="module")
def fitted(data):
    """One fitted instance of each estimator, shared by the checks below."""
    texts, labels = data
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = make(name).fit(texts, labels)
        return cache[name]

    return get


def output(estimator, texts):
    if is_classifier(estimator):
        return estimator.predict_proba(texts)
    return estimator.transform(texts)


@pytest.mark.parametrize("name", PUBLIC_ESTIMATORS)
@pytest.mark.parametrize("check", SKLEARN_CHECKS, ids=lambda c: c.__name__)
def test_sklearn_api_checks(name, check):
    check(name, make(name))


@pytest.mark.parametrize("name", PUBLIC_ESTIMATORS)
def test_text_input_tags(name):
    tags = make(name).__sklearn_tags__()
    assert tags.input_tags.string and not tags.input_tags.two_d_array


@pytest.mark.parametrize("name", PUBLIC_ESTIMATORS)
def test_unfitted_estimator_raises_not_fitted(name, data):
    estimator = make(name)
    with pytest.raises(NotFittedError):
        output(estimator, data[0][:2])


@pytest.mark.parametrize("name", PUBLIC_ESTIMATORS)
def test_bare_string_rejected(name, data, fitted):
    texts, labels = data
    with pytest.raises(ValueError, match="Iterable over raw text documents expected"):
        make(name).fit("a single string", labels[:1])
    with pytest.raises(ValueError, match="Iterable over raw text documents expected"):
        output(fitted(name), "a single string")


@pytest.mark.parametrize("name", PUBLIC_ESTIMATORS)
def test_missing_document_named(name, fitted):
    with pytest.raises(ValueError, match="document 1 is None"):
        output(fitted(name), ["fine", None])


@pytest.mark.parametrize("name", PUBLIC_ESTIMATORS)
def test_fit_returns_self_keeps_params_and_sets_trailing_underscore_state(name, data):
    texts, labels = data
    estimator = make(name)
    before = {k: repr(v) for k, v in estimator.get_params().items()}
    public_before = {k for k in vars(estimator) if not k.startswith("_")}
    assert estimator.fit(texts, labels) is estimator
    assert {k: repr(v) for k, v in estimator.get_params().items()} == before
    new = {k for k in vars(estimator) if not k.startswith("_")} - public_before
    assert new and all(k.endswith("_") for k in new), new


@pytest.mark.parametrize("name", PUBLIC_ESTIMATORS)
def test_clone_is_unfitted_with_equal_params(name, fitted):
    estimator = fitted(name)
    twin = clone(estimator)
    assert repr(twin.get_params()) == repr(estimator.get_params())
    with pytest.raises(NotFittedError):
        output(twin, ["text"])


@pytest.mark.parametrize("name", PUBLIC_ESTIMATORS)
def test_pickle_round_trip_gives_same_output(name, data, fitted):
    estimator = fitted(name)
    texts = data[0][:8]
    expected = output(estimator, texts)  # first: whatever it caches is in place
    live = dict(estimator.__dict__)
    blob = pickle.dumps(estimator)
    # Pickling reads the estimator: what it leaves out stays in the live one.
    assert estimator.__dict__.keys() == live.keys()
    assert all(estimator.__dict__[k] is v for k, v in live.items())
    restored = pickle.loads(blob)
    np.testing.assert_allclose(output(restored, texts), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", PUBLIC_ESTIMATORS)
def test_accepts_series_and_one_column_frame(name, data, fitted):
    estimator = fitted(name)
    texts = data[0][:4]
    expected = output(estimator, texts)
    np.testing.assert_allclose(output(estimator, pd.Series(texts)), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        output(estimator, pd.DataFrame({"text": texts})), expected, rtol=1e-5, atol=1e-6
    )


# polars and pyarrow columns built from a list of texts (tests/test_validation.py has
# every container type; these go through each estimator).
DATAFRAME_INPUTS = {
    "polars Series": pl.Series,
    "polars DataFrame": lambda texts: pl.DataFrame({"text": texts}),
    "pyarrow ChunkedArray": lambda texts: pa.chunked_array([texts[:1], texts[1:]]),
    "pyarrow Table": lambda texts: pa.table({"text": texts}),
}


@pytest.mark.parametrize("name", PUBLIC_ESTIMATORS)
def test_accepts_polars_and_pyarrow_columns(name, data, fitted):
    estimator = fitted(name)
    texts = data[0][:4]
    expected = output(estimator, texts)
    for kind, column in DATAFRAME_INPUTS.items():
        np.testing.assert_allclose(
            output(estimator, column(texts)), expected, rtol=1e-5, atol=1e-6, err_msg=kind
        )


@pytest.mark.parametrize("name", PUBLIC_ESTIMATORS)
def test_skops_round_trip_trusts_only_public_names(name, data, fitted):
    estimator = fitted(name)
    texts = data[0][:8]
    blob = sio.dumps(estimator)
    untrusted = sio.get_untrusted_types(data=blob)
    # Only public names (a composite lists the public embedders it holds too).
    assert f"embedxfer.{name}" in untrusted
    assert all(t.startswith("embedxfer.") and "._" not in t for t in untrusted), untrusted
    restored = sio.loads(blob, trusted=untrusted)
    np.testing.assert_allclose(
        output(restored, texts), output(estimator, texts), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("name", ["WordVectorEmbedder", "SentenceEmbedder", "StaticEmbedder"])
def test_transformer_output_contract(name, data, fitted):
    estimator = fitted(name)
    texts = data[0][:5]
    out = estimator.transform(texts)
    assert out.dtype == np.float32 and out.shape == (5, estimator.n_features_out_)
    names = estimator.get_feature_names_out()
    assert len(names) == out.shape[1] and len(set(names)) == len(names)
    frame = clone(estimator).set_output(transform="pandas").fit(texts).transform(texts)
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == list(names)
    np.testing.assert_allclose(frame.to_numpy(), out, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", slow_for(PUBLIC_ESTIMATORS))
def test_grid_search_in_a_pipeline(name, data):
    texts, labels = data
    estimator = make(name)
    if is_classifier(estimator):
        search = GridSearchCV(estimator, GRID[name], cv=2)
    else:
        pipe = make_pipeline(estimator, LogisticRegression(max_iter=500))
        step = pipe.steps[0][0]
        grid = {f"{step}__{k}": v for k, v in GRID[name].items()}
        search = GridSearchCV(pipe, {**grid, "logisticregression__C": [0.1, 1.0]}, cv=2)
    search.fit(texts, labels)
    assert search.best_params_ and 0 <= search.best_score_ <= 1
    assert len(search.predict(texts[:3])) == 3


# Settings whose fitted state depends most on the training data (weight tables,
# removed components, vocabularies, trained weights).
REFIT_PARAMS = {
    "WordVectorEmbedder": [{"weighting": "tfidf"}, {"weighting": "sif"}, {"weighting": "usif"}],
    "SentenceEmbedder": [{}],
    "TransformerClassifier": [{}],
    "SequenceClassifier": [{}],
    "StaticEmbedder": [{}, {"adapt": True}],
    "HybridEmbedder": [{}],
    "ContrastiveEmbedder": [{}],
}


def _fitted_state(estimator):
    return {
        k: v
        for k, v in vars(estimator).items()
        if k.endswith("_") and not k.startswith("_") and not k.endswith("time_")
    }


@pytest.mark.parametrize(
    "name, params",
    [
        pytest.param(name, params, marks=[pytest.mark.slow] if name in TRAINED_PER_FIT else [])
        for name in PUBLIC_ESTIMATORS
        for params in REFIT_PARAMS[name]
    ],
    ids=lambda v: v if isinstance(v, str) else ",".join(f"{k}={x}" for k, x in v.items()),
)
def test_refit_equals_a_fresh_fit(name, params, data):
    """Fitted state comes from fit alone: fit on A then on B == a fresh fit on B."""
    texts, labels = data
    first, second = (texts[1::2], labels[1::2]), (texts[::2], labels[::2])
    assert len(np.unique(first[1])) == len(np.unique(second[1])) == 2
    probe = texts[:10]
    refitted = make(name, **params).fit(*first)
    output(refitted, probe)  # whatever transform-time state the first fit leads to
    refitted.fit(*second)
    fresh = make(name, **params).fit(*second)
    np.testing.assert_allclose(output(refitted, probe), output(fresh, probe), rtol=1e-5, atol=1e-6)
    state, expected = _fitted_state(refitted), _fitted_state(fresh)
    assert state.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, np.ndarray) and value.dtype.kind in "fc":
            np.testing.assert_allclose(state[key], value, rtol=1e-5, atol=1e-6, err_msg=key)
        elif isinstance(value, (np.ndarray, list, tuple, str, int, float, bool)):
            np.testing.assert_array_equal(
                np.asarray(state[key], dtype=object), np.asarray(value, dtype=object), err_msg=key
            )


@pytest.mark.parametrize("name", PUBLIC_ESTIMATORS)
def test_no_documents_give_no_rows_and_fit_needs_documents(name, fitted, data):
    """Inference on an empty batch (the last chunk of a stream, an empty partition)
    returns no rows of the usual width; fit refuses it, as scikit-learn does."""
    estimator = fitted(name)
    methods = ["predict", "predict_proba", "transform"] if is_classifier(estimator) else []
    for method in methods or ["transform"]:
        out = getattr(estimator, method)([])
        assert out.shape[0] == 0, method
        if method != "predict":
            assert out.shape[1] == getattr(estimator, method)(data[0][:1]).shape[1], method
    with pytest.raises(ValueError, match="0 documents|at least one"):
        clone(estimator).fit([], [])


@pytest.mark.parametrize("name", ["WordVectorEmbedder", "SentenceEmbedder", "StaticEmbedder"])
def test_displaying_a_fitted_embedder_reads_no_property(name, fitted, monkeypatch):
    """Jupyter's display lists fitted attributes; properties such as ``model_``
    load a model, or fail where its files are gone, so none is read."""
    estimator = fitted(name)
    lazy = [
        attr
        for attr, value in vars(type(estimator)).items()
        if isinstance(value, property) and attr.endswith("_") and not attr.startswith("_")
    ]
    assert lazy  # keyed_vectors_, model_, table_

    def unavailable(self):
        raise FileNotFoundError("the model's files are gone")

    for attr in lazy:
        monkeypatch.setattr(type(estimator), attr, property(unavailable))
    html = estimator._repr_html_()
    assert "n_features_out_" in html
    assert not any(f">{attr}<" in html for attr in lazy)


@pytest.mark.parametrize("name", ["WordVectorEmbedder", "SentenceEmbedder"])
def test_set_params_after_fit_never_mixes_old_state_with_new_params(name, data):
    """An embedder whose parameter changed after fit refuses to transform, or gives
    exactly a fresh fit's output (classifiers keep scikit-learn's rule: training
    parameters apply to the next fit)."""
    texts, labels = data
    changes = {
        "WordVectorEmbedder": [{"weighting": "sif"}],
        "SentenceEmbedder": [{"pooling": "cls"}, {"max_length": 8}, {"model": "other/model"}],
    }
    fitted = make(name).fit(texts, labels)
    for changed in changes[name]:
        estimator = clone(fitted).fit(texts, labels).set_params(**changed)
        try:
            got = output(estimator, texts[:6])
        except ValueError as err:
            assert "fit again" in str(err)
            continue
        fresh = make(name, **changed).fit(texts, labels)
        np.testing.assert_allclose(got, output(fresh, texts[:6]), rtol=1e-4, atol=1e-5)


# -- image estimators: images in, not text, so only the input-agnostic checks apply;
# tests/test_image.py covers their inputs, pickling, set_output and pipelines.
IMAGE_ESTIMATORS = ["ImageEmbedder", "ImageClassifier"]


@pytest.mark.parametrize("name", IMAGE_ESTIMATORS)
@pytest.mark.parametrize("check", SKLEARN_CHECKS, ids=lambda c: c.__name__)
def test_sklearn_api_checks_image_estimators(name, check):
    pytest.importorskip("torch")
    check(name, getattr(embedxfer, name)())


# -- declarative parameter validation (embedxfer/_core/param_validation.py) -------------------

ALL_ESTIMATORS = PUBLIC_ESTIMATORS + IMAGE_ESTIMATORS


def estimator_class(name):
    if name != "WordVectorEmbedder":
        pytest.importorskip("torch")
    return getattr(embedxfer, name)


def table_of(cls):
    return cls.__dict__.get("_parameter_constraints")


def fit_data(name):
    if name in IMAGE_ESTIMATORS:
        return [np.zeros((32, 32, 3), np.uint8), np.full((32, 32, 3), 255, np.uint8)], [0, 1]
    return ["a good film", "a dull film"], [1, 0]


@pytest.mark.parametrize("name", ALL_ESTIMATORS)
def test_every_estimator_has_a_table(name):
    assert isinstance(table_of(estimator_class(name)), dict)


@pytest.mark.parametrize("name", sorted(ALL_ESTIMATORS))
def test_every_parameter_is_in_the_table_and_defaults_pass(name):
    cls = estimator_class(name)
    estimator = cls()
    assert set(table_of(cls)) == set(estimator.get_params(deep=False))
    unchecked = [p for p, entry in table_of(cls).items() if entry == "no_validation"]
    assert not unchecked, f"{name} leaves {unchecked} unchecked"
    validate_params(estimator)


def constrained_parameters():
    """``(estimator, parameter)`` for every parameter some table constrains."""
    pairs = []
    for name in sorted(ALL_ESTIMATORS):
        try:
            table = table_of(getattr(embedxfer, name)) or {}
        except ImportError:  # without torch: test_every_estimator_has_a_table skips too
            continue
        pairs += [(name, p) for p in sorted(table) if table[p] != "no_validation"]
    return pairs


@pytest.mark.parametrize("name, param", constrained_parameters())
def test_a_wrong_value_raises_invalid_parameter_error_from_fit(name, param):
    cls = estimator_class(name)
    X, y = fit_data(name)
    estimator = cls(**{param: object()})
    with pytest.raises(InvalidParameterError, match=f"The '{param}' parameter of {name} must be"):
        estimator.fit(X, y)
    assert not hasattr(estimator, "n_features_in_") and not hasattr(estimator, "device_")


def out_of_range_values():
    """``(estimator, parameter, value)``: a value of an accepted type that no constraint
    accepts, for every constraint scikit-learn's ``generate_invalid_param_val`` handles."""
    triples = []
    for name, param in constrained_parameters():
        for constraint in map(make_constraint, table_of(getattr(embedxfer, name))[param]):
            try:
                triples.append((name, param, generate_invalid_param_val(constraint)))
            except NotImplementedError:
                continue
    return triples


@pytest.mark.parametrize("name, param, value", out_of_range_values())
def test_an_out_of_range_value_raises_from_fit(name, param, value):
    cls = estimator_class(name)
    X, y = fit_data(name)
    estimator = cls(**{param: value})
    with pytest.raises(InvalidParameterError, match=f"The '{param}' parameter of {name} must be"):
        estimator.fit(X, y)
    assert not hasattr(estimator, "n_features_in_")


@pytest.mark.parametrize("name", sorted(ALL_ESTIMATORS))
def test_sklearn_param_validation_and_inherited_validate_params(name):
    """scikit-learn's own check (a wrong type, then its generated out-of-range values, on
    fit, partial_fit, fit_transform and fit_predict) and ``BaseEstimator._validate_params``."""
    estimator = estimator_class(name)()
    ec.check_param_validation(name, estimator)
    estimator._validate_params()
