"""The ONNX Runtime backend: export an encoder once, run it with ONNX Runtime.

The transformer alone is exported (token states of the last layer, or of
every layer when ``layers`` asks for them); tokenising, batching and
pooling stay the torch backend's own code, so both backends give the same
vectors up to float rounding. Exported graphs are kept in
``$EMBEDXFER_HOME/onnx`` under a key made of the model files' identity, the
export settings and the library versions, written to a temporary folder and
moved into place in one step, with a manifest of the graph's size and
checksum that is verified before every use; they are loaded by ONNX Runtime
(no pickle).
"""

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from ._artefact import (
    remove_orphaned_folders,
    temporary_folder_prefix,
    verify_folder,
    write_manifest,
)
from ._environment import home_folder
from ._optional import import_optional, install_hint

_INSTALL_HINT = install_hint("onnx")
# Bump when the exported graph or the quantisation recipe changes.
_EXPORT_VERSION = 1
_OPSET = 17
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
BACKENDS = ("torch", "onnx")


def import_onnxruntime():
    """``onnxruntime``, or an ImportError saying which extra installs it."""
    return import_optional(
        "onnxruntime", f"backend='onnx' needs onnxruntime and onnx; {_INSTALL_HINT}"
    )


def onnx_home():
    """Folder holding exported graphs (``$EMBEDXFER_HOME/onnx`` or the user cache)."""
    return home_folder("onnx")


def _versions():
    import onnx
    import onnxruntime
    import torch
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def export_key(model_identity, *, all_layers, precision):
    """Name of the folder an export is kept in: a hash of what determines the graph."""
    settings = {
        "model": model_identity,
        "all_layers": bool(all_layers),
        "precision": precision,
        "opset": _OPSET,
        "export": _EXPORT_VERSION,
        "versions": _versions(),
    }
    blob = json.dumps(settings, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:32], settings


def _wrapper(model, all_layers):
    """A module whose only output is one tensor of token states."""
    import torch

    class TokenStates(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            out = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                output_hidden_states=all_layers,
                return_dict=True,
                **extra,
            )
            if all_layers:
                return torch.stack(tuple(out.hidden_states), dim=0)
            return out.last_hidden_state

    return TokenStates()


def export_encoder(model, path, *, all_layers, uses_token_type_ids):
    """Write ``model`` (a float32 transformers model on the CPU) as an ONNX graph.

    Inputs ``input_ids``, ``attention_mask`` (and ``token_type_ids`` when the
    model takes them), int64 of shape (batch, sequence); output ``tokens``
    of shape (batch, sequence, hidden) or, with ``all_layers``,
    (n_hidden_states, batch, sequence, hidden).
    """
    import warnings

    import torch

    names = list(_INPUTS if uses_token_type_ids else _INPUTS[:2])
    # Two rows of different lengths, so padding is part of the traced graph.
    ids = torch.tensor([[101, 2023, 2003, 102], [101, 2023, 102, 0]], dtype=torch.long)
    ids = ids.clamp(max=int(model.config.vocab_size) - 1)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]], dtype=torch.long)
    args = [ids, mask] + ([torch.zeros_like(ids)] if uses_token_type_ids else [])
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    axes["tokens"] = {1: "batch", 2: "sequence"} if all_layers else {0: "batch", 1: "sequence"}
    wrapper = _wrapper(model, all_layers)
    was_training = model.training
    try:
        wrapper.eval()
        with warnings.catch_warnings(), torch.no_grad():
            # The tracer's notes about Python booleans concern branches that a
            # padded bidirectional encoder never takes.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                tuple(args),
                str(path),
                input_names=names,
                output_names=["tokens"],
                dynamic_axes=axes,
                opset_version=_OPSET,
                do_constant_folding=True,
                training=torch.onnx.TrainingMode.EVAL,
                dynamo=False,
            )
    finally:
        # The exporter can leave the (shared) model in training mode.
        model.train(was_training)


# Quantised: every weight matrix product (per output channel, int8 weights,
# uint8 activations quantised per batch). Measured on all-MiniLM-L6-v2
# (400 SST-2 sentences, mean pooling): mean cosine 0.992 (min 0.968) to
# float32, 1.5x faster. Keeping each layer's feed-forward output projection
# in float32 raised the mean cosine to 0.996 (min 0.982) but kept only about
# 1.2x of the speed; quantising only the feed-forward layers gave 0.994 and
# little speed. The products of two activations (attention scores) stay float32.
_QUANTIZED_OPS = ("MatMul",)


def _int8_excluded_nodes(fp32_path):
    """Names of the MatMul nodes kept in float32: those without a weight input."""
    import onnx

    graph = onnx.load(str(fp32_path), load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}
    return [
        node.name
        for node in graph.node
        if node.op_type == "MatMul" and not any(name in initializers for name in node.input)
    ]


def quantize_int8(fp32_path, int8_path):
    """Dynamic int8 quantisation of an exported graph (no calibration data)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quantizer_advice_dropped():
        quantize_dynamic(
            str(fp32_path),
            str(int8_path),
            op_types_to_quantize=list(_QUANTIZED_OPS),
            per_channel=True,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=_int8_excluded_nodes(fp32_path),
        )


@contextlib.contextmanager
def _quantizer_advice_dropped():
    """Drop the quantiser's advice to pre-process the graph, logged on the root logger.

    The graph is quantised as designed; and ``logging.warning`` on a root
    logger without handlers would install one on stderr for the rest of the
    caller's process. Other records pass untouched.
    """
    root = logging.getLogger()

    def keep(record):
        return not (record.name == "root" and "pre-process" in str(record.msg))

    placeholder = logging.NullHandler() if not root.handlers else None
    if placeholder is not None:
        root.addHandler(placeholder)
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)
        if placeholder is not None:
            root.removeHandler(placeholder)


def exported_graph(torch_backend, model_identity, *, all_layers, precision, home=None):
    """Path of the ONNX graph for ``torch_backend``'s model, exporting it the first time.

    ``torch_backend`` is anything with ``model`` (a float32 transformers
    model on the CPU) and ``uses_token_type_ids``; ``model_identity`` is a
    JSON-able description that changes whenever the model's weights do. A
    stored export is used only when its manifest names the same settings
    and ``model.onnx`` has the size and checksum recorded there; anything
    else (a replaced, truncated or missing graph) is exported again.
    """
    home = Path(home) if home is not None else onnx_home()
    key, settings = export_key(model_identity, all_layers=all_layers, precision=precision)
    folder = home / key
    target = folder / "model.onnx"
    expected = {"settings": settings}
    _, problem = verify_folder(folder, expected, {"model.onnx"})
    if problem is None:
        return target
    if folder.exists() or folder.is_symlink():
        warnings.warn(
            f"ignoring the ONNX export in {folder}: {problem}; exporting again.", stacklevel=3
        )
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OSError(
            f"cannot keep ONNX exports in {home} ({err.strerror or err}); set EMBEDXFER_HOME "
            "to a writable folder."
        ) from None
    remove_orphaned_folders(home)  # temporaries of killed exports
    if precision == "int8":
        source = exported_graph(
            torch_backend, model_identity, all_layers=all_layers, precision="float32", home=home
        )
    tmp = Path(tempfile.mkdtemp(prefix=temporary_folder_prefix(key), dir=home))
    try:
        if precision == "int8":
            quantize_int8(source, tmp / "model.onnx")
        else:
            export_encoder(
                torch_backend.model,
                tmp / "model.onnx",
                all_layers=all_layers,
                uses_token_type_ids=torch_backend.uses_token_type_ids,
            )
        write_manifest(tmp, expected, ["model.onnx"])
        _install(tmp, folder, expected)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _install(tmp, folder, expected):
    """Move the finished export ``tmp`` onto ``folder``, replacing an unsound one there."""
    if verify_folder(folder, expected, {"model.onnx"})[1] is None:
        return  # another process finished the same export first; theirs is as good
    if folder.exists() or folder.is_symlink():
        trash = Path(tempfile.mkdtemp(prefix=temporary_folder_prefix(folder.name), dir=tmp.parent))
        try:
            os.replace(folder, trash / "old")
        except FileNotFoundError:
            pass  # removed by another process meanwhile
        finally:
            shutil.rmtree(trash, ignore_errors=True)
    try:
        os.replace(tmp, folder)
    except OSError:
        if verify_folder(folder, expected, {"model.onnx"})[1] is not None:
            raise


def make_session(path, n_threads):
    """An ONNX Runtime CPU session on ``path``.

    ``n_threads`` None keeps ONNX Runtime's default.
    """
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if n_threads is not None:
        options.intra_op_num_threads = int(n_threads)
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxEncoderBackend:
    """An encoder run by ONNX Runtime, with the torch backend's tokenizer and pooling.

    Everything but the transformer's forward pass (tokenising, padding,
    layer combination, pooling, the sentence-transformers pooling modules)
    is delegated to the torch :class:`~embedxfer._transformers.EncoderBackend`
    it was exported from, so the two backends cannot drift apart.
    """

    def __init__(self, torch_backend, sessions, *, precision):
        self._torch = torch_backend
        self._sessions = sessions  # {all_layers (bool): InferenceSession}
        self.precision = precision
        self.device = "cpu"

    def __getattr__(self, name):
        if name.startswith("__") or name == "_torch":
            raise AttributeError(name)
        return getattr(self._torch, name)

    @property
    def session(self):
        """The ONNX Runtime session for last-layer states (for inspection)."""
        return next(iter(self._sessions.values()))

    def _run(self, features, all_layers):
        import torch

        session = self._sessions[all_layers]
        wanted = {i.name for i in session.get_inputs()}
        feeds = {k: v.cpu().numpy() for k, v in features.items() if k in wanted}
        (tokens,) = session.run(["tokens"], feeds)
        return torch.from_numpy(np.ascontiguousarray(tokens))

    def embed(self, features, *, pooling, layers, layer_combine):
        """One batch of document vectors, as :meth:`EncoderBackend.embed`."""
        from ._transformers import combine_layers, masked_pool

        if pooling == "model":
            state = dict(features)
            state["token_embeddings"] = self._run(features, False)
            for module in list(self.sentence_model)[1:]:
                state = module(state)
            return state["sentence_embedding"].float()
        if layers is None:
            tokens = self._run(features, False)
        else:
            stacked = self._run(features, True)
            tokens = combine_layers(tuple(stacked.unbind(0)), layers, layer_combine)
        return masked_pool(tokens, features["attention_mask"], pooling)


def load_onnx_encoder(torch_backend, model_identity, *, precision, all_layers, n_threads):
    """An :class:`OnnxEncoderBackend` over ``torch_backend`` (float32, CPU)."""
    import_onnxruntime()
    import_optional("onnx", f"exporting to ONNX needs onnx; {_INSTALL_HINT}")
    path = exported_graph(torch_backend, model_identity, all_layers=all_layers, precision=precision)
    sessions = {bool(all_layers): make_session(path, n_threads)}
    return OnnxEncoderBackend(torch_backend, sessions, precision=precision)


def fine_tuned_session(encoder, model_identity, *, uses_token_type_ids, precision, n_threads):
    """An ONNX Runtime session for a (fine-tuned) encoder, exported once per weights.

    ``model_identity`` must change with the weights (a hash of the trained
    tensors); sessions are shared through the registry.
    """
    from types import SimpleNamespace

    from ._registry import get_or_load

    import_onnxruntime()
    key = (
        "embedxfer.onnx.encoder",
        json.dumps(model_identity, sort_keys=True, default=str),
        precision,
        n_threads,
    )

    def load():
        import copy

        import torch

        model = encoder
        if next(encoder.parameters()).device.type != "cpu":
            model = copy.deepcopy(encoder).to("cpu", torch.float32)
        source = SimpleNamespace(model=model, uses_token_type_ids=uses_token_type_ids)
        path = exported_graph(source, model_identity, all_layers=False, precision=precision)
        return make_session(path, n_threads)

    return get_or_load(key, load)


def run_token_states(session, input_ids, attention_mask):
    """Last-layer token states ``(batch, seq, hidden)`` as a CPU float32 tensor."""
    import torch

    names = {i.name for i in session.get_inputs()}
    feeds = {"input_ids": input_ids.cpu().numpy(), "attention_mask": attention_mask.cpu().numpy()}
    if "token_type_ids" in names:
        feeds["token_type_ids"] = np.zeros_like(feeds["input_ids"])
    (tokens,) = session.run(["tokens"], feeds)
    return torch.from_numpy(np.ascontiguousarray(tokens))
