"""Image transfer learning: pretrained CNN features and fine-tuning.

``ImageEmbedder`` turns images into vectors with a pretrained network;
``ImagePreprocess`` and ``ImageModel`` describe a model's input and wrap a
torch module of your own. Needs the ``image`` extra
(``pip install 'embedxfer[image]'``).
"""

from ._embedder import ImageEmbedder
from ._models import ImageModel
from ._preprocess import ImagePreprocess, ImageReadError

__all__ = ["ImageEmbedder", "ImageModel", "ImagePreprocess", "ImageReadError"]
