"""Static int8 for the OpenVINO backend: the export calibrated on the user's documents.

Dynamic int8 (the ONNX backend's) measures every activation's range on each
batch as it runs; static int8 measures them once, on a sample of the
documents given to ``fit``, and fixes them in the graph, so the CPU runs
int8 products without the per-batch work. NNCF (OpenVINO's quantiser) does
the calibration with its transformer recipe (SmoothQuant, fast bias
correction; ``model_type=TRANSFORMER``) on the ONNX backend's verified
export.

The calibrated graph is an OpenVINO IR (``model.xml``, ``model.bin``: a graph
description and its weights, plain data) kept in
``$EMBEDXFER_HOME/openvino`` under a key made of the export's key, the
calibration sample's token ids, the versions and this recipe's version, with
a manifest of sizes and checksums verified before every use. The fitted
estimator holds the sample's token ids (small), so a missing or unsound
graph is rebuilt from them on any machine.
"""

import contextlib
import hashlib
import io
import json
import logging
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from .._core.artefact import (
    install_folder,
    prepare_folder,
    temporary_folder_prefix,
    verify_folder,
    write_manifest,
)
from .._core.environment import home_folder
from .._core.optional import import_optional, install_hint

# Documents of the calibration sample: measured with all-MiniLM-L6-v2 on
# SST-2, 300 sentences gave mean cosine 0.997 to float32.
CALIBRATION_DOCUMENTS = 300
_CALIBRATION_BATCH = 32
# Bump when the calibration recipe changes.
_RECIPE_VERSION = 1
_GRAPH_FILES = ("model.xml", "model.bin")


def import_nncf():
    """``nncf``, or an ImportError saying which extra installs it."""
    return import_optional(
        "nncf",
        "precision='int8' with backend='openvino' needs nncf (OpenVINO's quantiser); "
        f"{install_hint('openvino')}",
    )


def calibration_indices(n_documents):
    """Which documents calibrate: all of up to ``CALIBRATION_DOCUMENTS``, else a fixed sample.

    The sample is drawn with a fixed seed, so that a refit on the same
    documents calibrates on the same ones.
    """
    if n_documents <= CALIBRATION_DOCUMENTS:
        return np.arange(n_documents)
    rng = np.random.default_rng(0)
    return np.sort(rng.choice(n_documents, CALIBRATION_DOCUMENTS, replace=False))


def pack_rows(rows):
    """Token id rows as ``(ids, offsets)``: int32 ids, int64 offsets of length n + 1."""
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    ids = np.fromiter((i for row in rows for i in row), dtype=np.int32, count=int(offsets[-1]))
    return ids, offsets


def unpack_rows(ids, offsets):
    """The rows of :func:`pack_rows`, as lists of int."""
    return [ids[a:b].tolist() for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]


def check_calibration(ids, offsets, vocabulary_size):
    """Refuse a calibration sample that is not token ids of this model (a damaged estimator)."""
    ids, offsets = np.asarray(ids), np.asarray(offsets)
    sound = (
        ids.ndim == 1
        and offsets.ndim == 1
        and ids.dtype.kind in "iu"
        and offsets.dtype.kind in "iu"
        and len(offsets) >= 2
        and offsets[0] == 0
        and offsets[-1] == len(ids)
        and bool(np.all(np.diff(offsets) > 0))
        and (not len(ids) or (int(ids.min()) >= 0 and int(ids.max()) < vocabulary_size))
    )
    if not sound:
        raise ValueError(
            "calibration_ids_ / calibration_offsets_ are not a calibration sample of this "
            f"model's tokens (ids below {vocabulary_size}, offsets rising from 0 to "
            "len(ids)); fit the embedder again."
        )


def calibration_digest(ids, offsets):
    """SHA-256 of a packed calibration sample (what keys its graph)."""
    digest = hashlib.sha256(np.ascontiguousarray(ids, dtype="<i4").tobytes())
    digest.update(np.ascontiguousarray(offsets, dtype="<i8").tobytes())
    return digest.hexdigest()


def _graph_key(source_key, digest, all_layers):
    from importlib.metadata import version

    settings = {
        "export": source_key,
        "calibration": digest,
        "all_layers": bool(all_layers),
        "recipe": _RECIPE_VERSION,
        "versions": {name: version(name) for name in ("nncf", "openvino")},
    }
    blob = json.dumps(settings, sort_keys=True).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:32], settings


def calibrated_graph(torch_backend, model_identity, ids, offsets, *, all_layers, home=None):
    """Path of the calibrated IR (``model.xml``) for this sample, made the first time."""
    from ._encoder_onnx import export_key, exported_graph

    home = Path(home) if home is not None else home_folder("openvino")
    source_key, _ = export_key(model_identity, all_layers=all_layers, precision="float32")
    key, settings = _graph_key(source_key, calibration_digest(ids, offsets), all_layers)
    folder = home / key
    expected = {"settings": settings}
    _, problem = verify_folder(folder, expected, set(_GRAPH_FILES))
    if problem is None:
        return folder / "model.xml"
    if folder.exists() or folder.is_symlink():
        warnings.warn(
            f"ignoring the calibrated int8 graph in {folder}: {problem}; calibrating again.",
            stacklevel=3,
        )
    prepare_folder(home, "calibrated int8 graphs")
    source = exported_graph(
        torch_backend, model_identity, all_layers=all_layers, precision="float32"
    )
    tmp = Path(tempfile.mkdtemp(prefix=temporary_folder_prefix(key), dir=home))
    try:
        _quantize(source, tmp / "model.xml", torch_backend, unpack_rows(ids, offsets))
        write_manifest(tmp, expected, list(_GRAPH_FILES))
        install_folder(tmp, folder, expected, _GRAPH_FILES)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder / "model.xml"


def _quantize(source, target, torch_backend, rows):
    """Calibrate the float32 graph ``source`` on ``rows``; write the int8 IR to ``target``."""
    from ._encoder_openvino import import_openvino

    ov = import_openvino()
    nncf = import_nncf()
    model = ov.Core().read_model(str(source))
    wanted = {port.get_any_name() for port in model.inputs}
    # Batches of similar lengths, as encoding makes them, so that the
    # calibration sees the shapes (and the padding) the graph will run.
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    feeds = []
    for start in range(0, len(order), _CALIBRATION_BATCH):
        batch = torch_backend.collate([rows[i] for i in order[start : start + _CALIBRATION_BATCH]])
        feeds.append({k: v.cpu().numpy() for k, v in batch.items() if k in wanted})
    with _nncf_quiet():
        quantized = nncf.quantize(
            model,
            nncf.Dataset(feeds),
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(feeds),
        )
    ov.save_model(quantized, str(target), compress_to_fp16=False)


@contextlib.contextmanager
def _nncf_quiet():
    """No NNCF log lines or progress bars (it draws them on stdout) during calibration."""
    logger = logging.getLogger("nncf")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def load_openvino_int8_encoder(
    torch_backend, model_identity, ids, offsets, *, all_layers, n_threads
):
    """An ``OnnxEncoderBackend`` running the calibrated int8 graph with OpenVINO (CPU)."""
    from ._encoder_onnx import OnnxEncoderBackend, import_onnx_exporter
    from ._encoder_openvino import OpenVinoSession, import_openvino

    import_openvino()
    import_nncf()
    import_onnx_exporter("openvino")
    check_calibration(ids, offsets, len(torch_backend.tokenizer))
    path = calibrated_graph(torch_backend, model_identity, ids, offsets, all_layers=all_layers)
    # The products are int8 (fixed in the graph); the rest runs in float32.
    session = OpenVinoSession(path, n_threads, "float32")
    return OnnxEncoderBackend(torch_backend, {bool(all_layers): session}, precision="int8")
