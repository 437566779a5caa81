"""Comparing embedders on labelled texts: model names, encoding, scores, plots.

The command line (``embedxfer evaluate``, ``embedxfer demo``) is a thin layer
over this module. Pretrained embedders learn nothing from labels, so each
corpus is encoded once per embedder and the downstream estimator is
cross-validated on the vectors; TF-IDF, which learns its vocabulary and IDF
from the documents, is refitted inside every fold.
"""

import contextlib
import difflib
import os
import re
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._vectors import GENSIM_DATA_NAMES, PACKAGED_GLOVE_NAMES, source_identity

PACKAGED_SENTENCE_NAMES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
TFIDF_NAMES = ("tfidf", "tf-idf")
WORD_POOLINGS = ("mean", "sum", "max", "min")
SENTENCE_POOLINGS = ("mean", "cls", "max", "model")
# Options of sentence models that choose how they run rather than what they pool.
SENTENCE_RUNTIME_OPTIONS = {
    "torch": {"backend": "torch"},
    "onnx": {"backend": "onnx"},
    "onnx-int8": {"backend": "onnx", "precision": "int8"},
    "chunk": {"long_documents": "chunk"},
}
WORD_WEIGHTINGS = ("tfidf", "sif", "usif")
CLASSIFIERS = ("logreg", "linearsvc", "knn")
CLUSTERERS = ("kmeans", "agglomerative", "hdbscan")
_OFFLINE_VARIABLES = ("EMBEDXFER_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_PATH_SUFFIXES = (".txt", ".bin", ".vec", ".gz", ".bz2", ".kv", ".model", ".npy", ".zip", ".w2v")


class UnknownModelError(ValueError):
    """A model name that is neither a known name, a hub id nor an existing path."""


class ModelUnavailableError(ConnectionError):
    """A model that must be downloaded while the network cannot be used."""


@dataclass
class ModelSpec:
    """A model named on the command line, resolved.

    Attributes
    ----------
    name : str
        The model name or path (without options).
    kind : {"word", "sentence", "tfidf"}
    pooling : str or None
        Pooling option given after ``:`` (``None``: the embedder's default).
    weighting : str or None
        Word-vector weighting given after ``:``.
    label : str
        How tables and plots name it (``name`` plus its options).
    settings : dict
        Further SentenceEmbedder parameters from options such as ``onnx``,
        ``onnx-int8`` or ``chunk``.
    """

    name: str
    kind: str
    pooling: str = None
    weighting: str = None
    label: str = field(default="")
    settings: dict = field(default_factory=dict)


def known_model_names():
    """Names that resolve without a path: packaged, gensim-data and the TF-IDF baseline."""
    return list(
        dict.fromkeys(
            PACKAGED_GLOVE_NAMES + PACKAGED_SENTENCE_NAMES + GENSIM_DATA_NAMES + TFIDF_NAMES[:1]
        )
    )


def parse_model(text, kind="auto", extra_options=()):
    """Resolve ``NAME[:OPTIONS]`` to a :class:`ModelSpec`.

    ``OPTIONS`` are comma-separated pooling and weighting words, e.g.
    ``glove-6B-50d:mean+max``, ``glove-6B-50d:sif``,
    ``all-MiniLM-L6-v2:cls``; sentence models also take ``onnx``,
    ``onnx-int8`` (ONNX Runtime backend, float32 or int8) and ``chunk``
    (long documents read whole), e.g. ``all-MiniLM-L6-v2:onnx-int8,chunk``.
    ``kind`` is ``"auto"`` (from the name),
    ``"word"`` or ``"sentence"``. ``extra_options`` are validated the same
    way (the command line's ``--pooling`` and ``--weighting``).
    """
    name, options = _split_options(text)
    options = options + [o for o in extra_options if o is not None]
    resolved = resolve_kind(name, kind)
    pooling = weighting = None
    settings = {}
    for option in options:
        if resolved == "tfidf":
            raise ValueError(f"model {text!r}: the TF-IDF baseline takes no options.")
        if option in WORD_WEIGHTINGS and resolved == "word":
            weighting = option
        elif (resolved == "word" and all(p in WORD_POOLINGS for p in option.split("+"))) or (
            resolved == "sentence" and option in SENTENCE_POOLINGS
        ):
            pooling = option
        elif resolved == "sentence" and option in SENTENCE_RUNTIME_OPTIONS:
            settings.update(SENTENCE_RUNTIME_OPTIONS[option])
        else:
            allowed = (
                f"poolings {', '.join(WORD_POOLINGS)} (or several joined by '+') and "
                f"weightings {', '.join(WORD_WEIGHTINGS)}"
                if resolved == "word"
                else f"poolings {', '.join(SENTENCE_POOLINGS)} and "
                f"{', '.join(SENTENCE_RUNTIME_OPTIONS)}"
            )
            raise ValueError(
                f"model {text!r}: option {option!r} is not understood for {resolved} "
                f"embeddings; use {allowed}."
            )
    if resolved == "tfidf":
        name = TFIDF_NAMES[0]
    label = name if not options else f"{name}:{','.join(options)}"
    return ModelSpec(
        name=name,
        kind=resolved,
        pooling=pooling,
        weighting=weighting,
        label=label,
        settings=settings,
    )


def _split_options(text):
    text = os.fspath(text)
    head, sep, tail = text.rpartition(":")
    if not sep or not head or len(head) == 1:  # no options, or a Windows drive letter
        return text, []
    options = [o.strip() for o in tail.split(",") if o.strip()]
    words = set(WORD_POOLINGS + SENTENCE_POOLINGS + WORD_WEIGHTINGS)
    words |= set(SENTENCE_RUNTIME_OPTIONS)
    if options and all(set(o.split("+")) <= words for o in options):
        return head, options
    return text, []


def resolve_kind(name, kind="auto"):
    """``"word"``, ``"sentence"`` or ``"tfidf"`` for a model name or path.

    Raises
    ------
    FileNotFoundError
        For something that looks like a path but does not exist.
    UnknownModelError
        For a bare name that is not known; the message lists close names.
    """
    if kind not in ("auto", "word", "sentence"):
        raise ValueError(f"kind={kind!r}; expected 'auto', 'word' or 'sentence'.")
    if name.lower() in TFIDF_NAMES:
        return "tfidf"
    if kind != "auto":
        return kind
    if name in PACKAGED_GLOVE_NAMES or name in GENSIM_DATA_NAMES:
        return "word"
    if name in PACKAGED_SENTENCE_NAMES:
        return "sentence"
    path = Path(name).expanduser()
    if path.is_dir():
        return "sentence"
    if path.is_file():
        return "word"
    if _looks_like_path(name):
        raise FileNotFoundError(f"model {name!r}: no such file or folder.")
    if re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", name):
        return "sentence"  # a Hugging Face Hub id, e.g. sentence-transformers/all-mpnet-base-v2
    close = close_model_names(name)
    hint = f" Close names: {', '.join(close)}." if close else ""
    raise UnknownModelError(
        f"unknown model {name!r}.{hint} Run 'embedxfer models' for what is available; a "
        "Hugging Face Hub model is named 'owner/name' (or pass --kind sentence); word "
        "vectors can be given as a file path."
    )


def close_model_names(name, n=3):
    """Known names close to ``name`` (case-insensitive, substrings first)."""
    known = known_model_names()
    lower = {k.lower(): k for k in known}
    query = name.lower()
    found = [k for k in known if query and query in k.lower()]
    found += [lower[m] for m in difflib.get_close_matches(query, list(lower), n=n, cutoff=0.6)]
    return list(dict.fromkeys(found))[:n]


def _looks_like_path(name):
    return (
        name.startswith((".", "/", "~", "\\"))
        or name.count("/") > 1
        or "\\" in name
        or name.lower().endswith(_PATH_SUFFIXES)
    )


# -- availability -------------------------------------------------------------


def offline_mode():
    """Whether an environment variable forbids downloads."""
    return any(
        os.environ.get(var, "").strip().lower() not in ("", "0", "false", "no")
        for var in _OFFLINE_VARIABLES
    )


def network_reachable(host, port=443, timeout=3.0):
    """Whether a TCP connection to ``host`` opens within ``timeout`` seconds."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def needs_download(spec):
    """Where ``spec`` would be downloaded from, or ``None`` when it is local."""
    if spec.kind == "tfidf":
        return None
    if spec.kind == "word":
        return "gensim-data" if source_identity(spec.name).startswith("name:") else None
    from ._transformers import resolve_model_source

    source, is_local = resolve_model_source(spec.name)
    if is_local or _in_hf_cache(source):
        return None
    return "the Hugging Face Hub"


def _in_hf_cache(repo_id):
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # an invalid repo id is simply not cached
        return False


def check_available(spec):
    """Raise :class:`ModelUnavailableError` when ``spec`` needs a download that cannot happen."""
    origin = needs_download(spec)
    if origin is None:
        return
    host = "huggingface.co" if origin == "the Hugging Face Hub" else "github.com"
    if offline_mode():
        reason = (
            "offline mode is set ("
            + ", ".join(v for v in _OFFLINE_VARIABLES if os.environ.get(v))
            + ")"
        )
    elif not network_reachable(host):
        reason = f"{host} cannot be reached (offline?)"
    else:
        return
    if spec.kind == "word":
        remedy = "pass the path of a local copy of the vectors, or use the packaged 'glove-6B-50d'"
    else:
        remedy = (
            "download it on a connected machine and pass its folder, or use the packaged "
            "'all-MiniLM-L6-v2'"
        )
    raise ModelUnavailableError(
        f"model {spec.name!r} must be downloaded from {origin}, but {reason}; {remedy} "
        "(see 'embedxfer models')."
    )


# -- embedders and encoding ---------------------------------------------------------


def build_embedder(
    spec, *, batch_size=None, device=None, cache=None, normalize=False, allow_pickle=False
):
    """A fresh embedder for ``spec`` (``None`` for the TF-IDF baseline)."""
    if spec.kind == "tfidf":
        return None
    params = {"normalize": bool(normalize)}
    if cache is not None:
        params["cache"] = cache
    if spec.pooling is not None:
        params["pooling"] = spec.pooling
    if spec.kind == "word":
        from ._word import WordVectorEmbedder

        if spec.weighting is not None:
            params["weighting"] = spec.weighting
        if device is not None:
            params["device"] = device
        if allow_pickle:
            params["allow_pickle"] = True
        return WordVectorEmbedder(spec.name, **params)
    from ._sentence import SentenceEmbedder

    if batch_size is not None:
        params["batch_size"] = int(batch_size)
    params.update(spec.settings)
    return SentenceEmbedder(model=spec.name, device=device, **params)


class WarningTally:
    """Collect warnings raised while encoding chunk after chunk, reported once at the end.

    Empty-document warnings are dropped: callers count zero rows instead,
    which gives the exact total rather than one warning per chunk.
    """

    def __init__(self):
        self._seen = {}

    @contextlib.contextmanager
    def record(self):
        from ._word import EmptyDocumentWarning

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        for w in caught:
            if issubclass(w.category, EmptyDocumentWarning):
                continue
            key = (w.category, re.sub(r"\d+", "#", str(w.message)))
            message, count = self._seen.get(key, (str(w.message), 0))
            self._seen[key] = (message, count + 1)

    def summary(self):
        """``[(category, first message, count), ...]``."""
        return [(cat, message, count) for (cat, _), (message, count) in self._seen.items()]


def encode_chunks(embedder, texts, *, chunk_size=1024, tally=None):
    """Yield ``(start, stop, vectors)`` for consecutive chunks of ``texts``.

    ``embedder`` must be fitted. With an embedding cache each finished chunk
    is stored before the next starts, so an interrupted run resumes there.
    """
    tally = tally if tally is not None else WarningTally()
    n = len(texts)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        with tally.record():
            block = embedder.transform(texts[start:stop])
        yield start, stop, block


def encode_corpus(spec, texts, *, chunk_size=1024, progress=None, **embedder_params):
    """Fit the embedder for ``spec`` on ``texts`` (no labels) and encode them.

    Returns
    -------
    result : dict
        ``X`` (float32 array), ``load_s`` (``fit``: model loading, and corpus
        statistics for weighted word vectors), ``encode_s`` (``transform``),
        ``n_empty`` (all-zero rows), ``warnings`` (list of ``(category,
        message, count)``) and ``embedder``.
    """
    embedder = build_embedder(spec, **embedder_params)
    tally = WarningTally()
    started = time.perf_counter()
    with tally.record():
        embedder.fit(texts)
    load_s = time.perf_counter() - started
    n = len(texts)
    X = np.empty((n, embedder.n_features_out_), dtype=np.float32)
    started = time.perf_counter()
    for start, stop, block in encode_chunks(embedder, texts, chunk_size=chunk_size, tally=tally):
        X[start:stop] = block
        if progress is not None:
            progress(stop, n, time.perf_counter() - started)
    return {
        "X": X,
        "load_s": load_s,
        "encode_s": time.perf_counter() - started,
        "n_empty": int(np.count_nonzero(~X.any(axis=1))),
        "warnings": tally.summary(),
        "embedder": embedder,
    }


# -- downstream estimators -----------------------------------------------------------


# Regularisation strengths tried for each classifier on dense (standardised)
# embeddings and on TF-IDF; the middle value is used when a training set is
# too small to hold out a validation part.
C_GRIDS = {
    ("logreg", False): (0.01, 0.1, 1.0),
    ("logreg", True): (1.0, 10.0, 100.0),
    ("linearsvc", False): (0.001, 0.01, 0.1),
    ("linearsvc", True): (0.1, 1.0, 10.0),
}
_MIN_TUNE_CLASS = 8  # documents of the rarest class needed to hold out a validation part


def make_classifier(name, kind, *, y=None, random_state=0):
    """The downstream classifier ``name`` for vectors of ``kind`` (a Pipeline).

    Dense embeddings are standardised (logistic regression, linear SVM) or
    scaled to unit length (k-NN); TF-IDF is fitted inside the pipeline. The
    linear models' ``C`` is chosen from :data:`C_GRIDS` on a stratified 25%
    hold-out of the training data, so that every embedder gets the
    regularisation that suits it; when ``y`` (the training labels) has fewer
    than 8 documents in some class, the grid's middle value is used.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedShuffleSplit
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer, StandardScaler
    from sklearn.svm import LinearSVC

    tfidf = kind == "tfidf"
    grid = C_GRIDS.get((name, tfidf))
    if name == "logreg":
        head = LogisticRegression(C=grid[1], max_iter=3000)
    elif name == "linearsvc":
        head = LinearSVC(C=grid[1], random_state=random_state)
    elif name == "knn":
        head = KNeighborsClassifier(n_neighbors=5, metric="cosine", algorithm="brute")
    else:
        raise ValueError(f"unknown classifier {name!r}; expected one of {', '.join(CLASSIFIERS)}.")
    if tfidf:
        prep = [TfidfVectorizer(sublinear_tf=True)]
    else:
        prep = [Normalizer() if name == "knn" else StandardScaler()]
    pipe = make_pipeline(*prep, head)
    if grid is None or y is None or np.unique(y, return_counts=True)[1].min() < _MIN_TUNE_CLASS:
        return pipe
    holdout = StratifiedShuffleSplit(n_splits=1, test_size=0.25, random_state=random_state)
    return GridSearchCV(
        pipe, {f"{pipe.steps[-1][0]}__C": list(grid)}, cv=holdout, scoring="accuracy"
    )


def describe_classifier(name):
    """One line saying what the downstream classifier is, for reports."""
    if name == "knn":
        return "5-nearest neighbours, cosine distance"
    model = {"logreg": "LogisticRegression", "linearsvc": "LinearSVC"}[name]
    dense = "/".join(f"{c:g}" for c in C_GRIDS[(name, False)])
    sparse = "/".join(f"{c:g}" for c in C_GRIDS[(name, True)])
    return (
        f"{model} on standardised embeddings (C in {dense}) or TF-IDF (C in {sparse}), C "
        "picked on a 25% hold-out of each training set"
    )


def check_cv(y, cv):
    """Validate ``cv`` folds against the class sizes; return the splitter."""
    from sklearn.model_selection import StratifiedKFold

    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise ValueError(f"the labels hold a single class ({classes[0]!r}); need at least two.")
    if not isinstance(cv, int) or cv < 2:
        raise ValueError(f"--cv {cv!r}: expected an integer >= 2.")
    smallest = int(counts.min())
    if smallest < cv:
        raise ValueError(
            f"class {classes[counts.argmin()]!r} has only {smallest} documents, fewer than the "
            f"{cv} folds; use --cv {max(smallest, 2)} or more documents."
        )
    return StratifiedKFold(n_splits=cv, shuffle=True, random_state=0)


def stratified_subsample(y, n, random_state=0):
    """Sorted indices of a stratified random sample of ``n`` of the ``len(y)`` rows."""
    from sklearn.model_selection import StratifiedShuffleSplit

    y = np.asarray(y)
    if n is None or n >= len(y):
        return np.arange(len(y))
    try:
        splitter = StratifiedShuffleSplit(n_splits=1, train_size=n, random_state=random_state)
        index, _ = next(splitter.split(np.zeros(len(y)), y))
    except ValueError:  # a class too small to stratify: plain random sample
        index = np.random.default_rng(random_state).choice(len(y), size=n, replace=False)
    return np.sort(index)


def cross_validate_classifier(name, kind, X, y, splitter):
    """Cross-validated accuracy and macro-F1 of one classifier on ``X``.

    Returns a dict with ``accuracy``, ``accuracy_std``, ``f1_macro``,
    ``f1_macro_std`` and ``cv_s`` (wall-clock seconds).
    """
    from sklearn.model_selection import cross_validate

    started = time.perf_counter()
    scores = cross_validate(
        make_classifier(name, kind, y=_smallest_training_fold(y, splitter)),
        X,
        y,
        cv=splitter,
        scoring=("accuracy", "f1_macro"),
    )
    return {
        "accuracy": float(scores["test_accuracy"].mean()),
        "accuracy_std": float(scores["test_accuracy"].std()),
        "f1_macro": float(scores["test_f1_macro"].mean()),
        "f1_macro_std": float(scores["test_f1_macro"].std()),
        "cv_s": time.perf_counter() - started,
    }


def _smallest_training_fold(y, splitter):
    """Labels of the training fold with the fewest documents of its rarest class."""
    folds = [y[train] for train, _ in splitter.split(np.zeros(len(y)), y)]
    return min(folds, key=lambda labels: np.unique(labels, return_counts=True)[1].min())


def majority_baseline(y, splitter):
    """Scores of always predicting the most frequent training class."""
    from sklearn.dummy import DummyClassifier
    from sklearn.model_selection import cross_validate

    scores = cross_validate(
        DummyClassifier(strategy="most_frequent"),
        np.zeros((len(y), 1)),
        y,
        cv=splitter,
        scoring=("accuracy", "f1_macro"),
    )
    return {
        "accuracy": float(scores["test_accuracy"].mean()),
        "accuracy_std": float(scores["test_accuracy"].std()),
        "f1_macro": float(scores["test_f1_macro"].mean()),
        "f1_macro_std": float(scores["test_f1_macro"].std()),
    }


def learning_curve_sizes(n_train, n_classes, points=7):
    """Training-set sizes from a few per class up to ``n_train``, log-spaced."""
    low = min(max(20, 2 * n_classes), n_train)
    sizes = np.unique(np.geomspace(low, n_train, num=points).round().astype(int))
    return sizes


def learning_curve(name, kind, X, y, splitter, sizes, random_state=0):
    """Accuracy and macro-F1 on each test fold after training on stratified subsets.

    Each training fold is subsampled (stratified) to every size in
    ``sizes``; the model (with ``C`` picked on a hold-out of the subset when
    it is large enough, see :func:`make_classifier`) is scored on the whole
    test fold.

    Returns
    -------
    curve : dict
        ``sizes`` and per size the mean and std over folds of ``accuracy``
        and ``f1_macro``.
    """
    from sklearn.metrics import accuracy_score, f1_score

    acc = np.full((len(sizes), splitter.get_n_splits()), np.nan)
    f1 = np.full_like(acc, np.nan)
    for fold, (train, test) in enumerate(splitter.split(np.zeros(len(y)), y)):
        for i, size in enumerate(sizes):
            subset = train[stratified_subsample(y[train], int(size), random_state + fold)]
            if len(np.unique(y[subset])) < 2:
                continue
            model = make_classifier(name, kind, y=y[subset], random_state=random_state)
            fitted = model.fit(_rows(X, subset), y[subset])
            predicted = fitted.predict(_rows(X, test))
            acc[i, fold] = accuracy_score(y[test], predicted)
            f1[i, fold] = f1_score(y[test], predicted, average="macro")
    return {
        "sizes": np.asarray(sizes),
        "accuracy": np.nanmean(acc, axis=1),
        "accuracy_std": np.nanstd(acc, axis=1),
        "f1_macro": np.nanmean(f1, axis=1),
        "f1_macro_std": np.nanstd(f1, axis=1),
    }


def _rows(X, index):
    if isinstance(X, np.ndarray):
        return X[index]
    return [X[i] for i in index]


# -- clustering ---------------------------------------------------------------------


def lsa_vectors(texts, n_components=100, random_state=0):
    """TF-IDF reduced by truncated SVD and L2-normalised (latent semantic analysis)."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    tfidf = TfidfVectorizer(sublinear_tf=True, min_df=2, stop_words="english").fit_transform(texts)
    k = max(2, min(n_components, tfidf.shape[1] - 1, tfidf.shape[0] - 1))
    reduced = TruncatedSVD(n_components=k, random_state=random_state).fit_transform(tfidf)
    return normalize(reduced).astype(np.float32)


def make_clusterer(name, n_clusters, n_samples, random_state=0):
    """A scikit-learn clusterer for L2-normalised vectors.

    ``"kmeans"`` and ``"agglomerative"`` (Ward) look for ``n_clusters``.
    ``"hdbscan"`` finds its own number of clusters and leaves outliers as
    noise; density estimates degrade in tens of dimensions, so the vectors
    are first projected on their 5 principal components (re-normalised).
    """
    from sklearn.cluster import HDBSCAN, AgglomerativeClustering, KMeans
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer

    if name == "kmeans":
        return KMeans(n_clusters=n_clusters, n_init=10, random_state=random_state)
    if name == "agglomerative":
        return AgglomerativeClustering(n_clusters=n_clusters, linkage="ward")
    if name == "hdbscan":
        size = max(5, n_samples // (8 * n_clusters))
        return make_pipeline(
            PCA(n_components=5, random_state=random_state),
            Normalizer(),
            HDBSCAN(min_cluster_size=size, min_samples=5, copy=True),
        )
    raise ValueError(f"unknown clusterer {name!r}; expected one of {', '.join(CLUSTERERS)}.")


def score_clustering(name, X, y, n_clusters, random_state=0):
    """Cluster unit-length ``X`` with ``name`` and score it against the true labels ``y``.

    Returns a dict with ``ari``, ``nmi``, ``silhouette`` (cosine, on the
    documents not marked as noise), ``n_found`` (clusters), ``noise``
    (share of documents HDBSCAN leaves unclustered), ``cluster_s`` and
    ``labels``.
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score

    started = time.perf_counter()
    labels = make_clusterer(name, n_clusters, len(X), random_state).fit_predict(X)
    elapsed = time.perf_counter() - started
    clustered = labels >= 0
    found = np.unique(labels[clustered])
    silhouette = np.nan
    if 2 <= len(found) < clustered.sum():
        silhouette = float(
            silhouette_score(
                X[clustered],
                labels[clustered],
                metric="cosine",
                sample_size=min(int(clustered.sum()), 2000),
                random_state=random_state,
            )
        )
    return {
        "ari": float(adjusted_rand_score(y, labels)),
        "nmi": float(normalized_mutual_info_score(y, labels)),
        "silhouette": silhouette,
        "n_found": int(len(found)),
        "noise": float(1.0 - clustered.mean()),
        "cluster_s": elapsed,
        "labels": labels,
    }


# -- tables and plots --------------------------------------------------------------


def format_table(rows, columns):
    """Render ``rows`` (dicts) as an aligned plain-text table.

    ``columns`` is a list of ``(key, header, format)``; ``format`` is a
    format spec (``".3f"``) or a callable; missing values print as ``-``.
    """
    cells = [[header for _, header, _ in columns]]
    for row in rows:
        line = []
        for key, _, fmt in columns:
            value = row.get(key)
            if value is None or (isinstance(value, float) and np.isnan(value)):
                line.append("-")
            elif callable(fmt):
                line.append(fmt(row))
            else:
                line.append(format(value, fmt))
        cells.append(line)
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    numeric = [i > 0 and all(_numeric(line[i]) for line in cells[1:]) for i in range(len(columns))]

    def render(line):
        parts = [
            text.rjust(width) if right else text.ljust(width)
            for text, width, right in zip(line, widths, numeric)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([render(cells[0]), rule] + [render(line) for line in cells[1:]])


def _numeric(text):
    return text == "-" or bool(re.fullmatch(r"[-+]?[\d.,]+(?:\s*±\s*[\d.]+)?[a-z%]*", text))


def _pyplot():
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError(
            "writing plots needs matplotlib; pip install matplotlib (or 'embedxfer[plot]')."
        ) from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curves(curves, path, title, reference=None):
    """Save accuracy and macro-F1 against training-set size, one line per model, as PNG.

    ``reference`` optionally maps ``"accuracy"`` / ``"f1_macro"`` to a
    baseline score drawn as a dashed line (e.g. the majority class).
    """
    plt = _pyplot()
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    sizes = None
    for label, curve in curves.items():
        sizes = curve["sizes"]
        for ax, key in zip(axes, ("accuracy", "f1_macro")):
            mean, std = curve[key], curve[key + "_std"]
            (line,) = ax.plot(sizes, mean, marker="o", label=label)
            ax.fill_between(sizes, mean - std, mean + std, alpha=0.15, color=line.get_color())
    for ax, key, name in zip(axes, ("accuracy", "f1_macro"), ("accuracy", "macro-F1")):
        if reference and reference.get(key) is not None:
            ax.axhline(
                reference[key], color="grey", linestyle="--", linewidth=1, label="majority class"
            )
        ax.set_xscale("log")
        if sizes is not None:
            ax.set_xticks(sizes)
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("training documents")
        ax.set_ylabel(f"test {name} (mean over folds)")
        ax.grid(True, which="major", alpha=0.3)
    axes[1].legend(loc="lower right")
    fig.suptitle(title)
    _save(fig, path)
    plt.close(fig)


def plot_cluster_maps(maps, y, target_names, path, title):
    """Save one 2-D PCA map per model, documents coloured by their true label, as PNG."""
    from sklearn.decomposition import PCA

    plt = _pyplot()
    n = len(maps)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 4.4), constrained_layout=True, squeeze=False)
    classes = np.unique(y)
    colors = plt.get_cmap("tab10")
    for ax, (label, (X, score)) in zip(axes[0], maps.items()):
        points = PCA(n_components=2, random_state=0).fit_transform(X)
        for i, cls in enumerate(classes):
            mask = y == cls
            name = target_names[i] if target_names is not None else cls
            ax.scatter(
                points[mask, 0],
                points[mask, 1],
                s=6,
                alpha=0.6,
                color=colors(i % 10),
                label=str(name),
            )
        ax.set_title(f"{label}\n{score}", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(loc="best", fontsize=8, markerscale=2)
    fig.suptitle(title)
    _save(fig, path)
    plt.close(fig)


def _save(fig, path):
    """Write the figure atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fig.savefig(tmp, dpi=120, format=path.suffix.lstrip(".") or "png")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
