"""Documents per second embedding on a Dask LocalCluster against a single process.

The same work in every configuration: read Parquet input files (real SMS
Spam texts, repeated to N documents), embed them, write one Parquet file of
vectors per input partition. The single process runs the partitions one after
the other with the per-partition function the cluster runs
(``embedxfer.dask._write_partition``); the cluster runs
``embedxfer.dask.embed_to_parquet`` on ``dask.dataframe.read_parquet`` of the
same files, on ``embedxfer.dask.local_cluster`` (``--dask-default`` adds a
cluster with Dask's default worker environment). Models are loaded before timing
(``check_workers`` on the cluster), clusters are started once; configurations
alternate round by round and the medians are compared at equal cores:

- single process limited to 1 core  vs  LocalCluster, 1 worker x 1 thread
- single process limited to 2 cores vs  LocalCluster, 2 workers x 1 thread

(the single process's cores: ``OMP_NUM_THREADS`` for the pooling kernels,
``torch.set_num_threads`` for MiniLM; Dask's nannies give each worker one
thread by default.) A ratio of 1.00 means no distributed overhead; the goal is
>= 0.90.

    python benchmarks/dask_embed.py                           # 1M GloVe docs, 1,000 MiniLM docs
    python benchmarks/dask_embed.py --docs 200000 --minilm-docs 500 --rounds 1
"""

import argparse
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=1_000_000, help="GloVe documents")
    parser.add_argument("--minilm-docs", type=int, default=1000, help="MiniLM documents (0: skip)")
    parser.add_argument(
        "--partitions", type=int, default=20, help="input files = partitions (default 20)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", default="1,2", help="cluster sizes (default 1,2)")
    parser.add_argument(
        "--dask-default",
        action="store_true",
        help="also time a 1-worker cluster with Dask's default worker "
        "environment (MALLOC_TRIM_THRESHOLD_=65536)",
    )
    args = parser.parse_args(argv)
    print(describe())

    from distributed import Client, LocalCluster

    import embedxfer.dask as edask
    from embedxfer import WordVectorEmbedder
    from embedxfer.datasets import load_sms_spam

    warnings.simplefilter("ignore")
    # Workers inherit the environment: no weight-loading progress bars from them.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    logging.getLogger("distributed").setLevel(logging.ERROR)
    sizes = [int(w) for w in args.workers.split(",")]
    sms = list(load_sms_spam().data)
    root = Path(tempfile.mkdtemp(prefix="embedxfer-dask-bench-"))
    clusters = {}
    try:
        for n in sizes:
            cluster = edask.local_cluster(n, silence_logs=40)
            clusters[n] = (cluster, Client(cluster, set_as_default=False))
        if args.dask_default:
            # Dask's own defaults: MALLOC_TRIM_THRESHOLD_=65536 in the workers.
            cluster = LocalCluster(
                n_workers=1,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=40,
            )
            clusters["default"] = (cluster, Client(cluster, set_as_default=False))
        jobs = [("GloVe 6B 50d mean", args.docs, WordVectorEmbedder("glove-6B-50d"))]
        if args.minilm_docs:
            from embedxfer import SentenceEmbedder

            jobs.append(
                ("MiniLM-L6 mean", args.minilm_docs, SentenceEmbedder(device="cpu", batch_size=32))
            )
        print(
            f"machine: {os.cpu_count()} cores (shared with other work while measured: "
            "figures are noisy); Python",
            sys.version.split()[0],
        )
        rows = []
        for label, n_docs, embedder in jobs:
            files = _write_inputs(root / label.split()[0], sms, n_docs, args.partitions)
            embedder.fit(sms[:100])
            times = {}
            for round_ in range(args.rounds):
                for cores in sizes:
                    key = ("single", cores)
                    times.setdefault(key, []).append(_single(embedder, files, root, cores))
                    key = ("cluster", cores)
                    client = clusters[cores][1]
                    edask.check_workers(embedder, client)  # model loaded: not timed
                    seconds = _cluster(edask, embedder, files, root, client)
                    times.setdefault(key, []).append(seconds)
                if "default" in clusters:
                    client = clusters["default"][1]
                    edask.check_workers(embedder, client)
                    seconds = _cluster(edask, embedder, files, root, client)
                    times.setdefault(("default", 1), []).append(seconds)
                print(f"  {label}: round {round_ + 1}/{args.rounds} done", flush=True)
            for cores in sizes:
                single = statistics.median(times[("single", cores)])
                dist = statistics.median(times[("cluster", cores)])
                rows.append((label, n_docs, cores, n_docs / single, n_docs / dist, single / dist))
            if ("default", 1) in times:
                single = statistics.median(times[("single", 1)])
                dist = statistics.median(times[("default", 1)])
                rows.append(
                    (
                        label + " (Dask default malloc trim)",
                        n_docs,
                        1,
                        n_docs / single,
                        n_docs / dist,
                        single / dist,
                    )
                )
        _table(rows, args.rounds)
        _projection(rows)
    finally:
        for cluster, client in clusters.values():
            client.close()
            cluster.close()
        shutil.rmtree(root, ignore_errors=True)
    return 0


def _write_inputs(folder, texts, n_docs, parts):
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    docs = (texts * (n_docs // len(texts) + 1))[:n_docs]
    bounds = np.linspace(0, n_docs, parts + 1).astype(int)
    files = []
    for i in range(parts):
        path = folder / f"in-{i:04d}.parquet"
        pd.DataFrame({"text": docs[bounds[i] : bounds[i + 1]]}).to_parquet(path)
        files.append(path)
    return files


def _single(embedder, files, root, cores):
    import pandas as pd

    from embedxfer.dask import _write_partition

    out = root / "out-single"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    old = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(cores)
    torch_threads = _torch_threads(cores)
    try:
        started = time.perf_counter()
        offset = 0
        for i, path in enumerate(files):
            frame = pd.read_parquet(path)
            n, _ = _write_partition(
                frame, embedder, str(out / f"part-{i:05d}.parquet"), offset, None
            )
            offset += n
        return time.perf_counter() - started
    finally:
        _torch_threads(torch_threads)
        if old is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = old


def _cluster(edask, embedder, files, root, client):
    import dask.dataframe as dd

    out = root / "out-cluster"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    frame = dd.read_parquet([str(p) for p in files])
    edask.embed_to_parquet(embedder, frame, out, client=client)
    return time.perf_counter() - started


def _torch_threads(n):
    try:
        import torch
    except ImportError:
        return None
    if n is None:
        return None
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    return old


def _table(rows, rounds):
    print(
        f"\nmedian of {rounds} round(s); cluster time includes reading the Parquet input, "
        "the row-count pass and writing one Parquet file per partition, as the single "
        "process does\n"
    )
    print(
        "| model | documents | cores | single process docs/s | LocalCluster docs/s "
        "(workers x 1 thread) | cluster / single |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for label, n, cores, single, dist, ratio in rows:
        verdict = "PASS" if ratio >= 0.9 else "FAIL"
        print(
            f"| {label} | {n:,} | {cores} | {single:,.0f} | {dist:,.0f} | "
            f"{ratio:.2f} ({verdict}: goal >= 0.90) |"
        )


def _projection(rows):
    print(
        "\nprojection for 100M documents from the 1-worker cluster rate (per core), "
        "assuming linear scaling across machines:"
    )
    print("| model | docs/s per core | 1 machine x 16 cores | 10 x 16 | 50 x 16 |")
    print("|---|---:|---:|---:|---:|")
    for label, _n, cores, _single, dist, _ratio in rows:
        if cores != 1 or "default" in label:
            continue
        per_core = dist
        cells = [_hours(1e8 / (per_core * k * 16)) for k in (1, 10, 50)]
        print(f"| {label} | {per_core:,.0f} | " + " | ".join(cells) + " |")


def _hours(seconds):
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


if __name__ == "__main__":
    sys.exit(main())
