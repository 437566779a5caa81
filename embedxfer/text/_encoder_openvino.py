"""The OpenVINO backend: the ONNX export of an encoder, compiled by OpenVINO for the CPU.

The graph is the ONNX backend's own export (``_encoder_onnx.exported_graph``:
kept in ``$EMBEDXFER_HOME/onnx``, verified against its manifest before every
use); OpenVINO reads it and compiles it in memory for this process. Nothing
OpenVINO writes is read back: its own model cache is not used, so every file
this backend trusts is a verified export. Tokenising, batching and pooling are
the torch backend's, through :class:`~._encoder_onnx.OnnxEncoderBackend`, which
runs a session of this module as it runs an ONNX Runtime one.

OpenVINO's lever on a CPU is its bfloat16 inference precision: on a CPU with
native bfloat16 products (AMX, AVX512-BF16) the float32 graph runs its matrix
products in bfloat16 with float32 accumulation, at float32's quality for
sentence vectors (mean cosine 0.9999 or above).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._core.device import cpu_has_bfloat16
from .._core.optional import import_optional, install_hint

# "int8" is a graph calibrated in fit (``_openvino_int8``), compiled as float32.
OPENVINO_PRECISIONS = ("float32", "bfloat16", "int8")
# OpenVINO's names for them (the INFERENCE_PRECISION_HINT property).
_HINTS = {"float32": "f32", "bfloat16": "bf16"}


def import_openvino():
    """``openvino``, or an ImportError saying which extra installs it."""
    return import_optional(
        "openvino", f"backend='openvino' needs openvino; {install_hint('openvino')}"
    )


def check_openvino_precision(precision):
    """Refuse a precision OpenVINO cannot honour here, in one line."""
    if precision not in OPENVINO_PRECISIONS:
        raise ValueError(
            f"precision={precision!r} with backend='openvino'; expected 'float32', 'bfloat16' "
            "or 'int8'."
        )
    if precision == "bfloat16" and not cpu_has_bfloat16():
        # OpenVINO would quietly run float32 instead: say so rather than ignore the request.
        raise ValueError(
            "precision='bfloat16' with backend='openvino' needs a CPU with native bfloat16 "
            "products (AMX or AVX512-BF16), which this one lacks; use precision='float32'."
        )


@dataclass(frozen=True)
class _Input:
    name: str


class OpenVinoSession:
    """A compiled OpenVINO model behind ONNX Runtime's ``get_inputs`` / ``run`` interface.

    Parameters
    ----------
    path : path-like
        A verified ONNX graph whose output is named ``"tokens"``.
    n_threads : int or None
        CPU threads for inference; ``None`` keeps OpenVINO's default.
    precision : {"float32", "bfloat16"}
        OpenVINO's inference precision for the matrix products.

    Attributes
    ----------
    compiled : openvino.CompiledModel
        The compiled model (for inspection: ``compiled.get_property(...)``).
    path : pathlib.Path
        The graph it was compiled from.
    """

    def __init__(self, path, n_threads, precision):
        ov = import_openvino()
        config = {
            # One stream, latency first: embedxfer calls the model one batch
            # at a time from the thread that tokenises and pools.
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": _HINTS[precision],
        }
        if n_threads is not None:
            config["INFERENCE_NUM_THREADS"] = int(n_threads)
        self.path = Path(path)
        self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        self._inputs = [_Input(port.get_any_name()) for port in self.compiled.inputs]
        self._outputs = {port.get_any_name(): port for port in self.compiled.outputs}
        self._request = self.compiled.create_infer_request()

    def get_inputs(self):
        """The graph's inputs, each with a ``name``."""
        return list(self._inputs)

    def run(self, output_names, feeds):
        """The named outputs for ``feeds`` (a dict of numpy arrays), as numpy arrays."""
        results = self._request.infer(feeds)
        # The request reuses its output buffers on the next call: copy out.
        return [np.array(results[self._outputs[name]], copy=True) for name in output_names]


def load_openvino_encoder(torch_backend, model_identity, *, precision, all_layers, n_threads):
    """An ``OnnxEncoderBackend`` whose forward pass OpenVINO runs (CPU)."""
    from ._encoder_onnx import OnnxEncoderBackend, exported_graph, import_onnx_exporter

    import_openvino()
    check_openvino_precision(precision)
    import_onnx_exporter("openvino")
    path = exported_graph(torch_backend, model_identity, all_layers=all_layers, precision="float32")
    session = OpenVinoSession(path, n_threads, precision)
    return OnnxEncoderBackend(torch_backend, {bool(all_layers): session}, precision="float32")
