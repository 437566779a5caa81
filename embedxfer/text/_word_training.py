"""Training word vectors on an unlabelled corpus (the "develop a source model" route)."""

import os
from pathlib import Path

from .._core.atomic import atomic_path
from .._core.validation import check_documents
from ._tokenize import DEFAULT_TOKEN_PATTERN, compile_tokenizer


def train_word_vectors(
    corpus,
    *,
    method="word2vec",
    vector_size=100,
    window=5,
    min_count=5,
    epochs=5,
    sg=0,
    lowercase=True,
    tokenizer=None,
    token_pattern=DEFAULT_TOKEN_PATTERN,
    workers=1,
    seed=0,
    path=None,
):
    """Train word2vec or fastText vectors with gensim on raw documents.

    Parameters
    ----------
    corpus : iterable of str or iterable of list of str
        Raw documents (tokenised like :class:`WordVectorEmbedder` does), or
        documents already split into tokens.
    method : {"word2vec", "fasttext"}, default="word2vec"
        fastText vectors also embed out-of-vocabulary words from subword
        n-grams (``WordVectorEmbedder(oov="subword")``).
    vector_size : int, default=100
        Dimension of the vectors.
    window : int, default=5
        Largest distance between a word and a context word.
    min_count : int, default=5
        Words seen fewer times are left out of the vocabulary.
    epochs : int, default=5
        Passes over the corpus.
    sg : {0, 1}, default=0
        ``1``: skip-gram; ``0``: CBOW (gensim's parameter of that name).
    lowercase : bool, default=True
        Lowercase raw documents before tokenising.
    tokenizer : None, "split" or callable, default=None
        As in :class:`WordVectorEmbedder`.
    token_pattern : str, default=DEFAULT_TOKEN_PATTERN
        As in :class:`WordVectorEmbedder`.
    workers : int, default=1
        Training threads; 1 with a fixed ``seed`` gives reproducible vectors.
    seed : int, default=0
        Seed of gensim's random initialisation and sampling.
    path : path-like, default=None
        Where to save the vectors in gensim's native format (a pickle), ready
        for ``WordVectorEmbedder(vectors=path, allow_pickle=True)``
        (memory-mapped on load). To share them with others, save
        ``kv.save_word2vec_format(path, binary=True)`` instead, which loads
        without the opt-in.

    Returns
    -------
    vectors : gensim KeyedVectors
        ``FastTextKeyedVectors`` for ``method="fasttext"``.

    Examples
    --------
    >>> from embedxfer import train_word_vectors
    >>> docs = ["the cat sat on the mat", "the dog sat on the log"] * 50
    >>> kv = train_word_vectors(docs, vector_size=16, min_count=1, epochs=2)
    >>> kv.vector_size
    16
    """
    from gensim.models import FastText, Word2Vec

    if method not in ("word2vec", "fasttext"):
        raise ValueError(f"method={method!r}; expected 'word2vec' or 'fasttext'.")
    sentences = _token_lists(corpus, tokenizer, token_pattern, lowercase)
    if not any(sentences):
        raise ValueError("the corpus has no tokens to train on.")
    cls = Word2Vec if method == "word2vec" else FastText
    model = cls(
        sentences=sentences,
        vector_size=vector_size,
        window=window,
        min_count=min_count,
        epochs=epochs,
        sg=sg,
        workers=workers,
        seed=seed,
    )
    kv = model.wv
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            kv.save(str(tmp), sep_limit=0)
            for extra in tmp.parent.glob(f"{tmp.name}.*.npy"):
                os.replace(extra, path.with_name(path.name + extra.name[len(tmp.name) :]))
    return kv


def _token_lists(corpus, tokenizer, token_pattern, lowercase):
    if isinstance(corpus, (str, bytes)):
        raise ValueError("corpus must be an iterable of documents, not a single string.")
    corpus = list(corpus)
    if corpus and all(isinstance(doc, (list, tuple)) for doc in corpus):
        return [list(doc) for doc in corpus]
    docs = check_documents(corpus)
    compiled = compile_tokenizer(tokenizer, token_pattern)
    kind, tok = compiled
    if kind == "regex":
        return [tok.findall(doc.lower() if lowercase else doc) for doc in docs]
    return [tok(doc.lower() if lowercase else doc) for doc in docs]
