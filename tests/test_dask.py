"""embedxfer.dask on a real LocalCluster.

Two worker processes, the packaged GloVe and MiniLM, SMS Spam.
"""

import copy
import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")
pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")
import cloudpickle  # a dependency of distributed
import dask
import pyarrow.parquet as pq
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

import embedxfer
import embedxfer.dask as edask
from embedxfer import WordVectorEmbedder
from embedxfer._core.registry import clear_registry, load_counts
from embedxfer.datasets import load_sms_spam

pytestmark = pytest.mark.filterwarnings("ignore::embedxfer.text._word.EmptyDocumentWarning")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


@pytest.fixture(scope="module")
def sms():
    bunch = load_sms_spam()
    return list(bunch.data), np.asarray(bunch.target)


@pytest.fixture(scope="module")
def texts(sms):
    """All 5,574 SMS in 8 partitions, with a non-default index (ids, shuffled order kept)."""
    docs, _ = sms
    index = pd.Index([f"sms{i:05d}" for i in range(len(docs))], name="id")
    return dd.from_pandas(pd.Series(docs, index=index, name="text"), npartitions=8, sort=False)


@pytest.fixture(scope="module")
def pipeline(sms):
    docs, y = sms
    return make_pipeline(
        WordVectorEmbedder("glove-6B-50d", weighting="sif"), LogisticRegression(max_iter=1000)
    ).fit(docs, y)


def _worker_loads(client):
    return client.run(lambda: {repr(k): n for k, n in load_counts().items()})


def test_import_embedxfer_does_not_import_dask():
    code = (
        "import sys, embedxfer; "
        "print(any(m.split('.')[0] in ('dask', 'distributed') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_predict_transform_equal_single_process_in_order(client, sms, texts, pipeline):
    docs, _ = sms
    predicted = edask.predict(pipeline, texts).compute()
    assert predicted.index.equals(texts.index.compute())
    np.testing.assert_array_equal(predicted.to_numpy(), pipeline.predict(docs))

    proba = edask.predict_proba(pipeline, texts).compute()
    np.testing.assert_allclose(proba.to_numpy(), pipeline.predict_proba(docs), atol=1e-6)

    vectors = edask.transform(pipeline[0], texts).compute()
    assert list(vectors.columns) == list(pipeline[0].get_feature_names_out())
    assert vectors.index.equals(texts.index.compute())
    np.testing.assert_allclose(vectors.to_numpy(), pipeline[0].transform(docs), atol=1e-6)


def test_model_loaded_once_per_worker(client, texts, pipeline):
    client.run(clear_registry)
    # Two jobs of 8 partitions each, on 2 workers: 16 tasks, still one load per process.
    edask.predict(pipeline, texts).compute()
    edask.transform(pipeline[0], texts).compute()
    loads = _worker_loads(client)
    assert len(loads) == 2
    for counts in loads.values():
        vector_loads = [n for key, n in counts.items() if "'vectors'" in key]
        assert vector_loads == [1], counts


def test_graph_carries_the_estimator_once(texts, pipeline):
    size = len(pickle.dumps(pipeline))
    assert size < 200_000
    bare = len(cloudpickle.dumps(dict(texts.map_partitions(len).__dask_graph__())))
    full = len(cloudpickle.dumps(dict(edask.predict(pipeline, texts).__dask_graph__())))
    # 8 partitions: a copy per task would add 8 times the estimator.
    assert full - bare < 2 * size


def test_plain_map_partitions_works_too(client, sms, texts, pipeline):
    docs, _ = sms
    out = texts.map_partitions(pipeline.predict, meta=("prediction", "i8")).compute()
    np.testing.assert_array_equal(np.asarray(out), pipeline.predict(docs))


def test_bag_input(client, sms, pipeline):
    import dask.bag as db

    docs, _ = sms
    bag = db.from_sequence(docs[:300], npartitions=3)
    out = edask.predict(pipeline, bag).compute()
    np.testing.assert_array_equal(out.to_numpy(), pipeline.predict(docs[:300]))


def test_dataframe_needs_an_existing_column(texts, pipeline):
    frame = texts.to_frame(name="body")
    with pytest.raises(ValueError, match="no column 'text'.*body"):
        edask.predict(pipeline, frame)
    assert len(edask.predict(pipeline, frame, column="body").compute()) == len(texts)


@pytest.mark.parametrize(
    "params",
    [{"weighting": "tfidf"}, {"weighting": "sif"}, {"weighting": "usif"}, {"pooling": "mean+max"}],
)
def test_fit_from_dask_equals_fit(client, sms, texts, params):
    docs, _ = sms
    expected = WordVectorEmbedder(**params).fit(docs)
    fitted = edask.fit(WordVectorEmbedder(**params), texts)
    for name, value in vars(expected).items():
        if not name.endswith("_") or name.startswith("_"):
            continue
        got = getattr(fitted, name)
        if isinstance(value, np.ndarray):
            tol = 1e-5 if name.startswith("component") else 0
            np.testing.assert_allclose(got, value, atol=tol, rtol=0, err_msg=name)
        else:
            assert got == value, name
    np.testing.assert_allclose(fitted.transform(docs), expected.transform(docs), atol=1e-5)


@pytest.mark.parametrize("weighting", ["tfidf", "sif"])
def test_fit_that_fails_keeps_the_previous_fit_whole(sms, monkeypatch, weighting):
    from sklearn.exceptions import NotFittedError

    from embedxfer.text import _corpus_stats

    docs, _ = sms
    texts = dd.from_pandas(pd.Series(docs[:600], name="text"), npartitions=3)
    probe = docs[1000:1010]

    def interrupted(*args, **kwargs):  # Ctrl-C (or a worker error) in the last pass
        raise KeyboardInterrupt

    last_pass = "partition_gram" if weighting == "sif" else "partition_counts"
    with dask.config.set(scheduler="synchronous"):
        embedder = edask.fit(WordVectorEmbedder(weighting=weighting), texts)
        vectors = embedder.transform(probe)
        state = copy.deepcopy(vars(embedder))
        fresh = WordVectorEmbedder(weighting=weighting)
        other = dd.from_pandas(pd.Series(docs[600:900], name="text"), npartitions=3)
        with monkeypatch.context() as patch:
            patch.setattr(_corpus_stats, last_pass, interrupted)
            for target in (embedder, fresh):
                with pytest.raises(KeyboardInterrupt):
                    edask.fit(target, other)
    assert vars(embedder).keys() == state.keys()
    np.testing.assert_array_equal(embedder.weights_, state["weights_"])
    np.testing.assert_array_equal(embedder.components_, state["components_"])
    np.testing.assert_array_equal(embedder.transform(probe), vectors)
    with pytest.raises(NotFittedError):
        fresh.transform(probe)


def test_minilm_on_workers_device_resolved_there(client, sms):
    pytest.importorskip("sentence_transformers")
    from embedxfer import SentenceEmbedder

    docs = sms[0][:32]
    embedder = SentenceEmbedder(device=None, batch_size=16).fit(docs[:2])
    expected = embedder.transform(docs)
    # As if fitted on a client with a GPU: device=None is resolved again on each worker.
    shipped = copy.copy(embedder)
    shipped.device_ = "cuda"
    series = dd.from_pandas(pd.Series(docs, name="text"), npartitions=2)
    client.run(clear_registry)
    vectors = edask.transform(shipped, series).compute()
    np.testing.assert_allclose(vectors.to_numpy(), expected, atol=2e-5)
    # Loaded once by each worker, on the device found there (no GPU here: cpu).
    loads = _worker_loads(client)
    minilm = {k: n for c in loads.values() for k, n in c.items() if "SentenceEmbedder" in k}
    assert sorted(minilm.values()) == [1] and "'cpu'" in next(iter(minilm))
    assert sum(n for c in loads.values() for k, n in c.items() if "Sentence" in k) == 2


@pytest.mark.gpu
def test_gpu_device_resolved_on_the_worker(client, sms):
    from embedxfer import SentenceEmbedder

    docs = sms[0][:32]
    embedder = SentenceEmbedder(device=None).fit(docs[:2])
    expected = embedder.set_params(device="cpu").fit(docs[:2]).transform(docs)
    shipped = SentenceEmbedder(device=None).fit(docs[:2])
    shipped.device_ = "cpu"  # as if fitted on a client without a GPU
    client.run(clear_registry)
    vectors = edask.transform(shipped, dd.from_pandas(pd.Series(docs), npartitions=2))
    np.testing.assert_allclose(vectors.compute().to_numpy(), expected, atol=1e-4)
    keys = [k for c in _worker_loads(client).values() for k in c if "Sentence" in k]
    assert keys and all("'cuda'" in k for k in keys)


def _lsa_and(block, docs):
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    from embedxfer import HybridEmbedder

    lsa = make_pipeline(TfidfVectorizer(sublinear_tf=True), TruncatedSVD(20, random_state=0))
    return HybridEmbedder(blocks=[("lsa", lsa), block]).fit(docs)


@pytest.mark.slow
def test_hybrid_on_workers_loads_its_blocks_and_resumes(client, sms, tmp_path):
    docs = sms[0][:200]
    hybrid = _lsa_and(("glove", WordVectorEmbedder("glove-6B-50d")), docs)
    expected = hybrid.transform(docs)
    series = dd.from_pandas(pd.Series(docs, name="text"), npartitions=4)
    client.run(clear_registry)
    # The GloVe block is found inside the hybrid and loaded on every worker.
    loads = edask.check_workers(hybrid, client)
    assert len(loads) == 2 and all(any("vectors" in k for k in c) for c in loads.values())
    vectors = edask.transform(hybrid, series).compute()
    np.testing.assert_allclose(vectors.to_numpy(), expected, atol=1e-5)
    assert list(vectors.columns) == list(hybrid.get_feature_names_out())
    # The job is keyed by the hybrid's fingerprint: a rerun finds every part done.
    edask.embed_to_parquet(hybrid, series, tmp_path)
    manifest = json.loads((tmp_path / edask.MANIFEST).read_text())
    assert manifest["embedder"] == hybrid._cache_fingerprint()
    again = edask.embed_to_parquet(pickle.loads(pickle.dumps(hybrid)), series, tmp_path)
    assert (again["written"], again["skipped"]) == (0, 4)
    table = _read_parts(tmp_path).drop(columns="row").to_numpy()
    np.testing.assert_allclose(table, expected, atol=1e-5)


@pytest.mark.slow
def test_hybrid_minilm_block_device_resolved_on_the_worker(client, sms):
    pytest.importorskip("sentence_transformers")
    from embedxfer import SentenceEmbedder

    docs = sms[0][:40]
    minilm = SentenceEmbedder(device=None, batch_size=16, long_documents="chunk")
    hybrid = _lsa_and(("minilm", minilm), docs)
    expected = hybrid.transform(docs)
    shipped = copy.deepcopy(hybrid)
    shipped.blocks_["minilm"].device_ = "cuda"  # as if fitted on a client with a GPU
    client.run(clear_registry)
    series = dd.from_pandas(pd.Series(docs, name="text"), npartitions=2)
    vectors = edask.transform(shipped, series).compute()
    np.testing.assert_allclose(vectors.to_numpy(), expected, atol=2e-5)
    loads = _worker_loads(client)
    keys = [k for c in loads.values() for k in c if "SentenceEmbedder" in k]
    assert len(keys) == 2 and all("'cpu'" in k for k in keys)


def test_cli_refuses_hybrid_on_a_cluster_before_connecting(sms, tmp_path, capsys):
    from embedxfer.cli import main

    (tmp_path / "a.csv").write_text("text\nhello\n", encoding="utf-8")
    args = ["embed", str(tmp_path / "a.csv"), "-o", str(tmp_path / "o"), "-m", "hybrid"]
    assert main([*args, "--scheduler", "tcp://192.0.2.1:8786"]) == 1
    assert "every document at once" in capsys.readouterr().err


def _read_parts(folder):
    parts = sorted(folder.glob("part-*.parquet"))
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)


def _ended_pid():
    """The id of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _part_temporary(folder, i, pid, host=None):
    return folder / f".part-{i:05d}.parquet.{pid}.{host or edask._HOST}.deadbeef.tmp"


@pytest.fixture
def local_scheduler(monkeypatch):
    """Dask's synchronous scheduler even while the module's cluster runs."""
    monkeypatch.setattr(edask, "_current_client", lambda: None)
    with dask.config.set(scheduler="synchronous"):
        yield


def test_embed_to_parquet_writes_every_partition_and_resumes(client, sms, texts, tmp_path):
    docs, _ = sms
    embedder = WordVectorEmbedder().fit(docs)
    expected = embedder.transform(docs)
    seen = []
    summary = edask.embed_to_parquet(embedder, texts, tmp_path, progress=lambda *a: seen.append(a))
    assert summary["written"] == 8 and summary["documents"] == len(docs)
    assert [s[0] for s in seen] == list(range(1, 9)) and seen[-1][2] == len(docs)
    table = _read_parts(tmp_path)
    np.testing.assert_array_equal(table["row"].to_numpy(), np.arange(len(docs)))
    np.testing.assert_allclose(table.drop(columns="row").to_numpy(), expected, atol=1e-6)
    metadata = pq.read_schema(tmp_path / "part-00000.parquet").metadata
    assert metadata[b"embedxfer.model"].startswith(b"WordVectorEmbedder(")
    assert metadata[b"embedxfer.version"] == embedxfer.__version__.encode()

    # A crash left partition 3 missing and a stale temporary file: only 3 is redone.
    (tmp_path / "part-00003.parquet").unlink()
    _part_temporary(tmp_path, 5, _ended_pid()).write_bytes(b"partial")
    again = edask.embed_to_parquet(embedder, texts, tmp_path)
    assert (again["written"], again["skipped"]) == (1, 7)
    assert not list(tmp_path.glob("*.tmp"))
    pd.testing.assert_frame_equal(_read_parts(tmp_path), table)

    # Another embedder's output is never mixed into this folder.
    with pytest.raises(ValueError, match="another embedding job"):
        edask.embed_to_parquet(WordVectorEmbedder(pooling="max").fit(docs), texts, tmp_path)


def test_id_column_written_beside_vectors(client, sms, tmp_path):
    docs, _ = sms
    frame = pd.DataFrame({"doc_id": np.arange(1000, 1000 + 200), "text": docs[:200]})
    ddf = dd.from_pandas(frame, npartitions=2)
    embedder = WordVectorEmbedder().fit(docs[:200])
    edask.embed_to_parquet(embedder, ddf, tmp_path, id_column="doc_id")
    table = _read_parts(tmp_path)
    np.testing.assert_array_equal(table["doc_id"].to_numpy(), frame["doc_id"].to_numpy())


def test_killed_worker_loses_nothing(client, sms, tmp_path):
    docs, _ = sms
    corpus = docs * 8  # 44,592 documents in 96 partitions: a run of a few seconds
    series = dd.from_pandas(pd.Series(corpus, name="text"), npartitions=96)
    embedder = WordVectorEmbedder(pooling="mean+max").fit(docs)
    pids = client.run(os.getpid)
    victim = min(pids.values())
    state = {}

    def kill_when_started():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if list(tmp_path.glob("part-*.parquet")):
                state["files_at_kill"] = len(list(tmp_path.glob("part-*.parquet")))
                os.kill(victim, signal.SIGKILL)
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_when_started)
    killer.start()
    summary = edask.embed_to_parquet(embedder, series, tmp_path)
    killer.join()
    assert state["files_at_kill"] < 96, "the run ended before the worker was killed"
    assert summary["written"] == 96
    client.wait_for_workers(2, timeout=60)  # the nanny restarts the killed worker
    assert victim not in client.run(os.getpid).values()
    table = _read_parts(tmp_path)
    np.testing.assert_array_equal(table["row"].to_numpy(), np.arange(len(corpus)))
    expected = embedder.transform(corpus)
    np.testing.assert_allclose(table.drop(columns="row").to_numpy(), expected, atol=1e-6)


def test_model_missing_on_worker_fails_fast_naming_worker_and_path(client, sms, glove, tmp_path):
    docs, _ = sms
    path = tmp_path / "vectors.txt"
    with open(path, "w", encoding="utf-8") as f:
        for word in glove.index_to_key[:3000]:
            f.write(word + " " + " ".join(f"{v:.5f}" for v in glove[word]) + "\n")
    embedder = WordVectorEmbedder(str(path)).fit(docs[:100])
    path.unlink()  # present where it was fitted, absent on the workers
    series = dd.from_pandas(pd.Series(docs[:400], name="text"), npartitions=4)
    started = time.monotonic()
    with pytest.raises(edask.ModelUnavailableError) as info:
        edask.transform(embedder, series).compute()
    assert time.monotonic() - started < 30
    message = str(info.value)
    assert "worker tcp://" in message and str(path) in message
    with pytest.raises(edask.ModelUnavailableError, match="worker tcp://"):
        edask.check_workers(embedder, client)


def test_check_workers_reports_loads(client, pipeline):
    loads = edask.check_workers(pipeline, client)
    assert len(loads) == 2 and all(any("vectors" in k for k in c) for c in loads.values())


def test_dask_ml_parallel_post_fit(client, sms, texts, pipeline):
    wrappers = pytest.importorskip("dask_ml.wrappers")
    docs, _ = sms
    model = wrappers.ParallelPostFit(pipeline, predict_meta=pd.Series(dtype="i8"))
    # dask-ml 2025.1 maps over a DataFrame (a Series it computes whole on the client).
    out = model.predict(texts.to_frame())
    assert isinstance(out, dd.Series)
    np.testing.assert_array_equal(np.asarray(out.compute()), pipeline.predict(docs))


# -- the command line: embedxfer embed ... --scheduler ------------------------------------


def _cli(*args, cwd):
    env = dict(os.environ, EMBEDXFER_OFFLINE="1", HF_HUB_OFFLINE="1")
    return subprocess.Popen(
        [sys.executable, "-m", "embedxfer", *map(str, args)],
        cwd=cwd,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _finish(proc, timeout=180):
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def test_cli_embeds_many_files_on_a_cluster_and_reruns_only_missing(client, sms, tmp_path):
    docs, _ = sms
    pd.DataFrame({"text": docs[:2500]}).to_csv(tmp_path / "a-1.csv", index=False)
    pd.DataFrame({"text": docs[2500:4000]}).to_csv(tmp_path / "a-2.csv", index=False)
    pd.DataFrame({"text": docs[4000:]}).to_json(tmp_path / "b.jsonl", orient="records", lines=True)
    out = tmp_path / "vectors"
    args = [
        "embed",
        tmp_path / "a-*.csv",
        tmp_path / "b.jsonl",
        "-o",
        out,
        "-m",
        "glove-6B-50d:sif",
        "--scheduler",
        client.scheduler.address,
        "--blocksize",
        "64KB",
    ]
    code, err = _finish(_cli(*args, cwd=tmp_path))
    assert code == 0, err
    n_parts = len(list(out.glob("part-*.parquet")))
    assert n_parts >= 4 and f"partitions {n_parts}/{n_parts}" in err and "docs/s" in err
    table = _read_parts(out)
    np.testing.assert_array_equal(table["row"].to_numpy(), np.arange(len(docs)))
    expected = WordVectorEmbedder(weighting="sif").fit(docs).transform(docs)
    np.testing.assert_allclose(table.drop(columns="row").to_numpy(), expected, atol=1e-5)
    for part in out.glob("part-*.parquet"):
        assert pq.read_schema(part).metadata[b"embedxfer.model"] == b"glove-6B-50d:sif"

    (out / "part-00001.parquet").unlink()
    code, err = _finish(_cli(*args, cwd=tmp_path))
    assert code == 0, err
    assert f"wrote 1 of {n_parts} partitions" in err and f"({n_parts - 1} already there)" in err
    pd.testing.assert_frame_equal(_read_parts(out), table)


def test_cli_interrupted_then_resumed(client, sms, tmp_path):
    docs, _ = sms
    frame = pd.DataFrame({"doc": np.arange(len(docs) * 3) + 10**6, "text": docs * 3})
    frame.to_parquet(tmp_path / "docs.parquet", row_group_size=1000)
    out = tmp_path / "out"
    args = [
        "embed",
        tmp_path / "docs.parquet",
        "-o",
        out,
        "-m",
        "glove-6B-50d:mean+max",
        "--id-column",
        "doc",
        "--scheduler",
        client.scheduler.address,
        "--blocksize",
        "50KB",
    ]
    proc = _cli(*args, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not list(out.glob("part-*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    code, err = _finish(proc)
    assert code == 130 and "run the same command again to resume" in err, err
    written_before = len(list(out.glob("part-*.parquet")))
    code, err = _finish(_cli(*args, cwd=tmp_path))
    assert code == 0, err
    n_parts = len(list(out.glob("part-*.parquet")))
    assert 1 <= written_before < n_parts
    table = _read_parts(out)
    np.testing.assert_array_equal(table["doc"].to_numpy(), frame["doc"].to_numpy())
    embedder = WordVectorEmbedder(pooling="mean+max").fit(docs[:1])
    np.testing.assert_allclose(
        table.drop(columns="doc").to_numpy(), embedder.transform(frame["text"]), atol=1e-6
    )


def test_cli_errors_are_one_line(client, tmp_path, capsys):
    from embedxfer.cli import main

    (tmp_path / "a.csv").write_text("body\nhello\n", encoding="utf-8")
    code, err = _finish(
        _cli(
            "embed",
            tmp_path / "a.csv",
            "-o",
            tmp_path / "o",
            "-m",
            "glove-6B-50d",
            "--scheduler",
            client.scheduler.address,
            cwd=tmp_path,
        )
    )
    assert code == 1 and err.strip().startswith("embedxfer: error:") and "'text'" in err
    assert len(err.strip().splitlines()) == 1, err
    assert (
        main(
            [
                "embed",
                str(tmp_path / "a.csv"),
                str(tmp_path / "a.csv"),
                "-o",
                str(tmp_path / "o.npy"),
                "-m",
                "glove-6B-50d",
            ]
        )
        == 1
    )
    assert "need --scheduler" in capsys.readouterr().err
    assert (
        main(
            [
                "embed",
                str(tmp_path / "none-*.csv"),
                "-o",
                str(tmp_path / "o"),
                "-m",
                "glove-6B-50d",
                "--scheduler",
                "local:1",
            ]
        )
        == 1
    )
    assert "no file matches" in capsys.readouterr().err


# -- what the output folder may hold: proven parts, never an input ------------------------


def test_input_inside_the_output_folder_is_refused_and_kept(sms, tmp_path, capsys):
    from embedxfer.cli import main

    docs, _ = sms
    out = tmp_path / "out"
    out.mkdir()
    source = out / "part-00000.parquet"
    pd.DataFrame({"text": docs[:2000]}).to_parquet(source)
    before = source.read_bytes()
    args = ["embed", str(source), "-o", str(out), "-m", "glove-6B-50d", "--scheduler", "local:1"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "inside the output folder" in err and len(err.strip().splitlines()) == 1
    # a hard link to a file in the folder is the same file
    os.link(source, tmp_path / "linked.parquet")
    assert main([*args[:1], str(tmp_path / "linked.parquet"), *args[2:]]) == 1
    assert source.read_bytes() == before


def test_a_file_the_job_did_not_write_is_never_overwritten(client, sms, tmp_path):
    docs, _ = sms
    series = dd.from_pandas(pd.Series(docs[:800], name="text"), npartitions=4)
    embedder = WordVectorEmbedder().fit(docs[:10])
    # an input (or another job's part) with the right row count, where part 0 goes
    pd.DataFrame({"text": docs[:200]}).to_parquet(tmp_path / "part-00000.parquet")
    before = (tmp_path / "part-00000.parquet").read_bytes()
    with pytest.raises(edask.OutputFolderError, match="part-00000.parquet was not written"):
        edask.embed_to_parquet(embedder, series, tmp_path)
    assert (tmp_path / "part-00000.parquet").read_bytes() == before
    other = tmp_path / "other"
    edask.embed_to_parquet(WordVectorEmbedder(pooling="max").fit(docs[:10]), series, other)
    (tmp_path / "part-00000.parquet").unlink()
    (tmp_path / "_embedxfer.json").unlink()
    os.replace(other / "part-00001.parquet", tmp_path / "part-00001.parquet")
    with pytest.raises(edask.OutputFolderError, match="part-00001.parquet was not written"):
        edask.embed_to_parquet(embedder, series, tmp_path)


def test_parts_are_proven_by_checksum_not_row_count(client, sms, tmp_path):
    docs, _ = sms
    series = dd.from_pandas(pd.Series(docs[:800], name="text"), npartitions=4)
    embedder = WordVectorEmbedder().fit(docs[:10])
    edask.embed_to_parquet(embedder, series, tmp_path)
    table = _read_parts(tmp_path)
    # two parts of this job swapped: same row counts, wrong rows; both are redone
    a, b = tmp_path / "part-00000.parquet", tmp_path / "part-00001.parquet"
    os.replace(a, tmp_path / "swap")
    os.replace(b, a)
    os.replace(tmp_path / "swap", b)
    again = edask.embed_to_parquet(embedder, series, tmp_path)
    assert (again["written"], again["skipped"]) == (2, 2)
    pd.testing.assert_frame_equal(_read_parts(tmp_path), table)


@pytest.mark.parametrize("damage", ["{not json", "[]", '{"job_id": "x", "lengths": "many"}'])
def test_damaged_job_manifest_is_a_clear_error(client, sms, tmp_path, damage):
    docs, _ = sms
    series = dd.from_pandas(pd.Series(docs[:400], name="text"), npartitions=2)
    embedder = WordVectorEmbedder().fit(docs[:10])
    edask.embed_to_parquet(embedder, series, tmp_path)
    (tmp_path / "_embedxfer.json").write_text(damage, encoding="utf-8")
    with pytest.raises(edask.OutputFolderError, match="_embedxfer.json is damaged"):
        edask.embed_to_parquet(embedder, series, tmp_path)


def test_missing_document_named_at_its_place_in_the_collection(client, sms, tmp_path):
    docs, _ = sms
    texts = list(docs[:800])
    texts[450] = None
    series = dd.from_pandas(pd.Series(texts, name="text"), npartitions=4)
    embedder = WordVectorEmbedder().fit(docs[:10])
    with pytest.raises(ValueError, match=r"index 450 .*partition 2.*missing"):
        edask.transform(embedder, series).compute()
    with pytest.raises(ValueError, match=r"document 450 .*missing"):
        edask.embed_to_parquet(embedder, series, tmp_path)
    with pytest.raises(ValueError, match=r"^document 450 \(partition 2, row 50 of it\) is <NA>"):
        edask.fit(WordVectorEmbedder(weighting="tfidf"), series)


def test_another_input_into_the_same_folder_is_refused_by_name(sms, tmp_path, local_scheduler):
    docs, _ = sms
    embedder = WordVectorEmbedder().fit(docs[:10])
    pd.DataFrame({"text": docs[:400]}).to_csv(tmp_path / "a.csv", index=False)
    out = tmp_path / "vectors"
    first = edask.embed_to_parquet(embedder, dd.read_csv(tmp_path / "a.csv", blocksize=8000), out)
    assert first["written"] > 1
    # the same file read again is the same input: nothing to redo
    again = edask.embed_to_parquet(embedder, dd.read_csv(tmp_path / "a.csv", blocksize=8000), out)
    assert (again["written"], again["skipped"]) == (0, first["written"])
    same_rows = dd.from_pandas(pd.Series(docs[400:800], name="text"), npartitions=2)
    fewer = dd.from_pandas(pd.Series(docs[:300], name="text"), npartitions=2)
    out = tmp_path / "series"
    edask.embed_to_parquet(embedder, dd.from_pandas(pd.Series(docs[:400]), npartitions=2), out)
    with pytest.raises(edask.OutputFolderError, match=r"another input \(partition 0 holds other"):
        edask.embed_to_parquet(embedder, same_rows, out)
    with pytest.raises(edask.OutputFolderError, match=r"partition 0 had 200 documents, 150 now"):
        edask.embed_to_parquet(embedder, fewer, out)
    np.testing.assert_array_equal(_read_parts(out)["row"], np.arange(400))


def test_local_scheduler_interrupted_keeps_the_finished_parts(sms, tmp_path, local_scheduler):
    docs, _ = sms
    series = dd.from_pandas(pd.Series(docs[:800], name="text"), npartitions=4)
    embedder = WordVectorEmbedder().fit(docs[:10])
    transform, calls = WordVectorEmbedder.transform, []

    def interrupted_in_the_third(self, X):
        calls.append(len(X))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return transform(self, X)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(WordVectorEmbedder, "transform", interrupted_in_the_third)
        with pytest.raises(KeyboardInterrupt):
            edask.embed_to_parquet(embedder, series, tmp_path)
    manifest = json.loads((tmp_path / "_embedxfer.json").read_text())
    assert len(manifest["parts"]) == 2  # the two parts written before the interruption
    seen = []
    again = edask.embed_to_parquet(embedder, series, tmp_path, progress=lambda *a: seen.append(a))
    assert (again["written"], again["skipped"]) == (2, 2)
    assert [s[0] for s in seen] == [3, 4]
    np.testing.assert_array_equal(_read_parts(tmp_path)["row"], np.arange(800))


def test_a_run_at_once_with_another_is_refused_and_live_temporaries_are_kept(
    sms, tmp_path, local_scheduler
):
    from embedxfer._core.locks import held_lock

    docs, _ = sms
    series = dd.from_pandas(pd.Series(docs[:400], name="text"), npartitions=2)
    embedder = WordVectorEmbedder().fit(docs[:10])
    busy = rf"being written by another .*pid {os.getpid()} on"
    # another run writing the folder
    with held_lock(tmp_path / edask.LOCK), pytest.raises(edask.OutputFolderError, match=busy):
        edask.embed_to_parquet(embedder, series, tmp_path)
    assert not list(tmp_path.glob("part-*"))
    live = _part_temporary(tmp_path, 0, 1)  # pid 1 runs as long as the machine does
    dead = _part_temporary(tmp_path, 1, _ended_pid())
    remote = _part_temporary(tmp_path, 0, 1, host="0ther0st")
    remote_old = _part_temporary(tmp_path, 1, 1, host="0ther0st")
    for tmp in (live, dead, remote, remote_old):
        tmp.write_bytes(b"in flight")
    os.utime(remote_old, (time.time() - 2 * 86400,) * 2)
    summary = edask.embed_to_parquet(embedder, series, tmp_path)
    assert summary["written"] == 2
    assert sorted(tmp_path.glob(".part-*.tmp")) == sorted([live, remote])
