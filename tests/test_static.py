"""StaticEmbedder: the packaged all-MiniLM-L6-v2 distilled into a static table.

Most tests distil a small table (the 600 most frequent tokens, 32
dimensions: a few seconds) to check the mechanism; the full vocabulary is
distilled only by the ``slow`` test.
"""

import json
import pickle

import numpy as np
import pytest
from _shared_data import sample_dataset_or_sms
from sklearn.base import clone

pytest.importorskip("torch")
pytest.importorskip("tokenizers")

from embedxfer import EmptyDocumentWarning, SentenceEmbedder, StaticEmbedder
from embedxfer._core.registry import load_counts
from embedxfer.text._encoder_loading import packaged_minilm_path
from embedxfer.text._static_tables import (
    describe_table,
    distilled_tables,
    prune_tables,
    read_table,
    static_home,
    table_key,
)
from embedxfer.text._wordpiece import TokenIds

SMALL = {"vocabulary_limit": 600, "n_components": 32}
TRICKY = [
    "Héllo Wörld, café!",
    "don't STOP [SEP] me",
    "a\x0bb c\x00d",
    "日本語のテキスト ok",
    "ΟΔΟΣ test",
    "x" * 150,
    "",
    "   ",
    "emoji 😀 !!",
    "under_score a-b",
    "İstanbul",
    "[UNK] [MASK]",
    "tab\tnew\nline\rend",
    "5€ $5 ¿qué?",
    "unbelievably untokenizable",
]


@pytest.fixture(scope="module")
def texts():
    docs, labels = sample_dataset_or_sms("sst2", 120, split="train", seed=3)
    return list(docs), np.asarray(labels)


@pytest.fixture(scope="module")
def small(texts):
    return StaticEmbedder(**SMALL).fit(texts[0])


@pytest.mark.parametrize("special", [True, False])
def test_wordpiece_ids_match_the_tokenizer(texts, special, kernel_path, monkeypatch):
    """The fast path gives, document by document, exactly the tokenizer's ids.

    With a special token's text in a piece, that piece runs as numpy code;
    without, on the compiled kernel where it is built.
    """
    with open(f"{packaged_minilm_path()}/tokenizer.json", encoding="utf-8") as fh:
        token_ids = TokenIds(fh.read())
    assert token_ids.uses_word_table
    calls = []
    compiled = token_ids._compiled_bert_ids
    monkeypatch.setattr(token_ids, "_compiled_bert_ids", lambda *a: calls.append(1) or compiled(*a))
    tricky = TRICKY if special else [d for d in TRICKY if "[" not in d]
    docs = tricky + texts[0] + ["word " * 3000 + "Ünïcode ünïcode", "\x01\x7f ok"]
    ids, ptr = token_ids.ids(docs)
    assert bool(calls) == (kernel_path == "compiled" and not special)
    expected, expected_ptr = token_ids.tokenizer_ids(docs)
    for i in range(len(docs)):
        want = [
            t for t in expected[expected_ptr[i] : expected_ptr[i + 1]] if not token_ids.dropped[t]
        ]
        assert sorted(ids[ptr[i] : ptr[i + 1]].tolist()) == sorted(want), docs[i]
    if special:
        # Special tokens' text and unknown characters carry nothing.
        assert ptr[TRICKY.index("[UNK] [MASK]") + 1] == ptr[TRICKY.index("[UNK] [MASK]")]


def test_fast_path_in_pieces_and_threads_gives_the_same_ids(texts, monkeypatch, kernel_path):
    import embedxfer.text._tokenize as tokenize_module

    with open(f"{packaged_minilm_path()}/tokenizer.json", encoding="utf-8") as fh:
        token_ids = TokenIds(fh.read())
    docs = TRICKY + texts[0][:300] + ["naïve café", "", "ASCII only"]
    whole = token_ids.ids(docs)
    monkeypatch.setattr(tokenize_module, "_PIECE_CHARS", 200)
    monkeypatch.setattr(tokenize_module, "usable_threads", lambda: 3)
    pieces = token_ids.ids(docs)
    np.testing.assert_array_equal(pieces[0], whole[0])
    np.testing.assert_array_equal(pieces[1], whole[1])


def test_a_document_s_ids_do_not_depend_on_its_neighbours_or_the_path(monkeypatch):
    # Ids come in text order whichever path finds them: a piece holding a special
    # token's text runs as numpy code, the others compiled; sums of rows added
    # in another order would differ in the last bits.
    from embedxfer.text import _native

    with open(f"{packaged_minilm_path()}/tokenizer.json", encoding="utf-8") as fh:
        token_ids = TokenIds(fh.read())
    doc = "well, this film; is (truly) great! Ünïcode wordpiecing, isn't it?"
    alone = token_ids.ids([doc])
    beside = token_ids.ids([doc, "see [MASK] here"])
    np.testing.assert_array_equal(beside[0][: beside[1][1]], alone[0])
    monkeypatch.setattr(_native, "ENABLED", False)
    as_numpy = token_ids.ids([doc])
    np.testing.assert_array_equal(as_numpy[0], alone[0])
    expected, _ = token_ids.tokenizer_ids([doc])
    # The tokenizer's own order, special and unknown tokens dropped.
    np.testing.assert_array_equal(alone[0], [t for t in expected if not token_ids.dropped[t]])


def test_table_is_stored_as_verified_plain_data_and_loaded_once(small, texts):
    folder = static_home() / small.table_key_
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["files"]) == {"vectors.npy", "mean.npy", "components.npy", "tokenizer.json"}
    assert manifest["shape"] == [small.vocabulary_size_, 32]
    assert manifest["settings"]["vocabulary_limit"] == 600
    assert not list(folder.glob("*.pkl"))
    assert isinstance(small.table_, np.memmap)
    key = ("embedxfer.StaticEmbedder.table", small.table_key_)
    before = load_counts()[key]
    twin = clone(small).fit(texts[0][:5])
    StaticEmbedder(**SMALL).fit()
    assert load_counts()[key] == before == 1
    np.testing.assert_array_equal(twin.transform(texts[0][:5]), small.transform(texts[0][:5]))
    source, usable = describe_table(folder)
    assert usable and source == packaged_minilm_path()
    assert folder in distilled_tables()


def test_tampered_table_is_refused(small, tmp_path):
    import shutil

    folder = tmp_path / small.table_key_
    shutil.copytree(static_home() / small.table_key_, folder)
    settings = json.loads((folder / "manifest.json").read_text())["settings"]
    assert read_table(folder, settings, warn=False) is not None
    vectors = np.load(folder / "vectors.npy")
    vectors[5, 0] += 1.0
    np.save(folder / "vectors.npy", vectors)
    with pytest.warns(UserWarning, match="vectors.npy does not match"):
        assert read_table(folder, settings) is None
    assert not describe_table(folder)[1]
    # Another model's settings are never taken for this one.
    assert read_table(folder, dict(settings, n_components=64), warn=False) is None
    assert prune_tables(tmp_path) == [folder] and not folder.exists()


def test_mean_pooling_of_the_tokenizer_ids(small, texts):
    docs = texts[0][:20]
    X = small.transform(docs)
    assert X.dtype == np.float32 and X.shape == (20, 32)
    token_ids = TokenIds(read_table(static_home() / small.table_key_, None).tokenizer_json)
    ids, ptr = token_ids.tokenizer_ids(docs)
    table = np.asarray(small.table_)
    for i in (0, 7, 19):
        rows = [t for t in ids[ptr[i] : ptr[i + 1]] if table[t].any()]
        np.testing.assert_allclose(X[i], table[rows].mean(axis=0), rtol=1e-5, atol=1e-6)
    assert small.get_feature_names_out()[0] == "minilm_static_mean0"


def test_empty_documents_are_zeros_and_counted(small):
    with pytest.warns(EmptyDocumentWarning, match="2 of 3 documents"):
        X = small.transform(["", "a good film", "日本"])
    assert not X[0].any() and not X[2].any() and X[1].any()


def test_empty_documents_are_counted_as_given_with_the_cache_too(small):
    from embedxfer import EmbeddingCache

    cached = clone(small).set_params(cache=EmbeddingCache()).fit()
    for _ in range(2):  # encoded, then served from the cache
        with pytest.warns(EmptyDocumentWarning, match="3 of 4 documents"):
            X = cached.transform(["", "", "日本", "a good film"])
        assert not X[:3].any() and X[3].any()


def test_poolings_and_normalize(small, texts):
    docs = texts[0][:10]
    both = clone(small).set_params(pooling="mean+max", normalize=True).fit(docs)
    X = both.transform(docs)
    assert X.shape == (10, 64)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="fit again"):
        small_changed = clone(small).fit(docs)
        small_changed.set_params(pooling="max").transform(docs)


def test_pickle_never_holds_the_table(small, texts):
    blob = pickle.dumps(small)
    assert len(blob) < 20_000
    restored = pickle.loads(blob)
    np.testing.assert_array_equal(restored.transform(texts[0][:4]), small.transform(texts[0][:4]))


def test_an_unknown_pooling_lists_the_valid_ones():
    with pytest.raises(ValueError, match="Got 'median'") as info:
        StaticEmbedder(pooling="median").fit()
    assert "'mean', 'sum', 'max', 'min' or several joined by '+'" in str(info.value)


def test_bad_settings_are_named(texts):
    with pytest.raises(ValueError, match="n_components=500.*384"):
        StaticEmbedder(n_components=500, vocabulary_limit=600).fit()
    with pytest.raises(ValueError, match="n_components=64.*50 tokens"):
        StaticEmbedder(n_components=64, vocabulary_limit=50).fit()
    with pytest.raises(ValueError, match="adapt"):
        StaticEmbedder(adapt=True, **SMALL).fit()


@pytest.mark.slow
def test_adaptation_moves_pooled_vectors_towards_the_teacher(small, texts):
    docs, held_out = texts[0][:90], texts[0][90:]
    adapted = StaticEmbedder(adapt=True, adapt_epochs=20, **SMALL).fit(docs)
    assert len(adapted.adapted_ids_) and adapted.adapted_vectors_.shape[1] == 32
    assert np.isin(adapted.adapted_ids_, np.flatnonzero(np.asarray(small.table_).any(axis=1))).all()
    teacher = SentenceEmbedder(pooling="mean").fit().transform(held_out)
    table = read_table(static_home() / small.table_key_, None)
    target = (teacher - table.mean) @ np.asarray(table.components).T

    def cosine(X):
        norms = np.linalg.norm(X, axis=1) * np.linalg.norm(target, axis=1)
        return float(np.mean(np.sum(X * target, axis=1) / np.where(norms > 0, norms, 1.0)))

    # On documents the adaptation never saw. Measured on SST-2 sentences: 0.73 against
    # 0.66 before; a no-op adaptation changes nothing.
    before, after = cosine(small.transform(held_out)), cosine(adapted.transform(held_out))
    assert after > before + 0.03, (before, after)
    # Rows the documents do not use keep their distilled vectors.
    kept = np.setdiff1d(np.arange(len(small.table_)), adapted.adapted_ids_)
    np.testing.assert_array_equal(adapted._vectors(small._fitted_table())[kept], small.table_[kept])
    # Deterministic: a refit on other documents equals a fresh fit, transform repeats itself.
    refit = clone(adapted).set_params(adapt_epochs=3).fit(held_out)
    fresh = StaticEmbedder(adapt=True, adapt_epochs=3, **SMALL).fit(held_out)
    np.testing.assert_array_equal(refit.adapted_ids_, fresh.adapted_ids_)
    np.testing.assert_allclose(refit.transform(docs), fresh.transform(docs), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(adapted.transform(held_out), adapted.transform(held_out))
    # The adaptation (not the table) is fitted state and travels with the pickle;
    # the adapted table stays out of it, and stays in the live estimator.
    cached = adapted.__dict__["_adapted_table_cache"]
    restored = pickle.loads(pickle.dumps(adapted))
    assert adapted.__dict__.get("_adapted_table_cache") is cached
    assert "_adapted_table_cache" not in restored.__dict__
    np.testing.assert_array_equal(restored.transform(docs), adapted.transform(docs))


def test_dask_transform_matches(small, texts):
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    import embedxfer.dask as edask

    series = dd.from_pandas(pd.Series(texts[0][:30], name="text"), npartitions=3)
    out = edask.transform(small, series).compute()
    np.testing.assert_allclose(np.asarray(out), small.transform(texts[0][:30]), rtol=1e-6)


@pytest.mark.slow
def test_full_distillation_classifies_sentiment(texts):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    docs, labels = texts
    embedder = StaticEmbedder().fit(docs)
    assert embedder.vocabulary_size_ == 30522 and embedder.n_features_out_ == 256
    X = embedder.transform(docs)
    assert cross_val_score(LogisticRegression(max_iter=1000), X, labels, cv=3).mean() > 0.6


def test_cli_static_suffix(small):
    from embedxfer.cli._encode import build_embedder
    from embedxfer.cli._model_names import parse_model

    spec = parse_model("all-MiniLM-L6-v2:static,mean+max")
    assert (spec.kind, spec.pooling, spec.label) == (
        "static",
        "mean+max",
        "all-MiniLM-L6-v2:static,mean+max",
    )
    embedder = build_embedder(spec, normalize=True)
    assert isinstance(embedder, StaticEmbedder)
    assert (embedder.model, embedder.pooling, embedder.normalize) == (
        "all-MiniLM-L6-v2",
        "mean+max",
        True,
    )
    with pytest.raises(ValueError, match="static"):
        parse_model("glove-6B-50d:static")
    with pytest.raises(ValueError, match="cls"):
        parse_model("all-MiniLM-L6-v2:static,cls")


def test_models_lists_distilled_tables_and_prunes_stale_ones(small, tmp_path, monkeypatch, capsys):
    import shutil

    from embedxfer.cli._models import _print_distilled

    home = tmp_path / "home"
    good = home / "static" / small.table_key_
    shutil.copytree(static_home() / small.table_key_, good)
    stale = home / "static" / ("0" * 32)
    shutil.copytree(good, stale)
    (stale / "tokenizer.json").write_text("{}")
    monkeypatch.setenv("EMBEDXFER_HOME", str(home))
    _print_distilled(prune=False)
    out = capsys.readouterr().out
    assert f"{good.name}" in out and f"from {packaged_minilm_path()}" in out
    assert "stale" in out and stale.name in out
    _print_distilled(prune=True)
    assert f"pruned {stale}" in capsys.readouterr().out
    assert good.exists() and not stale.exists()


@pytest.mark.gpu
def test_distillation_on_a_gpu_matches_the_cpu(small, tmp_path, monkeypatch):
    from embedxfer._core.registry import clear_registry

    cpu = np.asarray(small.table_)
    monkeypatch.setenv("EMBEDXFER_HOME", str(tmp_path))
    clear_registry()
    gpu = StaticEmbedder(device="cuda", **SMALL).fit()
    assert gpu.device_.startswith("cuda")
    table = np.asarray(gpu.table_)
    rows = np.flatnonzero(cpu.any(axis=1))
    cosine = np.sum(table[rows] * cpu[rows], axis=1) / (
        np.linalg.norm(table[rows], axis=1) * np.linalg.norm(cpu[rows], axis=1)
    )
    assert cosine.min() > 0.99


def test_an_existing_table_embeds_without_torch(small):
    import os
    import subprocess
    import sys

    code = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'transformers', 'sentence_transformers'):
            raise ImportError('blocked ' + name)
sys.meta_path.insert(0, Block())
import numpy as np
from embedxfer import StaticEmbedder
X = StaticEmbedder(**{SMALL!r}).fit(['a good film']).transform(['a good film'])
np.save(sys.argv[1], X)
"""
    out = str(static_home().parent / "no-torch.npy")
    done = subprocess.run(
        [sys.executable, "-c", code, out], capture_output=True, text=True, env=dict(os.environ)
    )
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_allclose(np.load(out), small.transform(["a good film"]), rtol=1e-6)


def test_a_model_without_a_fast_tokenizer_is_refused(monkeypatch):
    from types import SimpleNamespace

    slow = SimpleNamespace(tokenizer=SimpleNamespace(is_fast=False), hidden_size=384)
    monkeypatch.setattr(StaticEmbedder, "_teacher", lambda self, device: slow)
    with pytest.raises(ValueError, match="no fast .*tokenizer"):
        StaticEmbedder(n_components=7, vocabulary_limit=50).fit()


@pytest.mark.slow
def test_the_table_seeds_a_sequence_classifier_by_name():
    from embedxfer import SequenceClassifier, load_vectors
    from embedxfer.datasets import load_sms_spam

    kv = load_vectors("static:all-MiniLM-L6-v2")
    assert kv is load_vectors("static:all-MiniLM-L6-v2")  # loaded once per process
    assert kv.vector_size == 256 and len(kv) > 20_000
    specials = [w for w in kv.index_to_key if len(w) > 2 and w[0] == "[" and w[-1] == "]"]
    assert not specials and not [w for w in kv.index_to_key if w.startswith("##")]
    embedder = StaticEmbedder().fit()
    token_id = embedder._fitted_table().token_ids().tokenizer.token_to_id("good")
    np.testing.assert_array_equal(kv["good"], embedder.table_[token_id])
    assert {w for w, _ in kv.most_similar("good", topn=5)} & {"great", "excellent", "nice"}

    docs, labels = load_sms_spam(return_X_y=True)
    docs, labels = [str(d) for d in docs], np.asarray(labels)
    clf = SequenceClassifier(vectors="static:all-MiniLM-L6-v2", epochs=3, random_state=0)
    clf.fit(docs[:1500], labels[:1500])
    majority = max(np.mean(labels[4000:4600] == c) for c in np.unique(labels))
    assert np.mean(clf.predict(docs[4000:4600]) == labels[4000:4600]) > majority + 0.05
    # The vectors travel by name: a pickle names the table, never holds it.
    assert b"static:all-MiniLM-L6-v2" in pickle.dumps(clf)


def test_static_vectors_need_a_model_name():
    from embedxfer import load_vectors

    with pytest.raises(ValueError, match="names no model"):
        load_vectors("static:")


def test_a_table_follows_the_model_bytes_not_their_path(small, texts, tmp_path):
    """The same model installed elsewhere (new path, new times) names the same table, so a
    fitted embedder pickled in one environment works in another; changed bytes do not."""
    import shutil

    copy = tmp_path / "minilm"
    shutil.copytree(packaged_minilm_path(), copy)  # new path, new modification times
    moved = StaticEmbedder(model=str(copy), **SMALL).fit(texts[0])
    assert moved.table_key_ == small.table_key_
    np.testing.assert_array_equal(moved.transform(texts[0][:5]), small.transform(texts[0][:5]))
    restored = pickle.loads(pickle.dumps(small))
    np.testing.assert_array_equal(restored.transform(texts[0][:5]), small.transform(texts[0][:5]))
    with open(copy / "vocab.txt", "a", encoding="utf-8") as fh:
        fh.write("\n")
    changed = StaticEmbedder(model=str(copy), **SMALL)
    assert table_key(changed._table_settings()[2]) != small.table_key_
