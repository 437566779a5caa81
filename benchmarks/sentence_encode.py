"""Documents per second: SentenceEmbedder vs SentenceTransformer.encode.

Both encode the same real sentences (SST-2 and MR from ../shared/data) with
the same model, batch size, device and precision. Runs alternate between the
two implementations and the medians are compared, so that load from other
processes hits both alike. On a CUDA machine float32 and float16 are both
measured.

    python benchmarks/sentence_encode.py            # 10,000 sentences
    python benchmarks/sentence_encode.py --n 2000 --repeats 5 --segments 10

With ``--backends`` the CPU backends are compared instead: torch float32,
ONNX Runtime float32 and int8 (and sentence-transformers' own ONNX backend
where it installs), each against ``SentenceTransformer.encode`` with the
same batch size and thread count, in alternating slices; ``--accuracy``
adds SST-2 (official split) and MR (5-fold) logistic-regression accuracy
for each backend:

    python benchmarks/sentence_encode.py --backends --n 2000 --repeats 3 --segments 10 --accuracy

``--fused`` adds ONNX rows on the transformer optimizer's fused graph
(float32 and int8), a lever measured here but not the estimator's default;
``--spinning`` adds rows whose idle ONNX Runtime threads spin (ONNX Runtime's
default, which the estimator turns off). A torch bfloat16 row is added where
the CPU has native bfloat16 products (AMX or AVX512-BF16).
``--openvino-python PATH`` (a Python with openvino, onnxruntime and numpy, e.g.
a separate virtual environment) adds a table of forward passes through
OpenVINO (float32, its bf16 inference precision hint, ONNX Runtime's int8
graph) against ONNX Runtime, replaying the very inputs embedxfer's ONNX backend
ran, in alternating turns in that Python's process:

    python benchmarks/sentence_encode.py --backends --n 400 --repeats 3 --segments 10 \
        --threads 2 --accuracy --accuracy-n 2000 --openvino-python /tmp/ov/bin/python
Each row's share of the estimated peak compares its speed with the CPU's
arithmetic limit for the model's weight products: 2 x (4 h^2 + 2 h i) FLOP per
token and layer (about 21 MFLOP per token for all-MiniLM-L6-v2), at
``--peak-gflops`` per thread in float32 (default 192: 3 GHz x two AVX-512 FMA
units) and 4x that in int8 (VNNI dot products).
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"


def load_sentences(data, n, seed=0):
    import pandas as pd

    files = sorted((data / "sst2").glob("*.csv")) + [data / "mr" / "all.csv"]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        sys.exit(f"data not found: {missing}; pass --data")
    texts = pd.concat([pd.read_csv(f).text for f in files]).dropna().astype(str).tolist()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(texts))[:n]
    if len(order) < n:
        print(f"only {len(order)} sentences available", file=sys.stderr)
    return [texts[i] for i in order]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def bench_setting(docs, device, precision, batch_size, repeats, extra_poolings, segments=1):
    import torch
    from sentence_transformers import SentenceTransformer

    from embedxfer import SentenceEmbedder
    from embedxfer.text._encoder_loading import packaged_minilm_path

    reference = SentenceTransformer(packaged_minilm_path(), device=device)
    reference.to(dtype=getattr(torch, precision))
    reference.eval()
    candidates = {
        "sentence-transformers encode": lambda texts: reference.encode(
            texts, batch_size=batch_size, convert_to_numpy=True
        )
    }
    for pooling in ("model", *extra_poolings):
        embedder = SentenceEmbedder(
            pooling=pooling, batch_size=batch_size, device=device, precision=precision
        ).fit()
        candidates[f"embedxfer SentenceEmbedder(pooling={pooling!r})"] = embedder.transform

    warm = docs[: min(len(docs), 4 * batch_size)]
    for fn in candidates.values():
        fn(warm)

    # With segments > 1 a run is cut into consecutive slices and the
    # implementations take turns slice by slice (run_alternating), so that a
    # burst of load from other processes hits all of them alike.
    times, slice_times, outputs = run_alternating(candidates, docs, repeats, segments)

    ours = outputs["embedxfer SentenceEmbedder(pooling='model')"]
    theirs = outputs["sentence-transformers encode"]
    max_diff = float(np.abs(ours - np.asarray(theirs, dtype=np.float32)).max())
    return times, slice_times, max_diff


def _cosines(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def _minilm_identity():
    """The packaged MiniLM's identity, as SentenceEmbedder keys its exports."""
    from embedxfer.text._encoder_loading import packaged_minilm_path
    from embedxfer.text._sentence import _folder_signature

    source = str(packaged_minilm_path())
    return {"source": source, "files": _folder_signature(source)}


def _fused_embedder(params):
    """A fitted SentenceEmbedder(backend="onnx") that runs the fused graph instead."""
    from embedxfer import SentenceEmbedder
    from embedxfer.text._encoder_onnx import load_onnx_encoder

    embedder = SentenceEmbedder(**params).fit()
    backend = load_onnx_encoder(
        embedder._backend()._torch,
        _minilm_identity(),
        precision=embedder.precision,
        all_layers=False,
        n_threads=embedder.n_threads,
        fused=True,
    )
    embedder._backend = lambda: backend  # this benchmark's instance only
    return embedder


def _spinning_embedder(params):
    """A fitted SentenceEmbedder(backend="onnx") whose session's idle threads spin."""
    from embedxfer import SentenceEmbedder
    from embedxfer.text._encoder_onnx import OnnxEncoderBackend, exported_graph, make_session

    embedder = SentenceEmbedder(**params).fit()
    torch_backend = embedder._backend()._torch
    path = exported_graph(
        torch_backend, _minilm_identity(), all_layers=False, precision=embedder.precision
    )
    session = make_session(path, embedder.n_threads, spinning=True)
    backend = OnnxEncoderBackend(torch_backend, {False: session}, precision=embedder.precision)
    embedder._backend = lambda: backend  # this benchmark's instance only
    return embedder


def _autocast(encode):
    """``encode`` under ``torch.autocast("cpu", dtype=torch.bfloat16)``."""
    import torch

    def run(texts):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return encode(texts)

    return run


def backend_candidates(batch_size, n_threads, fused=False, spinning=False, autocast=False):
    """``{name: encode function}`` for the CPU backends, and the rows that could not run."""
    from sentence_transformers import SentenceTransformer

    from embedxfer import SentenceEmbedder
    from embedxfer._core.device import cpu_has_bfloat16
    from embedxfer.text._encoder_loading import packaged_minilm_path

    path = packaged_minilm_path()
    reference = SentenceTransformer(path, device="cpu")
    candidates = {
        "sentence-transformers encode (torch)": lambda texts: reference.encode(
            texts, batch_size=batch_size, convert_to_numpy=True
        )
    }
    common = dict(pooling="model", batch_size=batch_size, n_threads=n_threads)
    for name, params in [
        ("embedxfer torch float32", dict(device="cpu")),
        ("embedxfer onnx float32", dict(backend="onnx")),
        ("embedxfer onnx int8", dict(backend="onnx", precision="int8")),
    ]:
        candidates[name] = SentenceEmbedder(**common, **params).fit().transform
    skipped = {}
    if cpu_has_bfloat16():
        bf16 = SentenceEmbedder(**common, device="cpu", precision="bfloat16").fit()
        candidates["embedxfer torch bfloat16"] = bf16.transform
        if autocast:
            float32 = SentenceEmbedder(**common, device="cpu").fit()
            candidates["embedxfer torch float32, bfloat16 autocast"] = _autocast(float32.transform)
    else:
        skipped["embedxfer torch bfloat16"] = "this CPU has neither AMX nor AVX512-BF16"
    if spinning:
        for precision in ("float32", "int8"):
            params = dict(common, backend="onnx", precision=precision)
            candidates[f"embedxfer onnx {precision} spinning"] = _spinning_embedder(
                params
            ).transform
    if fused:
        for precision in ("float32", "int8"):
            params = dict(common, backend="onnx", precision=precision)
            candidates[f"embedxfer onnx {precision} fused"] = _fused_embedder(params).transform
    try:
        st_onnx = SentenceTransformer(path, device="cpu", backend="onnx")
        candidates["sentence-transformers backend='onnx'"] = lambda texts: st_onnx.encode(
            texts, batch_size=batch_size, convert_to_numpy=True
        )
    except Exception as err:  # optimum missing, or an export it cannot make offline
        skipped["sentence-transformers backend='onnx'"] = f"{type(err).__name__}: {err}"
    return candidates, skipped


# Run by the --openvino-python interpreter (numpy, openvino, onnxruntime; no
# embedxfer): replays the recorded session inputs through ONNX Runtime and
# OpenVINO in alternating turns, and saves every output and timing.
_OPENVINO_SCRIPT = r"""
import json
import sys
import time

import numpy as np
import onnxruntime as ort
import openvino as ov

fp32_path, int8_path, feeds_path, n_threads, repeats, out_path = sys.argv[1:]
n_threads, repeats = int(n_threads), int(repeats)
stored = np.load(feeds_path)
feeds = {}
for key in sorted(stored.files):
    group, index, name = key.split("|")
    feeds.setdefault(group, {}).setdefault(int(index), {})[name] = stored[key]
feeds = {g: [runs[i] for i in sorted(runs)] for g, runs in feeds.items()}


def ort_session(path):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.intra_op_num_threads = n_threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return lambda feed: session.run(["tokens"], feed)[0]


core = ov.Core()


def ov_model(path, precision):
    config = {
        "INFERENCE_NUM_THREADS": n_threads,
        "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": precision,
    }
    compiled = core.compile_model(path, "CPU", config)
    request = compiled.create_infer_request()
    output = compiled.output("tokens")
    return lambda feed: np.array(request.infer(feed)[output], copy=True)


# (row name, graph the inputs were recorded for, how to build it)
rows = [
    ("onnxruntime float32", "float32", lambda: ort_session(fp32_path)),
    ("openvino float32", "float32", lambda: ov_model(fp32_path, "f32")),
    ("openvino bf16 hint", "float32", lambda: ov_model(fp32_path, "bf16")),
    ("onnxruntime int8", "int8", lambda: ort_session(int8_path)),
    ("openvino on the int8 graph", "int8", lambda: ov_model(int8_path, "f32")),
]
runners, skipped = {}, {}
for name, graph, build in rows:
    try:
        runners[name] = (graph, build())
    except Exception as err:
        skipped[name] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
seconds = {name: 0.0 for name in runners}
outputs = {}
for name, (graph, run) in list(runners.items()):
    try:
        for group in feeds:
            if group.startswith(graph):
                outputs[name, group] = [run(feed) for feed in feeds[group]]  # also warms up
    except Exception as err:
        skipped[name] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
        del runners[name], seconds[name]
names = list(runners)
turn = 0
for _ in range(repeats):
    for graph in ("float32", "int8"):
        for index, feed in enumerate(feeds.get(graph + "-speed", [])):
            order = [n for n in names if runners[n][0] == graph]
            for name in order if turn % 2 == 0 else order[::-1]:
                start = time.perf_counter()
                runners[name][1](feed)
                seconds[name] += time.perf_counter() - start
            turn += 1
arrays = {}
for (name, group), parts in outputs.items():
    for index, tokens in enumerate(parts):
        arrays[f"{name}|{group}|{index:05d}"] = tokens
np.savez(out_path, **arrays)
meta = {"seconds": {n: s / repeats for n, s in seconds.items()}, "skipped": skipped,
        "openvino": ov.__version__, "onnxruntime": ort.__version__}
with open(out_path + ".json", "w") as f:
    json.dump(meta, f)
"""


class _RecordingSession:
    """An ONNX Runtime session stand-in that records every input (and runs it)."""

    def __init__(self, session, log):
        self._session, self._log = session, log

    def get_inputs(self):
        return self._session.get_inputs()

    def run(self, names, feed):
        self._log.append({k: np.ascontiguousarray(v) for k, v in feed.items()})
        return self._session.run(names, feed)


class _ReplayingSession:
    """A session stand-in that returns stored outputs, in the order they were recorded."""

    def __init__(self, session, outputs):
        self._session, self._outputs = session, iter(outputs)

    def get_inputs(self):
        return self._session.get_inputs()

    def run(self, names, feed):
        return [next(self._outputs)]


def _with_session(embedder, session):
    """A copy of a fitted ONNX SentenceEmbedder whose backend runs ``session``."""
    from embedxfer.text._encoder_onnx import OnnxEncoderBackend

    backend = embedder._backend()
    copy = type(embedder)(**embedder.get_params()).fit()
    swapped = OnnxEncoderBackend(backend._torch, {False: session}, precision=backend.precision)
    copy._backend = lambda: swapped  # this benchmark's instance only
    return copy


def run_openvino(python, docs, accuracy_sets, batch_size, n_threads, repeats):
    """OpenVINO against ONNX Runtime on embedxfer's own session inputs, in ``python``.

    The ONNX backend's float32 and int8 embedders encode ``docs`` (and the
    ``accuracy_sets``) once while their session inputs are recorded; a
    subprocess replays them through ONNX Runtime and OpenVINO (forward passes
    only, alternating), and the outputs are replayed through the embedders'
    pooling. Returns ``(forward seconds, vectors, skipped, versions)`` or None.
    """
    import json
    import subprocess
    import tempfile

    from embedxfer import SentenceEmbedder
    from embedxfer.text._encoder_onnx import exported_graph

    common = dict(pooling="model", batch_size=batch_size, n_threads=n_threads, backend="onnx")
    embedders = {p: SentenceEmbedder(**common, precision=p).fit() for p in ("float32", "int8")}
    texts = {"speed": docs, **accuracy_sets}
    feeds = {}
    for precision, embedder in embedders.items():
        for group, group_texts in texts.items():
            log = []
            session = _RecordingSession(embedder._backend().session, log)
            _with_session(embedder, session).transform(group_texts)
            feeds[f"{precision}-{group}"] = log
    paths = {
        p: exported_graph(e._backend()._torch, _minilm_identity(), all_layers=False, precision=p)
        for p, e in embedders.items()
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        arrays = {
            f"{group}|{i:05d}|{name}": value
            for group, log in feeds.items()
            for i, feed in enumerate(log)
            for name, value in feed.items()
        }
        np.savez(tmp / "feeds.npz", **arrays)
        (tmp / "run.py").write_text(_OPENVINO_SCRIPT)
        out = tmp / "out.npz"
        done = subprocess.run(
            [
                python,
                str(tmp / "run.py"),
                str(paths["float32"]),
                str(paths["int8"]),
                str(tmp / "feeds.npz"),
                str(n_threads),
                str(repeats),
                str(out),
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            print(f"openvino worker failed: {done.stderr.strip().splitlines()[-3:]}")
            return None
        meta = json.loads(Path(str(out) + ".json").read_text())
        stored = np.load(out)
        by_row = {}
        for key in sorted(stored.files):
            name, group, _ = key.split("|")
            by_row.setdefault(name, {}).setdefault(group, []).append(stored[key])
    vectors = {}
    for name, groups in by_row.items():
        for group, outputs in groups.items():
            precision, set_name = group.split("-", 1)
            replay = _ReplayingSession(embedders[precision]._backend().session, outputs)
            vectors[name, set_name] = _with_session(embedders[precision], replay).transform(
                texts[set_name]
            )
    return meta["seconds"], vectors, meta["skipped"], meta


def run_alternating(candidates, docs, repeats, segments):
    """Total seconds per run, seconds per slice and the first run's vectors, per candidate."""
    bounds = np.linspace(0, len(docs), segments + 1).astype(int)
    slices = [docs[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    names = list(candidates)
    times = {name: [0.0] * repeats for name in names}
    slice_times = {name: [] for name in names}
    outputs = {name: [] for name in names}
    turn = 0
    for r in range(repeats):
        for part in slices:
            # Alternate the order so that neither side always runs first.
            for name in names if turn % 2 == 0 else names[::-1]:
                seconds, out = timed(lambda n=name, p=part: candidates[n](p))
                times[name][r] += seconds
                slice_times[name].append(seconds)
                if r == 0:
                    outputs[name].append(np.asarray(out, dtype=np.float32))
            turn += 1
    return times, slice_times, {n: np.concatenate(p) for n, p in outputs.items()}


def backend_accuracy(candidates, data, limit):
    """SST-2 test accuracy (train on the official train split) and MR 5-fold accuracy."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    sst_train = pd.read_csv(data / "sst2" / "train.csv")
    sst_test = pd.read_csv(data / "sst2" / "test.csv")
    mr = pd.read_csv(data / "mr" / "all.csv").sample(frac=1.0, random_state=0)
    if limit:
        sst_train, mr = sst_train.iloc[:limit], mr.iloc[:limit]
    results = {}
    for name, encode in candidates.items():
        clf = LogisticRegression(max_iter=2000)
        x_train = encode(sst_train.text.astype(str).tolist())
        x_test = encode(sst_test.text.astype(str).tolist())
        sst = clf.fit(x_train, sst_train.label).score(x_test, sst_test.label)
        x_mr = encode(mr.text.astype(str).tolist())
        folds = StratifiedKFold(5, shuffle=True, random_state=0)
        mr_acc = cross_val_score(LogisticRegression(max_iter=2000), x_mr, mr.label, cv=folds)
        results[name] = (sst, float(np.mean(mr_acc)))
    return results, len(sst_train), len(sst_test), len(mr)


def flops_per_token(config):
    """Multiply-adds x 2 of the weight products per token: 2 x layers x (4 h^2 + 2 h i)."""
    h, i = config.hidden_size, config.intermediate_size
    return 2 * config.num_hidden_layers * (4 * h * h + 2 * h * i)


def tokens_per_document(docs, max_length=256):
    """Mean tokens per document (special tokens included, truncated as the encoders do)."""
    from transformers import AutoTokenizer

    from embedxfer.text._encoder_loading import packaged_minilm_path

    tokenizer = AutoTokenizer.from_pretrained(packaged_minilm_path())
    ids = tokenizer(docs, truncation=True, max_length=max_length)["input_ids"]
    return float(np.mean([len(row) for row in ids]))


def peak_documents_per_second(docs, n_threads, gflops_per_thread):
    """Estimated peak documents/s in float32 and in int8 (4x: VNNI dot products)."""
    from transformers import AutoConfig

    from embedxfer.text._encoder_loading import packaged_minilm_path

    per_doc = flops_per_token(AutoConfig.from_pretrained(packaged_minilm_path()))
    per_doc *= tokens_per_document(docs)
    fp32 = n_threads * gflops_per_thread * 1e9 / per_doc
    return {"float32": fp32, "int8": 4 * fp32}, per_doc


def sst2_texts(args):
    """SST-2's training sentences (at most ``--accuracy-n``) and official test sentences."""
    import pandas as pd

    train = pd.read_csv(args.data / "sst2" / "train.csv")
    if args.accuracy_n:
        train = train.iloc[: args.accuracy_n]
    test = pd.read_csv(args.data / "sst2" / "test.csv")
    return {"train": train.text.astype(str).tolist(), "test": test.text.astype(str).tolist()}


def sst2_accuracy(args, train_vectors, test_vectors):
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    train = pd.read_csv(args.data / "sst2" / "train.csv")
    if args.accuracy_n:
        train = train.iloc[: args.accuracy_n]
    test = pd.read_csv(args.data / "sst2" / "test.csv")
    clf = LogisticRegression(max_iter=2000).fit(train_vectors, train.label)
    return clf.score(test_vectors, test.label)


def print_openvino(result, exact, n_docs, times, args):
    """The OpenVINO table: forward passes only, against ONNX Runtime on the same inputs."""
    seconds, vectors, skipped, meta = result
    print(
        f"\nOpenVINO {meta['openvino']} against ONNX Runtime {meta['onnxruntime']} (in its "
        "own process): forward passes only, on the inputs embedxfer's ONNX backend ran "
        f"(same batches and padding), {args.repeats} alternating runs"
    )
    print()
    print(
        "| forward pass | docs/s (forward only) | vs onnxruntime, same graph "
        "| mean cosine | min cosine |" + (" SST-2 |" if args.accuracy else "")
    )
    print("|---|---:|---:|---:|---:|" + ("---:|" if args.accuracy else ""))
    for name, spent in seconds.items():
        same = "onnxruntime int8" if "int8" in name else "onnxruntime float32"
        cos = _cosines(exact, vectors[name, "speed"])
        line = (
            f"| {name} | {n_docs / spent:.0f} | {seconds[same] / spent:.2f}x "
            f"| {cos.mean():.4f} | {cos.min():.4f} |"
        )
        if args.accuracy:
            acc = sst2_accuracy(args, vectors[name, "sst2-train"], vectors[name, "sst2-test"])
            line += f" {100 * acc:.2f} |"
        print(line)
    for name, why in skipped.items():
        print(f"| {name} | skipped: {why[:160]} | | | |")
    print(
        "\nCosines are to embedxfer torch float32 (the table above), after embedxfer's "
        "pooling of each forward pass's token states."
    )


def main_backends(args, docs):
    import os

    import torch

    n_threads = torch.get_num_threads()
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    candidates, skipped = backend_candidates(
        args.batch_size, n_threads, args.fused, args.spinning, args.autocast
    )
    peaks, flops_per_doc = peak_documents_per_second(docs, n_threads, args.peak_gflops)
    warm = docs[: min(len(docs), 4 * args.batch_size)]
    for fn in candidates.values():
        fn(warm)
    times, slice_times, outputs = run_alternating(candidates, docs, args.repeats, args.segments)
    reference = "sentence-transformers encode (torch)"
    exact = outputs["embedxfer torch float32"]
    base = statistics.median(times[reference])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"CPU backends, {len(docs)} sentences, all-MiniLM-L6-v2 (pooling='model'), "
        f"batch_size={args.batch_size}, {n_threads} threads for every row, {args.repeats} "
        f"runs of {args.segments} alternating slices; load average {load_before:.1f} at the "
        f"start, {load:.1f} at the end, on {os.cpu_count()} CPUs"
    )
    print(
        f"Estimated peak: {flops_per_doc / 1e6:.0f} MFLOP per document, {args.peak_gflops:g} "
        f"GFLOP/s per thread in float32 and 4x in int8: {peaks['float32']:.0f} docs/s "
        f"float32, {peaks['int8']:.0f} docs/s int8"
    )
    print()
    print(
        "| implementation | docs/s (median) | speed vs encode | speed vs encode (paired) "
        "| share of est. peak | max abs diff | mean cosine | min cosine |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, runs in times.items():
        median = statistics.median(runs)
        ratios = [b / a for a, b in zip(slice_times[name], slice_times[reference])]
        cos = _cosines(exact, outputs[name])
        peak = peaks["int8" if "int8" in name else "float32"]  # bfloat16: the float32 peak
        print(
            f"| {name} | {len(docs) / median:.0f} | {base / median:.2f}x "
            f"| {statistics.median(ratios):.2f}x | {100 * len(docs) / median / peak:.0f}% "
            f"| {np.abs(outputs[name] - exact).max():.1e} "
            f"| {cos.mean():.4f} | {cos.min():.4f} |"
        )
    for name, why in skipped.items():
        print(f"| {name} | skipped: {why[:160]} | | | | | | |")
    print(
        "\nspeed vs encode = encode's median run time / this row's; paired = median over "
        "slices of the same ratio for back-to-back runs (robust to load from other "
        "processes). Share of est. peak = docs/s over the estimated peak of the row's "
        "precision (above). Differences and cosines are to embedxfer torch float32."
    )
    openvino = None
    if args.openvino_python:
        sets = {}
        if args.accuracy:
            sets = {f"sst2-{split}": texts for split, texts in sst2_texts(args).items()}
        openvino = run_openvino(
            args.openvino_python, docs, sets, args.batch_size, n_threads, args.repeats
        )
    if openvino is not None:
        print_openvino(openvino, exact, len(docs), times, args)
    if args.accuracy:
        rows = {k: v for k, v in candidates.items() if k != reference}
        results, n_train, n_test, n_mr = backend_accuracy(rows, args.data, args.accuracy_n)
        print(
            f"\nAccuracy, logistic regression on the vectors: SST-2 (train {n_train}, "
            f"test {n_test}), MR ({n_mr} sentences, 5-fold CV)"
        )
        print()
        print("| implementation | SST-2 | MR |")
        print("|---|---:|---:|")
        for name, (sst, mr) in results.items():
            print(f"| {name} | {100 * sst:.2f} | {100 * mr:.2f} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="number of sentences")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per implementation")
    parser.add_argument(
        "--segments",
        type=int,
        default=1,
        help="cut each run into this many slices and alternate per slice (steadier under load)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cpu-only", action="store_true", help="skip the GPU even if present")
    parser.add_argument(
        "--also-mean", action="store_true", help="also time the default mean pooling"
    )
    parser.add_argument(
        "--backends",
        action="store_true",
        help="compare the CPU backends (torch, ONNX float32 / int8) instead",
    )
    parser.add_argument(
        "--accuracy",
        action="store_true",
        help="with --backends: also SST-2 and MR logistic-regression accuracy per backend",
    )
    parser.add_argument(
        "--fused",
        action="store_true",
        help="with --backends: add ONNX rows on the transformer optimizer's fused graph",
    )
    parser.add_argument(
        "--spinning",
        action="store_true",
        help="with --backends: add ONNX rows whose idle threads spin (ONNX Runtime's default)",
    )
    parser.add_argument(
        "--autocast",
        action="store_true",
        help="with --backends: add torch float32 under bfloat16 autocast (CPUs with bfloat16)",
    )
    parser.add_argument(
        "--openvino-python",
        default=None,
        help="with --backends: a python with openvino and onnxruntime; adds OpenVINO rows",
    )
    parser.add_argument(
        "--peak-gflops",
        type=float,
        default=192.0,
        help="float32 GFLOP/s per thread for the share-of-peak column (int8: 4x)",
    )
    parser.add_argument(
        "--accuracy-n",
        type=int,
        default=None,
        help="use at most this many SST-2 training and MR sentences for --accuracy",
    )
    args = parser.parse_args(argv)
    print(describe())

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    docs = load_sentences(args.data, args.n)
    if args.backends:
        return main_backends(args, docs)
    chars = np.mean([len(d) for d in docs])
    settings = [("cpu", "float32")]
    if torch.cuda.is_available() and not args.cpu_only:
        settings = [("cuda", "float32"), ("cuda", "float16"), *settings]
    extra = ("mean",) if args.also_mean else ()

    print(
        f"{len(docs)} sentences (mean {chars:.0f} characters), all-MiniLM-L6-v2, "
        f"batch_size={args.batch_size}, {args.repeats} alternating runs each "
        f"({args.segments} slice(s) per run), "
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
        + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "")
    )
    print()
    print(
        "| device | precision | implementation | docs/s (median) | docs/s (all runs) "
        "| overhead | overhead (paired) |"
    )
    print("|---|---|---|---:|---|---:|---:|")
    medians = {}
    for device, precision in settings:
        times, slice_times, max_diff = bench_setting(
            docs, device, precision, args.batch_size, args.repeats, extra, args.segments
        )
        reference = "sentence-transformers encode"
        base = statistics.median(times[reference])
        for name, runs in times.items():
            median = statistics.median(runs)
            medians[device, precision, name] = len(docs) / median
            if name == reference:
                overhead = paired = ""
            else:
                overhead = f"{100 * (median / base - 1):+.1f}%"
                ratios = [a / b for a, b in zip(slice_times[name], slice_times[reference])]
                paired = f"{100 * (statistics.median(ratios) - 1):+.1f}%"
            all_runs = ", ".join(f"{len(docs) / t:.0f}" for t in runs)
            print(
                f"| {device} | {precision} | {name} | {len(docs) / median:.0f} | {all_runs} "
                f"| {overhead} | {paired} |"
            )
        print(f"<!-- {device} {precision}: max |embedxfer - encode| = {max_diff:.2e} -->")
    if ("cuda", "float16") in settings:
        key = "embedxfer SentenceEmbedder(pooling='model')"
        ratio = medians["cuda", "float16", key] / medians["cuda", "float32", key]
        print(f"\nGPU float16 / float32 speed (embedxfer): {ratio:.2f}x")
    print(
        "\noverhead = embedxfer median run time / sentence-transformers median run time - 1; "
        "overhead (paired) = median over slices of the time ratio of back-to-back runs on the "
        "same slice - 1 (robust to load from other processes). Negative means embedxfer is faster."
    )


if __name__ == "__main__":
    main()
