"""Transfer learning with pretrained text encoders inside scikit-learn.

Word-vector estimators load eagerly (numpy, scipy, gensim only); the
torch-backed ones are imported on first access so that ``import embedxfer``
stays fast and works without the ``transformers`` extra.
"""

from ._core.lazy import lazy_names
from .text import EmptyDocumentWarning, WordVectorEmbedder, load_vectors, train_word_vectors

__version__ = "0.1.0"

_LAZY = {
    "SentenceEmbedder": ".text",
    "TransformerClassifier": ".text",
    "ContrastiveEmbedder": ".text",
    "SequenceClassifier": ".text",
    "StaticEmbedder": ".text",
    "EmbeddingCache": "._cache",
    "HybridEmbedder": ".text",
    "describe_clusters": "._clustering.describe",
    "choose_n_clusters": "._clustering.choose_k",
    "ImageEmbedder": ".image",
    "ImageClassifier": ".image",
    "datasets": ".datasets",
}

__all__ = [
    "EmptyDocumentWarning",
    "WordVectorEmbedder",
    "load_vectors",
    "train_word_vectors",
    *_LAZY,
]


__getattr__, __dir__ = lazy_names(__name__, _LAZY)
