"""Image transfer learning: pretrained CNN features and fine-tuning.

``ImageEmbedder`` turns images into vectors with a pretrained network,
``ImageClassifier`` fine-tunes it with its early layers frozen;
``ImagePreprocess`` and ``ImageModel`` describe a model's input and wrap a
torch module of your own. Needs the ``image`` extra
(``pip install 'embedxfer[image]'``).
"""

from ._classifier import ImageClassifier
from ._embedder import ImageEmbedder
from ._folder import list_images, load_image_folder
from ._models import ImageModel
from ._preprocess import ImagePreprocess, ImageReadError

__all__ = [
    "ImageClassifier",
    "ImageEmbedder",
    "list_images",
    "load_image_folder",
    "ImageModel",
    "ImagePreprocess",
    "ImageReadError",
]
