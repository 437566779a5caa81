"""Text transfer learning: word vectors, transformer encoders and static tables.

Every name here is also importable from ``embedxfer`` itself. The
word-vector ones (numpy, scipy and gensim only) load eagerly; the
torch-backed ones (``SentenceEmbedder``, ``TransformerClassifier``,
``ContrastiveEmbedder``, ``SequenceClassifier``, ``StaticEmbedder``,
``HybridEmbedder``) on first access, as in the top-level package.
"""

import importlib

from ._vector_sources import load_vectors
from ._word import EmptyDocumentWarning, WordVectorEmbedder
from ._word_training import train_word_vectors

_LAZY = {
    "SentenceEmbedder": "._sentence",
    "TransformerClassifier": "._transformer_classifier",
    "ContrastiveEmbedder": "._contrastive",
    "SequenceClassifier": "._sequence",
    "StaticEmbedder": "._static",
    "HybridEmbedder": "._hybrid",
}

__all__ = [
    "EmptyDocumentWarning",
    "WordVectorEmbedder",
    "load_vectors",
    "train_word_vectors",
    *_LAZY,
]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'embedxfer.text' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
