"""Documents per second: SentenceEmbedder vs SentenceTransformer.encode.

Both encode the same real sentences (SST-2 and MR, from the ``--data`` folder) with
the same model, batch size, device and precision. Runs alternate between the
two implementations and the medians are compared, so that load from other
processes hits both alike. On a CUDA machine float32, float16 and (where the
GPU has it) bfloat16 are measured too.

    python benchmarks/sentence_encode.py            # 10,000 sentences
    python benchmarks/sentence_encode.py --n 2000 --repeats 5 --segments 10

With ``--backends`` the CPU backends are compared instead: torch float32,
ONNX Runtime float32 and int8 (and sentence-transformers' own ONNX backend
where it installs), each against ``SentenceTransformer.encode`` with the
same batch size and thread count, in alternating slices; ``--accuracy``
adds SST-2 (official split) and MR (5-fold) logistic-regression accuracy
for each backend. Before each slice ``--settle`` seconds (0.2) pass untimed,
so that the thread pool of the slice before, which can keep the cores busy
a while after its work (torch's OpenMP threads), does not slow the next;
and each row pads only within its slice, so slices of a few hundred
sentences keep padding near what one large call computes:

    python benchmarks/sentence_encode.py --backends --n 2000 --repeats 3 --segments 10 --accuracy

``--fused`` adds ONNX rows on the transformer optimizer's fused graph
(float32 and int8), a lever measured here but not the estimator's default;
``--spinning`` adds rows whose idle ONNX Runtime threads spin (ONNX Runtime's
default, which the estimator turns off). A torch bfloat16 row is added where
the CPU has native bfloat16 products (AMX or AVX512-BF16).
Where openvino is installed (``embedxfer[openvino]``), the OpenVINO backend's
rows are added: float32, bfloat16 where the CPU has native bfloat16 products,
and int8 calibrated on 300 other sentences of the same data:

    python benchmarks/sentence_encode.py --backends --n 400 --repeats 3 --segments 10 \
        --threads 2 --accuracy --accuracy-n 2000

Each row's share of the estimated peak compares its speed with the CPU's
arithmetic limit for the model's weight products: 2 x (4 h^2 + 2 h i) FLOP per
token and layer (about 21 MFLOP per token for all-MiniLM-L6-v2), at
``--peak-gflops`` per thread in float32 (default 192: 3 GHz x two AVX-512 FMA
units), 4x that in int8 (VNNI dot products) and in bfloat16 2x (AVX512-BF16 dot
products) or 32x (AMX tiles, where the CPU has them).

Each row's share of the measured floor compares it with the same weight
products alone, timed here: one layer's six products on batch-size x mean-tokens
rows, in an ONNX Runtime session with the same threads (MatMul in float32,
uint8 x int8 MatMulInteger in int8, the kernels the ONNX rows run). No backend
built on those kernels can pass that speed, so the floor says what this CPU
allows where the estimate only assumes a clock and vector units.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import DATA_DIR
from _machine import describe

ROOT = Path(__file__).resolve().parents[1]


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


def _minilm_config():
    from transformers import AutoConfig

    from embedxfer.text._encoder_loading import packaged_minilm_path

    return AutoConfig.from_pretrained(packaged_minilm_path())


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


def backend_candidates(
    batch_size, n_threads, fused=False, spinning=False, autocast=False, calibration=None
):
    """``{name: encode function}`` for the CPU backends, and the rows that could not run.

    ``calibration``: documents (not among the timed ones) that the OpenVINO
    int8 row calibrates on; without them that row is skipped.
    """
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
    try:
        import openvino  # noqa: F401

        openvino_rows = [("embedxfer openvino float32", "float32")]
        if cpu_has_bfloat16():
            openvino_rows.append(("embedxfer openvino bfloat16", "bfloat16"))
        for name, precision in openvino_rows:
            params = dict(common, backend="openvino", precision=precision)
            candidates[name] = SentenceEmbedder(**params).fit().transform
    except ImportError:
        skipped["embedxfer openvino"] = "openvino is not installed (embedxfer[openvino])"
    else:
        try:
            import nncf  # noqa: F401
        except ImportError:
            skipped["embedxfer openvino int8"] = "nncf is not installed (embedxfer[openvino])"
        else:
            if calibration:
                params = dict(common, backend="openvino", precision="int8")
                calibrated = SentenceEmbedder(**params).fit(calibration)
                candidates["embedxfer openvino int8 (calibrated)"] = calibrated.transform
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


def slice_bounds(n, segments):
    """Start and end of each of ``segments`` consecutive slices of ``n`` items."""
    bounds = np.linspace(0, n, segments + 1).astype(int)
    return list(zip(bounds[:-1], bounds[1:]))


def run_alternating(candidates, docs, repeats, segments, settle=0.0):
    """Total seconds per run, seconds per slice and the first run's vectors, per candidate.

    ``settle`` seconds pass, untimed, before each slice, so that the thread
    pool of the slice before (torch's OpenMP threads wait busily a while
    after their work) is idle when the next one starts.
    """
    slices = [docs[a:b] for a, b in slice_bounds(len(docs), segments) if b > a]
    names = list(candidates)
    times = {name: [0.0] * repeats for name in names}
    slice_times = {name: [] for name in names}
    outputs = {name: [] for name in names}
    turn = 0
    for r in range(repeats):
        for part in slices:
            # Alternate the order so that neither side always runs first.
            for name in names if turn % 2 == 0 else names[::-1]:
                time.sleep(settle)
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


def weight_products(config):
    """``(inputs, outputs)`` of one layer's weight products: query, key, value, output, FFN."""
    h, i = config.hidden_size, config.intermediate_size
    return [(h, h)] * 4 + [(h, i), (i, h)]


def flops_per_token(config):
    """Multiply-adds x 2 of the weight products per token: 2 x layers x (4 h^2 + 2 h i)."""
    return 2 * config.num_hidden_layers * sum(k * n for k, n in weight_products(config))


def weight_product_graph(shapes, rows, precision, seed=0):
    """An ONNX model of independent products ``a{j} @ w{j}`` for each ``(k, n)`` in ``shapes``.

    float32: MatMul on float32 inputs. int8: MatMulInteger of uint8 inputs
    and int8 weights (int32 outputs), as ONNX Runtime's dynamic int8 graphs
    multiply.
    """
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    integer = precision == "int8"
    op, in_type, out_type = (
        ("MatMulInteger", TensorProto.UINT8, TensorProto.INT32)
        if integer
        else ("MatMul", TensorProto.FLOAT, TensorProto.FLOAT)
    )
    nodes, weights, inputs, outputs = [], [], [], []
    for j, (k, n) in enumerate(shapes):
        w = (
            rng.integers(-127, 128, (k, n), dtype=np.int8)
            if integer
            else rng.standard_normal((k, n), dtype=np.float32)
        )
        weights.append(numpy_helper.from_array(w, f"w{j}"))
        inputs.append(helper.make_tensor_value_info(f"a{j}", in_type, [rows, k]))
        outputs.append(helper.make_tensor_value_info(f"y{j}", out_type, [rows, n]))
        nodes.append(helper.make_node(op, [f"a{j}", f"w{j}"], [f"y{j}"]))
    graph = helper.make_graph(nodes, "weight_products", inputs, outputs, weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def measured_floor_documents_per_second(config, tokens, batch_size, n_threads, repeats=20):
    """Documents/s of the model's weight products alone, timed in ONNX Runtime.

    One layer's products on ``batch_size x tokens`` rows (mean tokens per
    document, so no padding), in float32 and int8, with ``n_threads`` threads
    that do not spin (as the ONNX rows' sessions): the speed that no backend
    built on these kernels can pass. Returns ``{precision: docs/s}``.
    """
    import tempfile

    from embedxfer.text._encoder_onnx import make_session

    shapes = weight_products(config)
    rows = max(1, round(batch_size * tokens))
    rng = np.random.default_rng(0)
    floors = {}
    for precision in ("float32", "int8"):
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "products.onnx"
            path.write_bytes(weight_product_graph(shapes, rows, precision).SerializeToString())
            # The ONNX rows' own session settings (threads, no spinning).
            session = make_session(path, n_threads)
        feed = {
            f"a{j}": rng.integers(0, 256, (rows, k), dtype=np.uint8)
            if precision == "int8"
            else rng.standard_normal((rows, k), dtype=np.float32)
            for j, (k, _) in enumerate(shapes)
        }
        for _ in range(3):
            session.run(None, feed)
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            session.run(None, feed)
            seconds.append(time.perf_counter() - start)
        per_batch = min(seconds) * config.num_hidden_layers
        floors[precision] = batch_size / per_batch
    return floors


def token_counts(docs, max_length=256):
    """Tokens of each document (special tokens included, truncated as the encoders do)."""
    from transformers import AutoTokenizer

    from embedxfer.text._encoder_loading import packaged_minilm_path

    tokenizer = AutoTokenizer.from_pretrained(packaged_minilm_path())
    ids = tokenizer(docs, truncation=True, max_length=max_length)["input_ids"]
    return np.array([len(row) for row in ids], dtype=np.int64)


def padding_factor(counts, batch_size, segments=1):
    """Tokens computed over real tokens when each slice is batched longest first.

    The encoders sort a call's documents by length and pad each batch to its
    longest, so a call over few documents pads more than one over many.
    """
    counts = np.asarray(counts)
    padded = 0
    for a, b in slice_bounds(len(counts), segments):
        ordered = np.sort(counts[a:b])[::-1]
        padded += sum(
            int(ordered[i]) * len(ordered[i : i + batch_size])
            for i in range(0, len(ordered), batch_size)
        )
    return padded / max(1, int(counts.sum()))


def _cpu_has_amx():
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            return any(line.startswith("flags") and "amx_bf16" in line for line in f)
    except OSError:
        return False


def peak_documents_per_second(tokens_per_document, n_threads, gflops_per_thread, amx=None):
    """Estimated peak documents/s in float32, int8 and bfloat16, at
    ``tokens_per_document`` tokens per document (the mean of :func:`token_counts`).

    int8: 4x float32 (VNNI dot products). bfloat16: 2x float32 with
    AVX512-BF16 dot products, 32x with AMX tiles (1,024 multiply-adds per
    cycle and core against 32).
    """
    per_doc = flops_per_token(_minilm_config()) * tokens_per_document
    fp32 = n_threads * gflops_per_thread * 1e9 / per_doc
    amx = _cpu_has_amx() if amx is None else amx
    return {"float32": fp32, "int8": 4 * fp32, "bfloat16": (32 if amx else 2) * fp32}, per_doc


def main_backends(args, docs):
    import os

    import torch

    n_threads = torch.get_num_threads()
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    # The int8 row calibrates on other sentences than the timed ones: the
    # timed documents are a prefix of the same seeded draw.
    calibration = load_sentences(args.data, len(docs) + 300)[len(docs) :]
    candidates, skipped = backend_candidates(
        args.batch_size, n_threads, args.fused, args.spinning, args.autocast, calibration
    )
    counts = token_counts(docs)
    peaks, flops_per_doc = peak_documents_per_second(
        float(counts.mean()), n_threads, args.peak_gflops
    )
    floors = measured_floor_documents_per_second(
        _minilm_config(), float(counts.mean()), args.batch_size, n_threads
    )
    warm = docs[: min(len(docs), 4 * args.batch_size)]
    for fn in candidates.values():
        fn(warm)
    times, slice_times, outputs = run_alternating(
        candidates, docs, args.repeats, args.segments, args.settle
    )
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
        f"GFLOP/s per thread in float32, 4x in int8, {peaks['bfloat16'] / peaks['float32']:.0f}x "
        f"in bfloat16: {peaks['float32']:.0f} docs/s float32, {peaks['int8']:.0f} int8, "
        f"{peaks['bfloat16']:.0f} bfloat16"
    )
    encode_speed = len(docs) / base
    print(
        f"Padding: batches of {args.batch_size} in slices of about "
        f"{len(docs) // max(1, args.segments)} sentences compute "
        f"{padding_factor(counts, args.batch_size, args.segments):.2f}x the real tokens "
        f"(one call over all {len(docs)}: {padding_factor(counts, args.batch_size):.2f}x); "
        "the floor counts real tokens only"
    )
    print(
        f"Measured floor (the weight products alone, ONNX Runtime, {n_threads} threads): "
        + ", ".join(
            f"{speed:.0f} docs/s {precision} ({speed / encode_speed:.2f}x encode)"
            for precision, speed in floors.items()
        )
    )
    print()
    print(
        "| implementation | docs/s (median) | speed vs encode | speed vs encode (paired) "
        "| share of est. peak | share of measured floor | max abs diff | mean cosine "
        "| min cosine |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, runs in times.items():
        median = statistics.median(runs)
        speed = len(docs) / median
        ratios = [b / a for a, b in zip(slice_times[name], slice_times[reference])]
        cos = _cosines(exact, outputs[name])
        precision = next((p for p in ("int8", "bfloat16") if p in name), "float32")
        floor = f"{100 * speed / floors[precision]:.0f}%" if precision in floors else "n/a"
        print(
            f"| {name} | {speed:.0f} | {base / median:.2f}x "
            f"| {statistics.median(ratios):.2f}x | {100 * speed / peaks[precision]:.0f}% "
            f"| {floor} | {np.abs(outputs[name] - exact).max():.1e} "
            f"| {cos.mean():.4f} | {cos.min():.4f} |"
        )
    for name, why in skipped.items():
        print(f"| {name} | skipped: {why[:160]} | | | | | | | |")
    print(
        "\nspeed vs encode = encode's median run time / this row's; paired = median over "
        "slices of the same ratio for back-to-back runs (robust to load from other "
        "processes). Share of est. peak = docs/s over the estimated peak of the row's "
        "precision (above); share of measured floor = docs/s over the measured floor of "
        "its precision (none is measured for bfloat16). Differences and cosines are to "
        "embedxfer torch float32."
    )
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
    parser.add_argument("--data", type=Path, default=DATA_DIR)
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
        "--settle",
        type=float,
        default=0.2,
        help="with --backends: untimed seconds before each slice (the last one's threads idle)",
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
        gpu = ["float32", "float16"] + (["bfloat16"] if torch.cuda.is_bf16_supported() else [])
        settings = [*(("cuda", precision) for precision in gpu), *settings]
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
    key = "embedxfer SentenceEmbedder(pooling='model')"
    for precision in ("float16", "bfloat16"):
        if ("cuda", precision) in settings:
            ratio = medians["cuda", precision, key] / medians["cuda", "float32", key]
            print(f"\nGPU {precision} / float32 speed (embedxfer): {ratio:.2f}x")
    print(
        "\noverhead = embedxfer median run time / sentence-transformers median run time - 1; "
        "overhead (paired) = median over slices of the time ratio of back-to-back runs on the "
        "same slice - 1 (robust to load from other processes). Negative means embedxfer is faster."
    )


if __name__ == "__main__":
    main()
