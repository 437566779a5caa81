"""StaticEmbedder against its teacher, word vectors and model2vec: speed and quality.

Distils the packaged all-MiniLM-L6-v2 (timed, in a fresh ``EMBEDXFER_HOME``
unless ``--home`` names one that already holds the table), then

- speed: documents per second from raw strings on SST-2 sentences, for
  StaticEmbedder, SentenceEmbedder (torch, the teacher), WordVectorEmbedder
  (GloVe 6B 50d) and model2vec (when installed), alternating round by round
  in one process; medians and their ratios, with the load average; the
  StaticEmbedder and WordVectorEmbedder rows also as numpy code (the compiled
  kernels turned off, as in an install without a C compiler);
- quality, SST-2 protocol: the first 2,000 training sentences, the official
  test split, ``LogisticRegression(max_iter=2000)``; with ``--adapt`` also
  StaticEmbedder adapted (no labels) to the SST-2 training sentences (all of
  them, or the first ``--adapt-docs``); with ``--mr`` MR 10-fold
  cross-validation, and with ``--adapt`` too the embedder adapted in each fold
  to that fold's training sentences only;
- size: the table and its tokenizer on disk.

The teacher's vectors are kept in an embedding cache (``--cache``), so reruns
skip the slow part.

    python benchmarks/static_embed.py --cache /tmp/teacher-cache
    python benchmarks/static_embed.py --docs 20000 --rounds 5 --adapt --mr
    python benchmarks/static_embed.py --model2vec-python /tmp/m2v/bin/python

model2vec 0.10.0 pins an older transformers, so it is run from its own
virtual environment (``--model2vec-python``), in a subprocess that distils
the same local model folder and times its encoding of the same sentences.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import DATA_DIR

ROOT = Path(__file__).resolve().parents[1]

_MODEL2VEC_SCRIPT = r"""
import json, sys, time
import numpy as np
from model2vec.distill import distill
model_path, texts_path, rounds, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
texts = json.load(open(texts_path))
started = time.perf_counter()
model = distill(model_name=model_path, pca_dims=256)
distil_s = time.perf_counter() - started
times = []
for _ in range(rounds):
    started = time.perf_counter()
    model.encode(texts["speed"])
    times.append(time.perf_counter() - started)
X_train = model.encode(texts["train"])
X_test = model.encode(texts["test"])
np.savez(out, X_train=X_train, X_test=X_test, times=np.array(times), distil_s=distil_s)
"""


def read(data, name, split):
    frame = pd.read_csv(data / name / f"{split}.csv")
    return frame["text"].astype(str).tolist(), frame["label"].to_numpy()


def timed(fn, *args):
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def numpy_code(transform):
    """``transform`` with the compiled kernels turned off: what an install without
    a C compiler runs (the same vectors)."""
    from embedxfer.text import _native

    def run(docs):
        saved, _native.ENABLED = _native.ENABLED, False
        try:
            return transform(docs)
        finally:
            _native.ENABLED = saved

    return run


def load_average():
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def sst2_accuracy(embed, train, test):
    from sklearn.linear_model import LogisticRegression

    (X_train, y_train), (X_test, y_test) = train, test
    classifier = LogisticRegression(max_iter=2000).fit(embed(X_train), y_train)
    return float(classifier.score(embed(X_test), y_test))


def mr_accuracy(embed, texts, labels):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    folds = StratifiedKFold(10, shuffle=True, random_state=0)
    X = embed(texts)
    return float(cross_val_score(LogisticRegression(max_iter=2000), X, labels, cv=folds).mean())


def mr_accuracy_lsa(texts, labels):
    """MR 10-fold accuracy of LSA (TF-IDF, 100 SVD components), fitted in each fold."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline

    pipe = make_pipeline(
        TfidfVectorizer(sublinear_tf=True),
        TruncatedSVD(n_components=100, random_state=0),
        LogisticRegression(max_iter=2000),
    )
    folds = StratifiedKFold(10, shuffle=True, random_state=0)
    return float(cross_val_score(pipe, texts, labels, cv=folds).mean())


def mr_accuracy_adapted(make_embedder, texts, labels):
    """MR 10-fold accuracy, the embedder adapted to each fold's training sentences only."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    folds = StratifiedKFold(10, shuffle=True, random_state=0)
    texts, scores = np.asarray(texts, dtype=object), []
    for train_index, test_index in folds.split(texts, labels):
        embedder = make_embedder().fit(list(texts[train_index]))
        classifier = LogisticRegression(max_iter=2000).fit(
            embedder.transform(list(texts[train_index])), labels[train_index]
        )
        scores.append(
            classifier.score(embedder.transform(list(texts[test_index])), labels[test_index])
        )
    return float(np.mean(scores))


def adapted_embedder(teacher):
    """``StaticEmbedder(adapt=True)`` whose teacher vectors come from ``teacher`` (its cache)."""
    from embedxfer import StaticEmbedder

    adapted = StaticEmbedder(adapt=True)
    adapted._teacher_vectors = lambda docs, device: teacher.transform(docs)
    return adapted


def run_model2vec(python, texts, rounds):
    """model2vec's distillation time, encoding times and SST-2 vectors, or None."""
    from embedxfer.text._encoder_loading import packaged_minilm_path

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "texts.json").write_text(json.dumps(texts))
        (tmp / "run.py").write_text(_MODEL2VEC_SCRIPT)
        out = tmp / "out.npz"
        done = subprocess.run(
            [
                python,
                str(tmp / "run.py"),
                packaged_minilm_path(),
                str(tmp / "texts.json"),
                str(rounds),
                str(out),
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            print(f"model2vec failed: {done.stderr.strip().splitlines()[-1:]}")
            return None
        result = np.load(out)
        return {key: result[key] for key in result.files}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA_DIR)
    parser.add_argument("--docs", type=int, default=20000, help="sentences timed per round")
    parser.add_argument("--teacher-docs", type=int, default=500, help="sentences for the teacher")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--home", type=Path, default=None, help="EMBEDXFER_HOME to use")
    parser.add_argument("--cache", type=Path, default=None, help="teacher embedding cache")
    parser.add_argument("--adapt", action="store_true", help="also adapt to SST-2 training")
    parser.add_argument(
        "--adapt-docs", type=int, default=None, help="adapt to the first N training sentences"
    )
    parser.add_argument("--mr", action="store_true", help="also MR 10-fold cross-validation")
    parser.add_argument(
        "--mr-teacher", action="store_true", help="include the teacher in MR (10,662 sentences)"
    )
    parser.add_argument("--model2vec-python", default=None, help="python with model2vec")
    args = parser.parse_args(argv)

    os.environ["EMBEDXFER_HOME"] = str(args.home or tempfile.mkdtemp(prefix="static-bench-"))
    warnings.simplefilter("ignore")
    from embedxfer import SentenceEmbedder, StaticEmbedder, WordVectorEmbedder
    from embedxfer.text._static_tables import static_home

    train_all, labels_all = read(args.data, "sst2", "train")
    test, test_labels = read(args.data, "sst2", "test")
    train, labels = train_all[:2000], labels_all[:2000]
    speed_docs = (train_all * (1 + args.docs // len(train_all)))[: args.docs]
    print(f"load average {load_average():.1f} on {os.cpu_count()} CPUs")

    teacher = SentenceEmbedder(
        pooling="mean", cache=None if args.cache is None else str(args.cache)
    )
    teacher.fit()
    started = time.perf_counter()
    static = StaticEmbedder().fit()
    distil_s = time.perf_counter() - started
    started = time.perf_counter()
    StaticEmbedder().fit()  # the table is loaded once per process: a second fit reads nothing
    folder = static_home() / static.table_key_
    size = sum(p.stat().st_size for p in folder.iterdir())
    print(
        f"distil + load: {distil_s:.1f} s (load average {load_average():.1f}); table on disk "
        f"{size / 2**20:.1f} MiB ({folder})"
    )
    reload = subprocess.run(
        [
            sys.executable,
            "-c",
            "import time, warnings; warnings.simplefilter('ignore'); "
            "from embedxfer import StaticEmbedder; t = time.perf_counter(); "
            "StaticEmbedder().fit(); print(time.perf_counter() - t)",
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        cwd=ROOT,
    )
    print(
        f"fit in a new process (table on disk): {reload.stdout.strip() or reload.stderr[-300:]} s"
    )

    word = WordVectorEmbedder().fit(train)
    teacher_plain = SentenceEmbedder(pooling="mean").fit()
    teacher_docs = speed_docs[: args.teacher_docs]
    candidates = {
        "StaticEmbedder": (static.transform, speed_docs),
        "StaticEmbedder (numpy code)": (numpy_code(static.transform), speed_docs),
        "WordVectorEmbedder (GloVe 50d)": (word.transform, speed_docs),
        "WordVectorEmbedder (numpy code)": (numpy_code(word.transform), speed_docs),
        "SentenceEmbedder (torch)": (teacher_plain.transform, teacher_docs),
    }
    for fn, docs in candidates.values():
        fn(docs[:200])  # warm up
    times = {name: [] for name in candidates}
    loads = []
    for _ in range(args.rounds):
        for name, (fn, docs) in candidates.items():
            times[name].append(timed(fn, docs) / len(docs))
        loads.append(load_average())
    rates = {name: 1.0 / statistics.median(t) for name, t in times.items()}

    m2v = None
    if args.model2vec_python:
        m2v = run_model2vec(
            args.model2vec_python, {"speed": speed_docs, "train": train, "test": test}, args.rounds
        )
        if m2v is not None:
            rates["model2vec 0.10.0 (own process)"] = len(speed_docs) / float(
                np.median(m2v["times"])
            )

    print(
        f"\nSpeed, SST-2 sentences from raw strings ({args.rounds} alternating rounds, "
        f"load average {min(loads):.1f}-{max(loads):.1f}):"
    )
    print(f"  {'method':<34} {'docs/s':>10} {'x teacher':>10}")
    for name, rate in rates.items():
        print(f"  {name:<34} {rate:>10,.0f} {rate / rates['SentenceEmbedder (torch)']:>10.1f}")
    if m2v is not None:
        print(f"  model2vec distillation: {float(m2v['distil_s']):.1f} s")

    quality = {
        "StaticEmbedder": sst2_accuracy(static.transform, (train, labels), (test, test_labels)),
        "WordVectorEmbedder (GloVe 50d)": sst2_accuracy(
            word.transform, (train, labels), (test, test_labels)
        ),
        "SentenceEmbedder (teacher, mean)": sst2_accuracy(
            teacher.transform, (train, labels), (test, test_labels)
        ),
    }
    if m2v is not None:
        from sklearn.linear_model import LogisticRegression

        classifier = LogisticRegression(max_iter=2000).fit(m2v["X_train"], labels)
        quality["model2vec 0.10.0"] = float(classifier.score(m2v["X_test"], test_labels))
    adapted = None
    if args.adapt:
        adapt_docs = train_all[: args.adapt_docs]
        adapted = adapted_embedder(teacher)
        started = time.perf_counter()
        adapted.fit(adapt_docs)
        print(
            f"\nadaptation to {len(adapt_docs)} SST-2 training sentences: "
            f"{time.perf_counter() - started:.1f} s (teacher vectors from the cache when "
            f"there); {len(adapted.adapted_ids_)} rows adapted, "
            f"{adapted.adapted_vectors_.nbytes / 2**20:.1f} MiB of fitted state"
        )
        quality["StaticEmbedder, adapted"] = sst2_accuracy(
            adapted.transform, (train, labels), (test, test_labels)
        )
    print("\nSST-2 accuracy (first 2,000 training sentences, test split, logistic regression):")
    for name, accuracy in quality.items():
        print(f"  {name:<34} {accuracy:.4f}")
    if args.mr:
        texts, mr_labels = read(args.data, "mr", "all")
        print("\nMR accuracy (10-fold cross-validation):")
        methods = [
            ("StaticEmbedder", static.transform),
            ("WordVectorEmbedder (GloVe 50d)", word.transform),
        ]
        if args.mr_teacher:
            methods.append(("SentenceEmbedder (teacher, mean)", teacher.transform))
        for name, fn in methods:
            print(f"  {name:<34} {mr_accuracy(fn, texts, mr_labels):.4f}")
        print(f"  {'LSA (TF-IDF + SVD 100, per fold)':<34} {mr_accuracy_lsa(texts, mr_labels):.4f}")
        if args.adapt:
            accuracy = mr_accuracy_adapted(lambda: adapted_embedder(teacher), texts, mr_labels)
            print(f"  {'StaticEmbedder, adapted per fold':<34} {accuracy:.4f}")


if __name__ == "__main__":
    main()
