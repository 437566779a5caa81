"""Text transfer learning: word vectors, transformer encoders and static tables.

Every name here is also importable from ``embedxfer`` itself. The
word-vector ones (numpy, scipy and gensim only) load eagerly; the
torch-backed ones (``SentenceEmbedder``, ``TransformerClassifier``,
``ContrastiveEmbedder``, ``SequenceClassifier``, ``StaticEmbedder``,
``HybridEmbedder``) on first access, as in the top-level package.
"""

from .._core.lazy import lazy_names
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


__getattr__, __dir__ = lazy_names(__name__, _LAZY)
