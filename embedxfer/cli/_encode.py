"""Embedders for resolved model names, and encoding in chunks with warnings tallied."""

import contextlib
import re
import time
import warnings

import numpy as np

from .._core.embedder import BuildOptions, embedder_class


def build_embedder(
    spec, *, batch_size=None, device=None, cache=None, normalize=False, allow_pickle=False
):
    """A fresh embedder for ``spec`` (``None`` for the TF-IDF baseline), built by its kind."""
    if spec.kind == "tfidf":
        return None
    options = BuildOptions(
        pooling=spec.pooling,
        weighting=spec.weighting,
        settings=dict(spec.settings),
        batch_size=None if batch_size is None else int(batch_size),
        device=device,
        cache=cache,
        normalize=bool(normalize),
        allow_pickle=bool(allow_pickle),
    )
    return embedder_class(spec.kind)._from_name(spec.name, options)


class WarningTally:
    """Collect warnings raised while encoding chunk after chunk, reported once at the end.

    Empty-document warnings are dropped: callers count zero rows instead,
    which gives the exact total rather than one warning per chunk.
    """

    def __init__(self):
        self._seen = {}

    @contextlib.contextmanager
    def record(self):
        from .. import EmptyDocumentWarning

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


# How long one chunk should take: progress then moves at least this often,
# while fast embedders still get large chunks (few calls, little overhead).
CHUNK_SECONDS = 0.5


def fitted_chunks(vectors, *, chunk_size=1024):
    """Yield ``(start, stop, vectors)`` chunks of vectors already encoded (by ``fit_transform``)."""
    for start in range(0, len(vectors), chunk_size):
        stop = min(start + chunk_size, len(vectors))
        yield start, stop, vectors[start:stop]


def encode_chunks(embedder, texts, *, chunk_size=1024, tally=None):
    """Yield ``(start, stop, vectors)`` for consecutive chunks of ``texts``.

    ``embedder`` must be fitted. Chunks start at one batch of the embedder
    and grow (in whole batches, up to ``chunk_size``) to about
    ``CHUNK_SECONDS`` each, so that a slow encoder reports progress after
    every batch. With an embedding cache each finished chunk is stored
    before the next starts, so an interrupted run resumes there.
    """
    tally = tally if tally is not None else WarningTally()
    n = len(texts)
    batch = max(1, min(int(getattr(embedder, "batch_size", None) or 32), chunk_size))
    size, start = batch, 0
    while start < n:
        stop = min(start + size, n)
        began = time.perf_counter()
        with tally.record():
            block = embedder.transform(texts[start:stop])
        yield start, stop, block
        rate = (stop - start) / max(time.perf_counter() - began, 1e-6)
        size = int(np.clip(rate * CHUNK_SECONDS // batch * batch, batch, chunk_size))
        start = stop


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
    if embedder._fit_encodes:
        # Its fit encodes every document (e.g. to scale blocks): encode once.
        started = time.perf_counter()
        with tally.record():
            X = np.asarray(embedder.fit_transform(texts), dtype=np.float32)
        if progress is not None:
            progress(len(texts), len(texts), time.perf_counter() - started)
        return {
            "X": X,
            "load_s": 0.0,
            "encode_s": time.perf_counter() - started,
            "n_empty": int(np.count_nonzero(~X.any(axis=1))),
            "warnings": tally.summary(),
            "embedder": embedder,
        }
    started = time.perf_counter()
    with tally.record():
        embedder.fit(texts)
    load_s = time.perf_counter() - started
    n = len(texts)
    X = np.empty((n, embedder.n_features_out_), dtype=np.float32)
    # Shortest first: the small chunks that report progress then pad little, as
    # one whole-corpus call (which sorts by length inside) would.
    order = np.argsort([len(t) for t in texts], kind="stable")
    by_length = [texts[i] for i in order]
    started = time.perf_counter()
    for start, stop, block in encode_chunks(
        embedder, by_length, chunk_size=chunk_size, tally=tally
    ):
        X[order[start:stop]] = block
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
