"""Images in, model-ready arrays out: input checks, decoding, resize and crop.

Every image, whatever it came as (a file path, encoded bytes, a
``PIL.Image``, a numpy array), is decoded to an RGB ``PIL.Image`` and then
resized and cropped as the model's :class:`ImagePreprocess` says. The
functions here hold no state and release the GIL for most of their work
(Pillow's decoders and resamplers, numpy), so a thread pool runs them in
parallel.
"""

import dataclasses
import hashlib
import io
import numbers
import os
import struct

import numpy as np

from .._core.optional import import_optional, install_hint
from .._core.public import set_module
from .._core.safe_files import read_regular_file
from .._core.validation import column_values
from ..exceptions import ImageReadError as ImageReadError  # re-exported

_BARE_MESSAGE = (
    "Iterable over images expected, {kind} object received; wrap a single image in a list."
)
_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos")


def import_pil():
    """Import Pillow or say which extra installs it."""
    message = f"reading images needs Pillow; {install_hint('image')}"
    import_optional("PIL.ImageOps", message)
    return import_optional("PIL.Image", message)


@set_module("embedxfer.image")
@dataclasses.dataclass(frozen=True)
class ImagePreprocess:
    """How a model wants its input: resize, centre crop, normalise.

    The shorter side of the image is resized to ``resize`` pixels (keeping the
    aspect ratio), the centre ``crop`` x ``crop`` square is cut out, and each
    channel is normalised as ``(pixel / 255 - mean) / std``, the convention
    of torchvision and timm.

    Parameters
    ----------
    resize : int, default=256
        Length of the shorter side after resizing.
    crop : int, default=224
        Side of the square centre crop the network sees.
    mean : tuple of 3 floats, default=(0.485, 0.456, 0.406)
        Per-channel mean of the RGB values scaled to [0, 1] (ImageNet's).
    std : tuple of 3 floats, default=(0.229, 0.224, 0.225)
        Per-channel standard deviation, same scale (ImageNet's).
    interpolation : {"bilinear", "bicubic", "nearest", "lanczos"}, default="bilinear"
        Resampling filter of the resize (Pillow's, antialiased).

    Examples
    --------
    >>> from embedxfer.image import ImagePreprocess
    >>> ImagePreprocess(resize=256, crop=224).crop
    224
    """

    resize: int = 256
    crop: int = 224
    mean: tuple = (0.485, 0.456, 0.406)
    std: tuple = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"

    def __post_init__(self):
        for name in ("resize", "crop"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"ImagePreprocess {name}={value!r}; expected a positive integer.")
        if self.crop > self.resize:
            raise ValueError(
                f"ImagePreprocess crop={self.crop} is larger than resize={self.resize}; "
                "the crop is cut from the resized image, so use crop <= resize."
            )
        for name in ("mean", "std"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 3:
                raise ValueError(f"ImagePreprocess {name} needs 3 values (R, G, B), got {value}.")
            object.__setattr__(self, name, value)
        if min(self.std) <= 0:
            raise ValueError(f"ImagePreprocess std={self.std}; every value must be > 0.")
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(
                f"ImagePreprocess interpolation={self.interpolation!r}; expected one of "
                f"{_INTERPOLATIONS}."
            )

    def __call__(self, image):
        """Resize, crop and normalise an RGB ``PIL.Image``; float32 ``(3, crop, crop)``."""
        return normalise(resize_and_crop(image, self.resize, self.crop, self.interpolation), self)

    @property
    def input_size(self):
        """``(height, width)`` of the arrays :meth:`__call__` returns."""
        return (self.crop, self.crop)


def _resample(name):
    Image = import_pil()
    return {
        "nearest": Image.Resampling.NEAREST,
        "bilinear": Image.Resampling.BILINEAR,
        "bicubic": Image.Resampling.BICUBIC,
        "lanczos": Image.Resampling.LANCZOS,
    }[name]


def resize_shorter(image, size, interpolation="bilinear"):
    """Resize so that the shorter side is ``size`` (torchvision's ``Resize(size)``)."""
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(size * long / short)
    new = (size, new_long) if width <= height else (new_long, size)
    if new == image.size:
        return image
    return image.resize(new, _resample(interpolation))


# Images up to this aspect ratio are resized whole (at most 4 x resize^2 pixels).
_WHOLE_RESIZE_ASPECT = 4


def limit_aspect(image, ratio=4.0):
    """The centre of ``image`` with its long side at most ``ratio`` times its short side.

    Training keeps each image resized to the model's ``resize`` for random
    crops; a 1 x 8000 strip would become 256 x 2,048,000 pixels. Random crops
    of usual aspect ratios never fit in such a strip anyway (they fall back
    to the centre), so cutting its centre first loses nothing they use.
    """
    width, height = image.size
    short, long = min(width, height), max(width, height)
    if long <= ratio * short:
        return image
    keep = int(ratio * short)
    if width > height:
        left = (width - keep) // 2
        return image.crop((left, 0, left + keep, height))
    top = (height - keep) // 2
    return image.crop((0, top, width, top + keep))


def resize_and_crop(image, resize, crop, interpolation="bilinear"):
    """:func:`resize_shorter` then :func:`centre_crop`, in memory bounded by ``resize``.

    An image whose long side stays within ``_WHOLE_RESIZE_ASPECT`` times its
    short side is resized whole and cropped, exactly as torchvision does.
    A longer strip is not: only the crop's box, mapped back onto the
    original, is resampled (Pillow's ``resize(box=...)``, which reads the
    filter's support beyond the box edges as a full resize does; pixels may
    differ by one level from rounding), since a 1 x 8000 image would
    otherwise be resized to 256 x 2,048,000 pixels first.
    """
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(resize * long / short)
    new_w, new_h = (resize, new_long) if width <= height else (new_long, resize)
    if (new_w, new_h) == image.size:
        return centre_crop(image, crop)
    if new_long <= _WHOLE_RESIZE_ASPECT * resize:
        return centre_crop(image.resize((new_w, new_h), _resample(interpolation)), crop)
    top = int(round((new_h - crop) / 2.0))
    left = int(round((new_w - crop) / 2.0))
    sx, sy = width / new_w, height / new_h
    box = (left * sx, top * sy, (left + crop) * sx, (top + crop) * sy)
    return image.resize((crop, crop), _resample(interpolation), box=box)


def centre_crop(image, size):
    """The centre ``size`` x ``size`` square (torchvision's ``CenterCrop`` rounding)."""
    width, height = image.size
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def normalise(image, spec):
    """An RGB image as a float32 ``(3, H, W)`` array normalised with ``spec``'s mean and std."""
    scale = (1.0 / (255.0 * np.asarray(spec.std))).astype(np.float32)
    offset = (-np.asarray(spec.mean) / np.asarray(spec.std)).astype(np.float32)
    pixels = np.asarray(image, dtype=np.float32)
    pixels = pixels * scale + offset
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


# -- input checks -------------------------------------------------------------


def check_images(X, *, allow_empty=False):
    """Return ``X`` as a list of images (paths, bytes, PIL images or arrays).

    Accepted: a list or tuple, a 1-D object array, a Series or one-column
    table of pandas, polars or pyarrow, or a 4-D array ``(n, H, W, channels)`` of pixels.
    Each item is a path (str or path-like), the bytes of an image file, a
    ``PIL.Image.Image`` or a numpy array; anything else raises an error
    naming the item's index.
    """
    if isinstance(X, (str, bytes, os.PathLike)):
        kind = "path" if not isinstance(X, bytes) else "bytes"
        raise ValueError(_BARE_MESSAGE.format(kind=kind))
    if X is None:
        raise ValueError("Expected an iterable of images, got None.")
    if _is_pil(X):
        raise ValueError(_BARE_MESSAGE.format(kind="PIL.Image"))
    X = column_values(X, "image")
    if isinstance(X, np.ndarray):
        if X.dtype.kind == "S":
            raise ValueError(
                "Got a numpy bytes array, which drops each item's trailing zero bytes; pass "
                "image bytes as a list or an object array."
            )
        if X.dtype == object or X.dtype.kind == "U":  # items: paths, bytes, images
            if X.ndim == 2 and X.shape[1] == 1:
                X = X[:, 0]
            if X.ndim != 1:
                raise ValueError(f"Expected a 1-D array of images, got shape {X.shape}.")
            items = X.tolist()
        elif X.ndim == 4 or (X.ndim == 3 and X.shape[-1] not in (3, 4)):
            items = list(X)  # a stack of (H, W, C) or (H, W) images
        elif X.ndim in (2, 3):
            raise ValueError(
                f"Got one image array of shape {X.shape}; pass a list of images "
                "or a 4-D array (n_images, height, width, channels)."
            )
        else:
            raise ValueError(f"Expected images, got an array of shape {X.shape}.")
    else:
        try:
            items = list(X)
        except TypeError:
            raise TypeError(f"Expected an iterable of images, got {type(X).__name__}.") from None
    if not items and not allow_empty:
        raise ValueError("Found 0 images; at least one is required.")
    for index, item in enumerate(items):
        if isinstance(item, (str, bytes, bytearray, os.PathLike, np.ndarray)) or _is_pil(item):
            continue
        if item is None or (isinstance(item, numbers.Real) and item != item):
            raise ValueError(
                f"image {index} is {item!r} (missing); fill or drop missing images first."
            )
        raise TypeError(
            f"image {index} is of type {type(item).__name__} ({item!r:.40}); expected a file "
            "path, the bytes of an image file, a PIL.Image or a numpy array."
        )
    return items


def _is_pil(item):
    module = type(item).__module__
    if not module.startswith("PIL."):
        return False
    Image = import_pil()
    return isinstance(item, Image.Image)


def describe(item):
    """A short description of an image for error messages."""
    if isinstance(item, (str, os.PathLike)):
        return repr(os.fspath(item))
    if isinstance(item, (bytes, bytearray)):
        return f"{len(item)} bytes"
    if isinstance(item, np.ndarray):
        return f"array of shape {item.shape}"
    return type(item).__name__


# -- content keys ---------------------------------------------------------------


def content_key(item):
    """A hex BLAKE2b-128 digest of the image's content (the file's bytes for a path).

    Two copies of the same file under different names share a key; a file
    rewritten in place gets a new one.
    """
    digest = hashlib.blake2b(digest_size=16)
    if isinstance(item, (str, os.PathLike)):
        digest.update(b"file:")
        with open(item, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    elif isinstance(item, (bytes, bytearray)):
        digest.update(b"file:")
        digest.update(item)
    elif isinstance(item, np.ndarray):
        digest.update(f"array:{item.dtype.str}:{item.shape}:".encode())
        digest.update(np.ascontiguousarray(item).tobytes())
    else:  # PIL image: its decoded pixels
        image = item
        digest.update(f"pil:{image.mode}:{image.size}:".encode())
        digest.update(image.tobytes())
    return digest.hexdigest()


# -- decoding -------------------------------------------------------------------


def _open_bounded(data, min_side):
    """Open encoded image bytes with memory bounded by the picture's use.

    Pillow's own check warns above ``Image.MAX_IMAGE_PIXELS`` and fails
    above twice that; here the header is read without it and the size
    decided: a JPEG is decoded at a reduced scale (``draft``) keeping the
    shorter side at least ``min_side``; any other image over the limit is a
    clear error, never a warning.
    """
    Image = import_pil()
    image = _open_header(io.BytesIO(data))
    width, height = image.size
    limit = Image.MAX_IMAGE_PIXELS
    if min_side and image.format == "JPEG" and width * height > _DRAFT_PIXELS:
        scale = max(1, min(width, height) // min_side)
        image.draft("RGB", (max(1, width // scale), max(1, height // scale)))
        width, height = image.size
    if limit is not None and width * height > limit:
        raise ImageReadError(
            f"the image is {width} x {height} = {width * height} pixels, more than the "
            f"{limit} decoded at most (PIL.Image.MAX_IMAGE_PIXELS); shrink it first"
        )
    return image


# JPEGs larger than this are decoded at a reduced scale (camera photos of 24
# megapixels and more); smaller ones are decoded whole, as torchvision does.
_DRAFT_PIXELS = 20_000_000


def _open_header(fh):
    """``Image.open`` without its decompression-bomb warning: the caller checks the size."""
    Image = import_pil()
    Image.preinit()
    prefix = fh.read(16)
    for init in (None, Image.init):
        if init is not None:
            init()
        for name in Image.ID:
            factory, accept = Image.OPEN[name]
            accepted = accept(prefix) if accept is not None else True
            if isinstance(accepted, str) or not accepted:
                continue
            fh.seek(0)
            try:
                return factory(fh, "")
            except (SyntaxError, IndexError, TypeError, struct.error, OSError):
                continue
    fh.seek(0)
    return Image.open(fh)  # raises Pillow's UnidentifiedImageError naming the problem


def to_rgb(item, min_side=None):
    """Decode one image to an RGB ``PIL.Image`` (EXIF orientation applied).

    ``min_side`` (the model's resize) lets a large JPEG be decoded at a
    reduced scale whose shorter side is still at least that long.

    Every Pillow mode is mapped to the picture it shows (:func:`as_rgb`:
    16-bit grayscale scaled, not clipped; alpha dropped, as torchvision's
    and timm's loaders do); an animated file gives its first frame. Float
    arrays must hold values in [0, 1] (scikit-image's convention) and are
    scaled to 0-255; uint16 arrays are scaled from 0-65535.
    """
    Image = import_pil()
    if isinstance(item, (str, os.PathLike)):
        from ._folder import MAX_IMAGE_BYTES

        image = _open_bounded(read_regular_file(item, MAX_IMAGE_BYTES), min_side)
    elif isinstance(item, (bytes, bytearray)):
        image = _open_bounded(bytes(item), min_side)
    elif isinstance(item, np.ndarray):
        return Image.fromarray(_array_to_uint8(item)).convert("RGB")
    else:
        image = item
    if getattr(image, "is_animated", False):
        image.seek(0)
    image.load()  # decode now, so that a truncated file fails here
    image = _exif_transpose(image)
    return as_rgb(image)


# Modes whose pixels hold more than 8 bits: scaled to 0-255, never clipped.
_SIXTEEN_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "I;16S")


def as_rgb(image):
    """The RGB picture a decoded image of any Pillow mode shows.

    Pillow's own ``convert("RGB")`` clips 16- and 32-bit grayscale to 0-255
    (a 16-bit PNG comes out almost white); here they are scaled instead:
    ``I;16*`` and ``I`` from 0-65535 (the range 16-bit files use; values
    outside it are clipped), ``F`` from [0, 1] or, when larger values occur,
    [0, 255]. Images with an alpha channel (``LA``, ``La``, ``PA``, ``RGBA``,
    ``RGBa``, palette images with a transparent colour) keep their colours
    and drop the alpha, as torchvision's and timm's loaders do; ``1``,
    ``L``, ``P``, ``CMYK``, ``YCbCr``, ``LAB`` and ``HSV`` use Pillow's
    conversions.
    """
    Image = import_pil()
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _SIXTEEN_BIT_MODES:
        pixels = np.asarray(image).astype(np.float32)
        gray = np.clip(np.rint(pixels / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if mode == "F":
        return Image.fromarray(_float_gray_to_uint8(np.asarray(image))).convert("RGB")
    if mode == "La":  # luminance premultiplied by alpha
        pixels = np.asarray(image).astype(np.float32)
        alpha = pixels[..., 1]
        gray = np.where(alpha > 0, pixels[..., 0] * 255.0 / np.maximum(alpha, 1), 0)
        return Image.fromarray(np.clip(np.rint(gray), 0, 255).astype(np.uint8)).convert("RGB")
    if mode in ("LA", "PA") or (mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")  # the palette's colours, the alpha apart
    return image.convert("RGB")


def _float_gray_to_uint8(pixels):
    if not np.isfinite(pixels).all():
        raise ImageReadError("a float (mode F) image holds NaN or infinite values")
    low, high = float(pixels.min()), float(pixels.max())
    if low < 0 or high > 255:
        raise ImageReadError(
            f"a float (mode F) image must hold values in [0, 1] or [0, 255], found "
            f"[{low:.3g}, {high:.3g}]; scale it first"
        )
    scale = 255.0 if high <= 1 else 1.0
    return np.clip(np.rint(pixels * scale), 0, 255).astype(np.uint8)


def _exif_transpose(image):
    import PIL.ImageOps

    try:
        orientation = image.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block does not make the pixels unusable
        return image
    if orientation in (None, 1):
        return image
    return PIL.ImageOps.exif_transpose(image)


def _array_to_uint8(array):
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4))):
        raise ValueError(
            f"an image array must be (height, width), (height, width, 3) or "
            f"(height, width, 4), got shape {array.shape}"
        )
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if array.dtype == np.uint16:  # 16-bit pixels, as 16-bit files hold them
        return np.rint(array / 257.0).astype(np.uint8)
    if array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise ValueError("a float image array holds NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        if low < 0 or high > 1:
            raise ValueError(
                f"a float image array must hold values in [0, 1], found [{low:.3g}, {high:.3g}]; "
                "scale it, or pass uint8 pixels in 0-255"
            )
        return np.round(array * 255).astype(np.uint8)
    raise ValueError(
        f"an image array must be uint8 (0-255), uint16 (0-65535) or float (0-1), got "
        f"dtype {array.dtype}"
    )


def load_and_preprocess(item, preprocess):
    """``preprocess(to_rgb(item))`` as a float32 array; errors come back, not raised.

    Returns ``(array, None)`` or ``(None, exception)``, so that a thread
    pool can hand failures to the caller, which knows the image's index.
    """
    try:
        array = preprocess(to_rgb(item, getattr(preprocess, "resize", None)))
        if not isinstance(array, np.ndarray):  # a user's transform returning a tensor
            array = array.detach().cpu().numpy() if hasattr(array, "detach") else np.asarray(array)
        return np.asarray(array, dtype=np.float32), None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as err:
        return None, err
    except Exception as err:  # Pillow plugins raise assorted types on bad files
        if type(err).__module__.startswith("PIL"):
            return None, err
        raise


# -- training-time augmentation ---------------------------------------------------


def random_resized_crop(image, spec, rng, scale=(0.25, 1.0), ratio=(3 / 4, 4 / 3), flip=True):
    """A random crop of ``image`` resized to ``spec.crop``, maybe mirrored, normalised.

    The crop covers a random fraction ``scale`` of the area with a random
    aspect ratio in ``ratio`` (log-uniform), as torchvision's
    ``RandomResizedCrop``; with ``flip``, half the crops are mirrored left to
    right. ``rng`` is a ``numpy.random.Generator``; falls back to the centre
    crop when no random box fits in ten tries.
    """
    width, height = image.size
    area = width * height
    box = None
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
        w = int(round(np.sqrt(target * aspect)))
        h = int(round(np.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            left = int(rng.integers(0, width - w + 1))
            top = int(rng.integers(0, height - h + 1))
            box = (left, top, left + w, top + h)
            break
    if box is None:
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        box = (left, top, left + side, top + side)
    crop = image.resize((spec.crop, spec.crop), _resample(spec.interpolation), box=box)
    if flip and rng.random() < 0.5:
        Image = import_pil()
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return normalise(crop, spec)
