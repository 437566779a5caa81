"""Pretrained word vectors seeding a small sequence network behind ``fit`` / ``predict``.

The classic transfer recipe before transformers: the embedding layer of a
bidirectional GRU / LSTM or a CNN starts from GloVe / word2vec / fastText
vectors, frozen or trained further. The vocabulary is cut down to the words
of the training data so that the trained model stays small and carries its
own vocabulary: prediction and loading need no vector file.
"""

from collections import Counter
from dataclasses import dataclass
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from .._core.base import ProcessOptInsMixin, RawInputMixin
from .._core.device import import_torch
from .._core.param_validation import Interval, Options
from .._core.public import set_module
from .._core.registry import get_or_load
from .._core.validation import check_documents
from .._torch import persistence as tp
from .._torch.classifier import TorchClassifierMixin
from .._torch.data import batch_ranges, check_xy
from .._torch.loop import TrainingStage
from .._torch.settings import TRAINING_PARAMETER_CONSTRAINTS, autocast, prediction_precision
from ._tokenize import (
    DEFAULT_TOKEN_PATTERN,
    TOKENIZATION_CONSTRAINTS,
    TOKENIZER_NAMES,
    VocabularyIndex,
    compile_tokenizer,
    documents_to_ids,
)
from ._vector_sources import DEFAULT_VECTORS, VECTORS_CONSTRAINT, load_vectors, source_identity

_ARCHITECTURES = ("bigru", "bilstm", "cnn")
# The first rows of the model's own embedding table. (Not to be confused with
# ``_tokenize``'s id of an unknown word in a pretrained vocabulary, which is
# negative.)
PAD_ROW = 0  # padding
OOV_ROW = 1  # every word outside the model's vocabulary
RESERVED_ROWS = 2
_PREDICT_BATCH_FACTOR = 4


@dataclass
class _PreparedSequence:
    """The vocabulary and ids ``_prepare_training`` builds; ``network`` set by the stages."""

    compiled: object
    words: list
    table: np.ndarray
    n_pretrained: int
    lowercase: bool
    index: object
    ids: np.ndarray
    doc_ptr: np.ndarray
    oov_rate: float
    network: object = None


class _FittedSequenceNet:
    """The live network of a fitted SequenceClassifier and its vocabulary; never pickled."""

    def __init__(self, net, index, compiled, device, amp_dtype):
        self.net = net
        self.index = index
        self.compiled = compiled
        self.device = device
        self.amp_dtype = amp_dtype


@set_module("embedxfer")
class SequenceClassifier(
    ProcessOptInsMixin, TorchClassifierMixin, RawInputMixin, ClassifierMixin, BaseEstimator
):
    """Word vectors seed the embedding layer of a small network over the word sequence.

    Each document is tokenised into words; their rows of an embedding table,
    initialised from pretrained word vectors, feed a one-layer bidirectional
    GRU or LSTM (max- and mean-pooled over time) or a CNN with filter widths
    3, 4, 5 and max over time (Kim 2014), then a softmax layer. The embedding
    table is cut down to the words of the training data (pretrained rows for
    words the vectors know, random rows for other words seen at least
    ``min_count`` times, one shared row for everything else), so the fitted
    model is small and self-contained: it keeps its own vocabulary and needs
    no vector file to predict or load.

    Parameters
    ----------
    vectors : str, path-like or gensim KeyedVectors, default="glove-6B-50d"
        Any source :func:`embedxfer.load_vectors` accepts: a file, a known name
        (the default is the packaged GloVe 6B 50d) or a ``KeyedVectors``.
    architecture : {"bigru", "bilstm", "cnn"}, default="bigru"
        The network over the word sequence.
    hidden_size : int, default=64
        Units per direction of the RNN, or filters per width of the CNN.
    freeze_embeddings : bool, default=False
        Keep the embedding table as initialised (``True``), or train it
        along with the network (``False``, fine-tuning the word vectors).
    min_count : int, default=2
        Words missing from the pretrained vectors get a trainable random row
        when they occur at least this often in the training data; rarer ones
        share the out-of-vocabulary row. Words the vectors know always keep
        their pretrained row.
    lowercase : bool or "auto", default="auto"
        Lowercase the text; ``"auto"`` does when the vectors' vocabulary has
        no uppercase word (GloVe).
    tokenizer : None, "split" or callable, default=None
        ``None`` uses ``token_pattern`` (the tokenisation of
        ``WordVectorEmbedder``); ``"split"`` splits on whitespace; a callable
        maps a string to its tokens (such a model pickles, but
        :meth:`save` refuses it).
    token_pattern : str, default=DEFAULT_TOKEN_PATTERN
        Regular expression of a token for the default tokenizer.
    max_length : int, default=200
        Tokens kept per document (the first ones).
    lr : float, default=2e-3
        Peak learning rate (AdamW).
    epochs : int, default=10
        Passes over the training data.
    batch_size : int, default=32
        Documents per step; prediction uses batches four times as large.
    weight_decay : float, default=0.0
        AdamW weight decay (not on biases).
    warmup_fraction : float, default=0.0
        Fraction of the steps with a linear warm-up; the learning rate then
        decays linearly to 0.
    dropout : float, default=0.3
        Dropout on the embedded words and on the pooled vector.
    validation_fraction : float, default=None
        Hold out this share (stratified) for early stopping on the validation
        loss; the best epoch's weights are kept. ``None``: no early stopping.
    n_iter_no_change : int, default=2
        Patience of early stopping, in epochs.
    class_weight : dict, "balanced" or None, default=None
        Class weights in the loss.
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation, the shuffling, the validation split and
        dropout; with an int, ``fit`` is deterministic on the CPU. Torch's
        global generator is seeded inside ``torch.random.fork_rng`` and
        restored when ``fit`` returns.
    device : str, default=None
        ``None``/``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``...
    precision : {"auto", "float32", "float16", "bfloat16"}, default="auto"
        Mixed precision on a GPU (``"auto"``: bfloat16 where supported, else
        float16); float32 on the CPU.
    verbose : int, default=0
        ``1``: progress bar; ``2``: also the loss of every epoch.
    allow_pickle : bool, default=False
        Allow ``vectors`` to be a gensim native ``.kv`` / ``.model`` file,
        which is a pickle: only for files you trust (see
        :func:`embedxfer.load_vectors`).
        A saved estimator never carries it: skops and ``load`` set it back
        to ``False`` (a file cannot switch it on), so set it again after
        loading; pickle and joblib, which run code anyway, keep it.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels, sorted.
    vocabulary_ : ndarray of str
        Words with their own row; word ``vocabulary_[i]`` is row ``i + 2``.
    n_pretrained_ : int
        Words of ``vocabulary_`` initialised from the pretrained vectors (the
        first ``n_pretrained_``); the others started random.
    vector_size_ : int
        Dimension of the word vectors.
    lowercase_ : bool
        Whether text is lowercased.
    oov_rate_ : float
        Share of training tokens that fell on the out-of-vocabulary row.
    n_features_out_ : int
        Size of the pooled vector returned by :meth:`transform`.
    device_ : str
        Device the network runs on.
    loss_curve_, validation_loss_curve_, best_validation_loss_, n_epochs_, n_iter_, fit_time_
        Training history, as in :class:`TransformerClassifier`.

    See Also
    --------
    TransformerClassifier : Fine-tune a pretrained transformer encoder.
    WordVectorEmbedder : Pooled word vectors for any scikit-learn model;
        ``transform_ids`` gives padded id sequences for your own network.

    Examples
    --------
    >>> from embedxfer import SequenceClassifier
    >>> docs = ["a wonderful, moving film", "dull and far too long",
    ...         "a delight from start to finish", "tedious, I nearly left"]
    >>> clf = SequenceClassifier(architecture="cnn", epochs=30, random_state=0)
    >>> clf.fit(docs, ["pos", "neg", "pos", "neg"]).predict(docs[:2]).tolist()
    ['pos', 'neg']
    """

    def __init__(
        self,
        *,
        vectors=DEFAULT_VECTORS,
        architecture="bigru",
        hidden_size=64,
        freeze_embeddings=False,
        min_count=2,
        lowercase="auto",
        tokenizer=None,
        token_pattern=DEFAULT_TOKEN_PATTERN,
        max_length=200,
        lr=2e-3,
        epochs=10,
        batch_size=32,
        weight_decay=0.0,
        warmup_fraction=0.0,
        dropout=0.3,
        validation_fraction=None,
        n_iter_no_change=2,
        class_weight=None,
        random_state=None,
        device=None,
        precision="auto",
        verbose=0,
        allow_pickle=False,
    ):
        self.vectors = vectors
        self.architecture = architecture
        self.hidden_size = hidden_size
        self.freeze_embeddings = freeze_embeddings
        self.min_count = min_count
        self.lowercase = lowercase
        self.tokenizer = tokenizer
        self.token_pattern = token_pattern
        self.max_length = max_length
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.warmup_fraction = warmup_fraction
        self.dropout = dropout
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.class_weight = class_weight
        self.random_state = random_state
        self.device = device
        self.precision = precision
        self.verbose = verbose
        self.allow_pickle = allow_pickle

    _parameter_constraints = {
        **TRAINING_PARAMETER_CONSTRAINTS,
        "vectors": VECTORS_CONSTRAINT,
        "architecture": [Options(_ARCHITECTURES)],
        "hidden_size": [Interval(Integral, 1, None)],
        "freeze_embeddings": ["boolean"],
        "min_count": [Interval(Integral, 1, None)],
        **TOKENIZATION_CONSTRAINTS,
        "max_length": [Interval(Integral, 1, None)],
        "allow_pickle": ["boolean"],
    }

    # --------------------------------------------------------------- fit
    def fit(self, X, y):
        """Build the vocabulary, seed the embeddings and train the network.

        Parameters
        ----------
        X : iterable of str
            Training documents.
        y : array-like of shape (n_samples,)
            Class labels (two or more classes).

        Returns
        -------
        self : SequenceClassifier
            The fitted estimator.
        """
        return super().fit(X, y)

    def _check_fit_data(self, X, y):
        return check_xy(X, y)

    def _prepare_training(self, data, settings):
        compiled = compile_tokenizer(self.tokenizer, self.token_pattern)
        rng = np.random.RandomState(settings.seed)
        docs, train_idx = data.inputs, data.train_idx
        kv = load_vectors(self.vectors, allow_pickle=self.allow_pickle)
        pretrained_index = _pretrained_index(self.vectors, kv)
        lowercase = (
            pretrained_index.is_lowercase if self.lowercase == "auto" else bool(self.lowercase)
        )
        # The vocabulary comes from the training rows only, not the held-out ones.
        train_docs = [docs[i] for i in train_idx]
        words, table, n_pretrained = _build_vocabulary(
            train_docs, kv, pretrained_index, compiled, lowercase, self.min_count, rng
        )
        index = VocabularyIndex({w: i for i, w in enumerate(words)})
        ids, doc_ptr = _local_ids(docs, index, compiled, lowercase)
        token_doc = np.repeat(np.arange(len(docs)), np.diff(doc_ptr))
        train_tokens = ids[np.isin(token_doc, train_idx)]
        oov_rate = float(np.mean(train_tokens == OOV_ROW)) if len(train_tokens) else 0.0
        return _PreparedSequence(
            compiled=compiled,
            words=words,
            table=table,
            n_pretrained=n_pretrained,
            lowercase=lowercase,
            index=index,
            ids=ids,
            doc_ptr=doc_ptr,
            oov_rate=oov_rate,
        )

    def _training_stages(self, prepared, data, settings):
        torch = import_torch()
        ids, doc_ptr, table = prepared.ids, prepared.doc_ptr, prepared.table
        device, train_idx, val_idx = settings.device, data.train_idx, data.val_idx
        # The network's initial weights draw from torch's generator: seeded here.
        net = self._new_net(len(table), table.shape[1], len(data.classes))
        with torch.no_grad():
            net.embedding.weight.copy_(torch.from_numpy(table))
        net.embedding.weight.requires_grad_(not self.freeze_embeddings)
        net = net.to(device)
        network = _FittedSequenceNet(
            net, prepared.index, prepared.compiled, device, settings.amp_dtype
        )
        prepared.network = network
        lengths = np.minimum(np.diff(doc_ptr), self.max_length)

        def batch_logits(idx):
            return net(*self._collate(ids, doc_ptr, train_idx[idx], device))

        def val_logits():
            logits = self._run(network, ids, doc_ptr, val_idx, "logits")
            return torch.from_numpy(logits).to(device)

        trainable = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
        yield TrainingStage(
            groups=[(trainable, settings.lr)],
            modules=[net],
            epochs=self.epochs,
            batch_logits=batch_logits,
            val_logits=None if val_idx is None else val_logits,
            lengths=lengths[train_idx],
            desc=f"SequenceClassifier({self.architecture})",
        )

    def _new_net(self, n_rows, dim, n_classes):
        from . import _sequence_networks as _seqnet

        return _seqnet.SequenceNet(
            n_rows,
            dim,
            self.architecture,
            self.hidden_size,
            n_classes,
            self.dropout,
            padding_idx=PAD_ROW,
        )

    def _fitted_runtime(self, prepared):
        self.vocabulary_ = np.asarray(prepared.words, dtype=object)
        self.oov_rate_ = prepared.oov_rate
        self.n_pretrained_ = prepared.n_pretrained
        self.vector_size_ = int(prepared.table.shape[1])
        self.lowercase_ = prepared.lowercase
        self.n_features_out_ = prepared.network.net.n_features
        return prepared.network

    # --------------------------------------------------------- batching
    def _collate(self, ids, doc_ptr, rows, device):
        """Padded id batch and true lengths (at least 1) for documents ``rows``."""
        torch = import_torch()
        from ._sequence_networks import CNN_KERNELS

        starts = doc_ptr[rows]
        lengths = np.minimum(doc_ptr[rows + 1] - starts, self.max_length)
        min_width = max(CNN_KERNELS) if self.architecture == "cnn" else 1
        width = max(int(lengths.max(initial=0)), min_width)
        out = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.arange(width)[None, :] < lengths[:, None]
        take = starts[:, None] + np.arange(width)[None, :]
        out[mask] = ids[take[mask]]
        # An empty document is one padding token, so that every length is >= 1.
        lengths = np.maximum(lengths, 1)
        return (torch.from_numpy(out).to(device), torch.from_numpy(lengths).to(device))

    def _run(self, runtime, ids, doc_ptr, rows, what):
        """Logits or pooled vectors of documents ``rows``, batched by length."""
        torch = import_torch()
        net = runtime.net
        width = net.out.out_features if what == "logits" else net.n_features
        out = np.empty((len(rows), width), dtype=np.float32)
        if not len(rows):
            return out
        rows = np.asarray(rows)
        order = np.argsort(-(doc_ptr[rows + 1] - doc_ptr[rows]), kind="stable")
        batch = self.batch_size * _PREDICT_BATCH_FACTOR
        with torch.inference_mode(), autocast(runtime.device, runtime.amp_dtype):
            for start, stop in batch_ranges(len(rows), batch):
                sel = order[start:stop]
                ids_t, lengths_t = self._collate(ids, doc_ptr, rows[sel], runtime.device)
                vec = net.features(ids_t, lengths_t)
                if what == "logits":
                    vec = net.out(vec)
                out[sel] = vec.float().cpu().numpy()
        return out

    # -------------------------------------------------------- prediction
    def _docs_run(self, docs, what):
        runtime = self._ensure_runtime()
        ids, doc_ptr = _local_ids(docs, runtime.index, runtime.compiled, self.lowercase_)
        return self._run(runtime, ids, doc_ptr, np.arange(len(docs)), what)

    def _logits_numpy(self, docs):
        return self._docs_run(docs, "logits")

    def transform(self, X):
        """The pooled document vectors the softmax layer sees.

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
        return self._docs_run(check_documents(X, allow_empty=True), "pooled")

    # ------------------------------------------------------- persistence
    def _trained_tensors(self):
        return dict(self._runtime.net.state_dict())

    _saved_fields = {
        "vocabulary_": tp.STRS,
        "n_pretrained_": tp.INT,
        "vector_size_": tp.INT,
        "lowercase_": tp.BOOL,
        "oov_rate_": tp.NUMBER,
        "n_features_out_": tp.INT,
    }

    @classmethod
    def _expected_tensors(cls, config):
        """Every tensor's shape, from the config alone (``SequenceNet``'s layout).

        Checked against the weights' header before the network is built, so
        that a forged ``hidden_size`` cannot make the loader allocate for it.
        """
        params = config["params"]
        architecture, hidden = params.get("architecture"), params.get("hidden_size")
        if architecture not in _ARCHITECTURES:
            raise ValueError(
                f"params.architecture is {architecture!r:.60}, expected one of {_ARCHITECTURES}"
            )
        if not (isinstance(hidden, Integral) and not isinstance(hidden, bool) and hidden >= 1):
            raise ValueError(f"params.hidden_size is {hidden!r:.60}, expected a positive integer")
        import torch

        from ._sequence_networks import SequenceNet

        n_classes = len(config["classes"]["values"])
        n_rows = len(config["vocabulary_"]) + RESERVED_ROWS
        # Built on the meta device: the layout of the real network, no storage.
        with torch.device("meta"):
            net = SequenceNet(
                n_rows,
                config["vector_size_"],
                architecture,
                hidden,
                n_classes,
                0.0,
                padding_idx=PAD_ROW,
            )
        if config["n_features_out_"] != net.n_features:
            raise ValueError(
                f"n_features_out_ is {config['n_features_out_']}, but a {architecture} of "
                f"hidden_size {hidden} gives {net.n_features}"
            )
        return {name: tuple(t.shape) for name, t in net.state_dict().items()}, ()

    def _extra_config(self):
        if not (self.tokenizer is None or self.tokenizer in TOKENIZER_NAMES):
            raise ValueError(
                f"tokenizer={self.tokenizer!r} is a callable, which save() cannot write as "
                "JSON; pickle the classifier instead (joblib.dump), or use the default "
                "tokenizer with a token_pattern."
            )
        return {
            "vocabulary_": self.vocabulary_.tolist(),
            "n_pretrained_": self.n_pretrained_,
            "vector_size_": self.vector_size_,
            "lowercase_": self.lowercase_,
            "oov_rate_": self.oov_rate_,
            "n_features_out_": self.n_features_out_,
        }

    def _load_extra_config(self, config, folder):
        self.vocabulary_ = np.asarray(config["vocabulary_"], dtype=object)
        self.n_pretrained_ = config["n_pretrained_"]
        self.vector_size_ = config["vector_size_"]
        self.lowercase_ = config["lowercase_"]
        self.oov_rate_ = config["oov_rate_"]
        self.n_features_out_ = config["n_features_out_"]

    def _rebuild(self, tensors, device):
        torch = import_torch()
        table = tensors["embedding.weight"]
        with torch.device("meta"):  # no initialisation, no draw from the global RNG
            net = self._new_net(table.shape[0], table.shape[1], len(self.classes_))
        net = net.to_empty(device=device)
        net.load_state_dict(tensors)
        net.eval().requires_grad_(False)
        amp_dtype = prediction_precision(self.precision, device)
        index = VocabularyIndex({w: i for i, w in enumerate(self.vocabulary_.tolist())})
        compiled = compile_tokenizer(self.tokenizer, self.token_pattern)
        self.device_ = device
        self._runtime = _FittedSequenceNet(net, index, compiled, device, amp_dtype)


def _pretrained_index(source, kv):
    """Word -> row lookup of the pretrained vectors, shared with WordVectorEmbedder."""
    return get_or_load(
        ("vocabulary-index", source_identity(source)),
        lambda: VocabularyIndex(kv.key_to_index),
    )


def _build_vocabulary(docs, kv, index, compiled, lowercase, min_count, rng):
    """Words of the training data and their initial embedding table.

    Returns ``(words, table, n_pretrained)``: ``table`` has ``len(words) + 2``
    rows, zeros for padding and the out-of-vocabulary row, then the
    pretrained vectors of the known words, then small random vectors (same
    scale as the pretrained ones) for unknown words seen ``min_count`` times.
    """
    ids, _, tokens = documents_to_ids(docs, index, compiled, lowercase, with_tokens=True)
    rows = np.unique(ids[ids >= 0])
    known_words = [kv.index_to_key[r] for r in rows.tolist()]
    unknown = np.flatnonzero(ids < 0)
    counts = Counter(tokens[i] for i in unknown.tolist())
    new_words = sorted(w for w, c in counts.items() if c >= min_count)
    pretrained = (
        np.asarray(kv.vectors[rows], dtype=np.float32)
        if len(rows)
        else (np.zeros((0, kv.vector_size), dtype=np.float32))
    )
    scale = float(pretrained.std()) if pretrained.size else 0.1
    random_rows = (rng.standard_normal((len(new_words), kv.vector_size)) * scale).astype(np.float32)
    table = np.concatenate(
        [
            np.zeros((RESERVED_ROWS, kv.vector_size), dtype=np.float32),
            pretrained,
            random_rows,
        ]
    )
    return known_words + new_words, table, len(known_words)


def _local_ids(docs, index, compiled, lowercase):
    """Token rows in the model's own table (unknown words -> ``OOV_ROW``) and document offsets."""
    ids, doc_ptr, _ = documents_to_ids(docs, index, compiled, lowercase)
    local = np.where(ids >= 0, ids + RESERVED_ROWS, OOV_ROW).astype(np.int64)
    return local, doc_ptr
