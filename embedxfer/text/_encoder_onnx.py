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

A *fused* export (``fused=True``) is the same encoder exported with eager
attention and passed through ONNX Runtime's transformer optimizer, which
replaces each layer's attention, LayerNorm + residual and bias + GELU by one
operator each. It is kept under its own key, checked against the plain graph
on a padded probe batch before it is stored, and replaced by the plain export
(with a warning) when the optimizer is missing, fails or changes the output.
"""

import contextlib
import hashlib
import json
import logging
import shutil
import tempfile
import warnings
from dataclasses import dataclass
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
from ..exceptions import EmbedxferWarning

_INSTALL_HINT = install_hint("onnx")
# Bump when the exported graph or the quantisation recipe changes.
_EXPORT_VERSION = 1
_OPSET = 17
# Bump when the fused graph's recipe (export, fusions, checks) changes.
_FUSION_VERSION = 1
# Largest difference to the plain graph a fused graph may show on the probe batch.
_FUSION_TOLERANCE = 1e-4
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
BACKENDS = ("torch", "onnx")
# SentenceEmbedder also runs the exported graph with OpenVINO.
SENTENCE_BACKENDS = (*BACKENDS, "openvino")


def import_onnxruntime():
    """``onnxruntime``, or an ImportError saying which extra installs it."""
    return import_optional(
        "onnxruntime", f"backend='onnx' needs onnxruntime and onnx; {_INSTALL_HINT}"
    )


def onnx_home():
    """Folder holding exported graphs (``$EMBEDXFER_HOME/onnx`` or the user cache)."""
    return home_folder("onnx")


def import_onnx_exporter(extra="onnx"):
    """``onnx`` (torch's exporter writes with it), or an ImportError naming ``extra``."""
    return import_optional("onnx", f"exporting to ONNX needs onnx; {install_hint(extra)}")


def _versions():
    from importlib.metadata import PackageNotFoundError, version

    import onnx
    import torch
    import transformers

    try:
        # Part of the key for the quantised and fused graphs it makes; the
        # OpenVINO backend exports without it installed.
        onnxruntime = version("onnxruntime")
    except PackageNotFoundError:
        onnxruntime = None
    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime,
    }


def export_key(model_identity, *, all_layers, precision, fused=False):
    """Name of the folder an export is kept in: a hash of what determines the graph."""
    settings = {
        "model": model_identity,
        "all_layers": bool(all_layers),
        "precision": precision,
        "opset": _OPSET,
        "export": _EXPORT_VERSION,
        "versions": _versions(),
    }
    if fused:
        # Only in fused keys, so that plain exports made before fusion existed stay valid.
        settings["fused"] = _FUSION_VERSION
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


def export_encoder(model, path, *, all_layers, uses_token_type_ids, eager_attention=False):
    """Write ``model`` (a float32 transformers model on the CPU) as an ONNX graph.

    Inputs ``input_ids``, ``attention_mask`` (and ``token_type_ids`` when the
    model takes them), int64 of shape (batch, sequence); output ``tokens``
    of shape (batch, sequence, hidden) or, with ``all_layers``,
    (n_hidden_states, batch, sequence, hidden). ``eager_attention`` traces
    the model's plain attention (matrix products and softmax) instead of
    scaled-dot-product attention, the pattern the transformer optimizer fuses.
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
    attention = getattr(model.config, "_attn_implementation", None)
    try:
        if eager_attention:
            model.set_attn_implementation("eager")
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
        if eager_attention and attention is not None:
            model.set_attn_implementation(attention)


def _probe_inputs(vocab_size, names):
    """A padded batch of three rows (12, 7 and 3 tokens) of seeded random ids."""
    rng = np.random.default_rng(0)
    lengths = np.array([12, 7, 3])
    mask = (np.arange(12)[None, :] < lengths[:, None]).astype(np.int64)
    ids = rng.integers(1, min(int(vocab_size), 1000), size=mask.shape) * mask
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    return {name: feeds[name] for name in names}, mask.astype(bool)


def _real_token_difference(plain_path, fused_path, vocab_size):
    """Largest difference between two graphs' states of the real (unpadded) tokens."""
    outputs = []
    for path in (plain_path, fused_path):
        session = make_session(path, 1)
        feeds, real = _probe_inputs(vocab_size, [i.name for i in session.get_inputs()])
        (tokens,) = session.run(["tokens"], feeds)
        # (batch, seq, hidden) or (layers, batch, seq, hidden): keep the real tokens.
        outputs.append(tokens[real] if tokens.ndim == 3 else tokens[:, real])
    return float(np.abs(outputs[0] - outputs[1]).max())


def fuse_encoder(torch_backend, folder, *, all_layers):
    """Write a fused float32 graph of ``torch_backend.model`` to ``folder / "model.onnx"``.

    The model is exported with eager attention, passed through ONNX
    Runtime's transformer optimizer (BERT fusions: attention, embedding +
    LayerNorm, residual + LayerNorm, bias + GELU), and compared with the
    unfused export on a padded probe batch. Returns None when the fused
    graph is written, else why not (the optimizer is missing or failed,
    fused no attention, or changed the output); nothing is written then.
    """
    folder = Path(folder)
    model = torch_backend.model
    eager = folder / "eager.onnx"
    try:
        from onnxruntime.transformers.optimizer import optimize_model
    except ImportError as err:
        return f"ONNX Runtime's transformer optimizer is unavailable ({err})"
    try:
        export_encoder(
            model,
            eager,
            all_layers=all_layers,
            uses_token_type_ids=torch_backend.uses_token_type_ids,
            eager_attention=True,
        )
        config = model.config
        optimized = optimize_model(
            str(eager),
            model_type="bert",
            num_heads=int(config.num_attention_heads),
            hidden_size=int(config.hidden_size),
        )
        if not optimized.get_fused_operator_statistics().get("Attention"):
            return f"the transformer optimizer fused no attention in this {config.model_type} model"
        optimized.save_model_to_file(str(folder / "model.onnx"))
        difference = _real_token_difference(eager, folder / "model.onnx", config.vocab_size)
    except Exception as err:  # the optimizer's failures are of any type, by architecture
        (folder / "model.onnx").unlink(missing_ok=True)
        return f"the transformer optimizer failed ({type(err).__name__}: {err})"
    finally:
        eager.unlink(missing_ok=True)
    if not difference <= _FUSION_TOLERANCE:
        (folder / "model.onnx").unlink(missing_ok=True)
        return (
            f"the fused graph's token states differ from the plain graph's by {difference:.1e} "
            f"(more than {_FUSION_TOLERANCE:.0e})"
        )
    return None


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


def quantize_int8(fp32_path, int8_path, *, fused=False):
    """Dynamic int8 quantisation of an exported graph (no calibration data).

    In a fused graph the attention operators' input projections are
    quantised too (``QAttention``); shape inference cannot type the
    optimizer's own operators, so their outputs are declared float32.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    extra = {"DefaultTensorType": onnx.TensorProto.FLOAT} if fused else {}
    with _quantizer_advice_dropped():
        quantize_dynamic(
            str(fp32_path),
            str(int8_path),
            op_types_to_quantize=list(_QUANTIZED_OPS) + (["Attention"] if fused else []),
            per_channel=True,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=_int8_excluded_nodes(fp32_path),
            extra_options=extra,
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


def exported_graph(torch_backend, model_identity, *, all_layers, precision, fused=False, home=None):
    """Path of the ONNX graph for ``torch_backend``'s model, exporting it the first time.

    ``torch_backend`` is anything with ``model`` (a float32 transformers
    model on the CPU) and ``uses_token_type_ids``; ``model_identity`` is a
    JSON-able description that changes whenever the model's weights do. A
    stored export is used only when its manifest names the same settings
    and ``model.onnx`` has the size and checksum recorded there; anything
    else (a replaced, truncated or missing graph) is exported again.

    With ``fused`` the graph is the transformer optimizer's
    (:func:`fuse_encoder`), kept under its own key; where it cannot be made,
    an :class:`~embedxfer.exceptions.EmbedxferWarning` says why and the
    plain graph's path is returned instead.
    """
    home = Path(home) if home is not None else onnx_home()
    key, settings = export_key(
        model_identity, all_layers=all_layers, precision=precision, fused=fused
    )
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
    prepare_folder(home, "ONNX exports")
    plain = dict(all_layers=all_layers, home=home)
    if precision == "int8":
        source = exported_graph(
            torch_backend, model_identity, precision="float32", fused=fused, **plain
        )
        if (
            fused
            and source.parent.name
            != export_key(model_identity, all_layers=all_layers, precision="float32", fused=True)[0]
        ):
            # No fused float32 graph (the warning is given): quantise the plain one.
            return exported_graph(torch_backend, model_identity, precision="int8", **plain)
    tmp = Path(tempfile.mkdtemp(prefix=temporary_folder_prefix(key), dir=home))
    try:
        if precision == "int8":
            quantize_int8(source, tmp / "model.onnx", fused=fused)
        elif fused:
            why = fuse_encoder(torch_backend, tmp, all_layers=all_layers)
            if why is not None:
                warnings.warn(
                    f"no fused ONNX graph: {why}; using the plain export, which gives the "
                    "same vectors.",
                    EmbedxferWarning,
                    stacklevel=3,
                )
                return exported_graph(torch_backend, model_identity, precision="float32", **plain)
        else:
            export_encoder(
                torch_backend.model,
                tmp / "model.onnx",
                all_layers=all_layers,
                uses_token_type_ids=torch_backend.uses_token_type_ids,
            )
        write_manifest(tmp, expected, ["model.onnx"])
        install_folder(tmp, folder, expected, ["model.onnx"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def make_session(path, n_threads, *, spinning=False):
    """An ONNX Runtime CPU session on ``path``.

    ``n_threads`` None keeps ONNX Runtime's default; ``spinning`` lets idle
    worker threads spin (ONNX Runtime's default, kept for comparisons).
    """
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle worker threads block instead of spinning. Spinning threads keep
    # their cores busy between operators and after each run, while the
    # tokenizer and pooling (torch) want them; on 2 shared cores this made
    # float32 1.6x and int8 1.5-2x faster end to end at load averages of 5-12,
    # with no clear difference (0.97-1.1x) at 2 (paired runs).
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if n_threads is not None:
        options.intra_op_num_threads = int(n_threads)
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# Tokens (rows x padded length) per session run: a float32 batch is run in
# parts of about this size, whose activations stay in the CPU's caches.
# Measured with all-MiniLM-L6-v2 (paired): 1.06x on sentences of about 25
# tokens in batches of 32, 1.28x on 256-token documents. int8 batches run
# whole: their activations are quantised per run, and parts (1.05x) changed
# a fine-tuned classifier's int8 predictions.
TOKENS_PER_RUN = 512


def run_in_parts(session, feeds, *, batch_axis=0):
    """The session's ``tokens`` for ``feeds``, run in parts of about TOKENS_PER_RUN tokens.

    ``batch_axis`` is the output's batch axis (1 for all layers' states,
    ``(layers, batch, sequence, hidden)``).
    """
    n_rows, length = feeds["input_ids"].shape
    n_runs = -(-n_rows // max(1, TOKENS_PER_RUN // max(1, length)))
    parts = []
    for rows in np.array_split(np.arange(n_rows), n_runs):
        part = {name: value[rows[0] : rows[-1] + 1] for name, value in feeds.items()}
        parts.append(session.run(["tokens"], part)[0])
    return parts[0] if n_runs == 1 else np.concatenate(parts, axis=batch_axis)


class OnnxEncoderBackend:
    """An encoder run by ONNX Runtime, with the torch backend's tokenizer and pooling.

    Everything but the transformer's forward pass (tokenising, padding,
    layer combination, pooling, the sentence-transformers pooling modules)
    is delegated to the torch :class:`~embedxfer.text._encoder_loading.EncoderBackend`
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
        if self.precision == "float32":
            tokens = run_in_parts(session, feeds, batch_axis=int(all_layers))
        else:
            # int8 activations are quantised per run: parts would change the vectors.
            (tokens,) = session.run(["tokens"], feeds)
        return torch.from_numpy(np.ascontiguousarray(tokens))

    def embed(self, features, *, pooling, layers, layer_combine):
        """One batch of document vectors, as :meth:`EncoderBackend.embed`."""
        from ._encoder_loading import combine_layers, masked_pool

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


def load_onnx_encoder(
    torch_backend, model_identity, *, precision, all_layers, n_threads, fused=False
):
    """An :class:`OnnxEncoderBackend` over ``torch_backend`` (float32, CPU)."""
    import_onnxruntime()
    import_onnx_exporter()
    path = exported_graph(
        torch_backend, model_identity, all_layers=all_layers, precision=precision, fused=fused
    )
    sessions = {bool(all_layers): make_session(path, n_threads)}
    return OnnxEncoderBackend(torch_backend, sessions, precision=precision)


@dataclass(frozen=True)
class _ExportSource:
    """An encoder to export, as ``exported_graph`` reads it from a torch backend."""

    model: object
    uses_token_type_ids: bool


def fine_tuned_session(encoder, model_identity, *, uses_token_type_ids, precision, n_threads):
    """An ONNX Runtime session for a (fine-tuned) encoder, exported once per weights.

    ``model_identity`` must change with the weights (a hash of the trained
    tensors); sessions are shared through the registry.
    """
    from .._core.registry import get_or_load

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
        source = _ExportSource(model=model, uses_token_type_ids=uses_token_type_ids)
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
