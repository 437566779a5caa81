"""Fine-tuning a pretrained image network behind ``fit`` / ``predict``.

``ImageClassifier`` puts a new softmax layer on the pooled features of a
pretrained backbone and trains it with none, the top ``k`` or all of the
backbone's blocks unfrozen. The outline of ``fit`` is ``TorchClassifierMixin``'s
(in ``embedxfer._torch.classifier``), with the training loop, early stopping,
class weights and seeding shared with ``TransformerClassifier`` and
``SequenceClassifier``; the saved format is ``_torch.persistence``'s. What is
particular to images is kept in small methods: building the trainable network,
making the inputs of a batch, and running the frozen lower blocks once.
"""

from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from .._core.base import RawInputMixin
from .._core.device import import_torch
from .._core.param_validation import Hint, Interval, Rule
from .._core.public import set_module
from .._torch import persistence as tp
from .._torch.classifier import TorchClassifierMixin
from .._torch.data import batch_ranges, check_xy
from .._torch.loop import TrainingStage, new_head, saved_head
from .._torch.settings import (
    HEAD_ONLY_EPOCHS,
    TRAINING_PARAMETER_CONSTRAINTS,
    UNFREEZE_CONSTRAINT,
    autocast,
    default_body_lr,
    prediction_precision,
    resolved_epochs,
    resolved_unfreeze,
)
from ._embedder import (
    pool_map,
    preprocessed_batches,
    read_error,
    resolve_threads,
    to_device,
)
from ._models import DEFAULT_IMAGE_MODEL, load_backbone, model_problem
from ._preprocess import (
    ImagePreprocess,
    check_images,
    import_pil,
    limit_aspect,
    random_resized_crop,
    resize_shorter,
    to_rgb,
)

_PREDICT_BATCH_FACTOR = 2
# Standard deviation of the new head's initial weights.
_HEAD_STD = 0.01


@dataclass
class _PreparedBackbone:
    """What ``_prepare_training`` hands the training stages and the fitted runtime."""

    runtime: object
    names: list
    n_blocks: int
    unfreeze: object


class _ImageRuntime:
    """Live torch objects of a fitted classifier; never pickled.

    ``frozen`` is the shared pretrained backbone, of which parts ``0 .. cut-1``
    run as they are; ``trained`` holds the trained copies of parts
    ``cut ..`` (empty when only the head trains).
    """

    def __init__(self, frozen, trained, cut, head, device, amp_dtype):
        self.frozen = frozen
        self.trained = trained
        self.cut = cut
        self.head = head
        self.device = device
        self.amp_dtype = amp_dtype

    @property
    def preprocess(self):
        return self.frozen.preprocess

    def lower(self, batch):
        """Frozen parts below the cut, without gradients."""
        torch = import_torch()
        with torch.no_grad():
            if self.cut == 0:
                return batch
            return self.frozen.run(batch, self.cut - 1)

    def upper(self, x):
        """Trained parts and pooling: the fine-tuned feature vectors."""
        for part in self.trained:
            x = part(x)
        return pool_map(x, "avg")

    def run(self, items, batch_size, n_threads, what):
        """Fine-tuned vectors (``"pooled"``) or logits (``"logits"``) of images, in order."""
        torch = import_torch()
        width = self.head.linear.in_features if what == "pooled" else self.head.linear.out_features
        out = np.empty((len(items), width), dtype=np.float32)
        batches = preprocessed_batches(items, self.preprocess, batch_size, n_threads)
        try:
            with torch.inference_mode(), autocast(self.device, self.amp_dtype):
                for start, arrays, errors in batches:
                    for offset, err in enumerate(errors):
                        if err is not None:
                            index = start + offset
                            raise read_error(index, items[index], err, hint=None) from err
                    batch = to_device(torch.from_numpy(np.stack(arrays)), self.device)
                    vec = self.upper(self.lower(batch))
                    if what == "logits":
                        vec = self.head(vec.float())
                    out[start : start + len(arrays)] = vec.float().cpu().numpy()
        finally:
            batches.close()
        return out


def _set_training_mode(modules, training):
    """Train / eval mode, with batch norm kept in eval mode (frozen statistics).

    Fine-tuning on small data sets with small batches: the running
    statistics learned on ImageNet are better estimates than those of a
    batch of 16 images, so they stay as they are while the affine weights
    train (Keras' and timm's advice for transfer learning).
    """
    torch = import_torch()
    for module in modules:
        module.train(training)
        if training:
            for sub in module.modules():
                if isinstance(sub, torch.nn.modules.batchnorm._BatchNorm):
                    sub.eval()


@set_module("embedxfer")
class ImageClassifier(TorchClassifierMixin, RawInputMixin, ClassifierMixin, BaseEstimator):
    """Fine-tune a pretrained image network with a new softmax head.

    The images go through the pretrained backbone, the final feature map is
    averaged over its positions, and a new linear layer with a softmax maps
    the pooled vector to the classes. ``unfreeze`` decides how much of the
    backbone trains along with the new layer: nothing (the backbone is a
    fixed feature extractor), the top ``k`` blocks (the early, generic layers
    stay frozen, the later, task-specific ones adapt), or everything.
    ``GridSearchCV`` can choose it: freeze most with little data, less with
    more.

    Parameters
    ----------
    model : str or ImageModel, default="efficientnet-lite0"
        The pretrained backbone, as for :class:`ImageEmbedder`: the packaged
        EfficientNet-Lite0 (offline; 16 blocks), a timm model name (its
        stages are the blocks) or an :class:`~embedxfer.image.ImageModel`.
    unfreeze : int or "all", default=0
        ``0``: only the head trains, on pooled features computed once at the
        start of ``fit`` (fast). ``k``: the top ``k`` blocks and the layers
        above them (Lite0: the final 1x1 convolution) train too; the frozen
        blocks below run once over the training images unless ``augment``.
        ``"all"``: every backbone parameter trains, the stem included.
        Batch-norm statistics stay frozen; their scale and shift train.
    lr : float, default=3e-3
        Peak learning rate of the new head while it trains alone.
    body_lr : float, default=None
        Peak learning rate of the fine-tuning stage (``unfreeze`` != 0), for
        the unfrozen blocks and the head alike; ``None`` means ``lr / 30``
        (1e-4 with the default ``lr``).
    epochs : int, default=None
        Passes over the training data: of the head with ``unfreeze=0``, of
        the fine-tuning stage otherwise. ``None``: 30 for the head alone;
        for fine-tuning 3, or as many as make 40 optimizer steps on small
        data sets (at most 20).
    head_epochs : int, default=None
        With ``unfreeze`` != 0, the new head first trains alone for this many
        epochs on the frozen network's features, then the unfrozen blocks
        join it at ``body_lr`` (the two-stage recipe: gradients through a
        random head would disturb the pretrained weights). ``None``: 30;
        ``0`` starts fine-tuning from the random head.
    batch_size : int, default=16
        Images per training step; prediction uses batches twice as large.
    weight_decay : float, default=0.01
        AdamW weight decay (not applied to biases and norm layers).
    warmup_fraction : float, default=0.1
        Fraction of the steps over which the learning rates rise linearly;
        they then decay linearly to 0.
    dropout : float, default=0.2
        Dropout before the new head (EfficientNet-Lite0's own rate).
    augment : bool, default=False
        Random resized crops (25-100% of the area, aspect 3/4 to 4/3) and
        left-right flips of the training images, drawn anew every epoch;
        validation and prediction use the model's centre crop. The frozen
        blocks then run on every batch, so training is slower.
    validation_fraction : float, default=None
        Hold out this share of the training images (stratified), compute the
        validation loss after every epoch, stop after ``n_iter_no_change``
        epochs without improvement and keep the best epoch's weights.
    n_iter_no_change : int, default=2
        Patience of early stopping, in epochs.
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the cross-entropy loss.
    random_state : int, RandomState instance or None, default=None
        Seeds the head's initialisation, the shuffling, the augmentation, the
        validation split and dropout. With an int, ``fit`` is deterministic
        on the CPU; torch's global random state is restored afterwards.
    device : str, default=None
        ``None`` or ``"auto"`` picks CUDA, then MPS, then the CPU.
    precision : {"auto", "float32", "float16", "bfloat16"}, default="auto"
        Mixed precision of the forward passes on a GPU (``"auto"``: bfloat16
        where supported, else float16); float32 on the CPU.
    n_jobs : int or None, default=None
        Threads that decode and resize images (``None``: the CPUs, at most 8).
    verbose : int, default=0
        ``1`` shows a progress bar during ``fit``; ``2`` also prints the loss
        of every epoch.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels, sorted.
    n_features_out_ : int
        Width of the pooled feature vector (1280 for Lite0).
    n_blocks_ : int
        Blocks of the backbone that ``unfreeze`` counts.
    trainable_parameters_ : list of str
        Names of the backbone parameters that ``fit`` trained.
    device_ : str
        Device the network runs on.
    loss_curve_, validation_loss_curve_, best_validation_loss_ : list, list, float
        Training and validation loss per epoch (the head-alone epochs
        first); lowest validation loss.
    n_epochs_, n_iter_, fit_time_ : int, int, float
        Epochs run, optimizer steps taken, seconds of training.

    See Also
    --------
    ImageEmbedder : Frozen features for any scikit-learn model.
    TransformerClassifier : The same fine-tuning interface for text.

    Examples
    --------
    >>> import numpy as np
    >>> from embedxfer import ImageClassifier
    >>> rng = np.random.default_rng(0)
    >>> dark = rng.integers(0, 60, (4, 40, 40, 3), dtype=np.uint8)
    >>> light = rng.integers(190, 256, (4, 40, 40, 3), dtype=np.uint8)
    >>> X, y = np.concatenate([dark, light]), ["dark"] * 4 + ["light"] * 4
    >>> clf = ImageClassifier(epochs=20, lr=1e-2, random_state=0).fit(X, y)
    >>> clf.predict(X[[0, -1]])
    array(['dark', 'light'], dtype='<U5')
    """

    def __init__(
        self,
        *,
        model=DEFAULT_IMAGE_MODEL,
        unfreeze=0,
        lr=3e-3,
        body_lr=None,
        epochs=None,
        head_epochs=None,
        batch_size=16,
        weight_decay=0.01,
        warmup_fraction=0.1,
        dropout=0.2,
        augment=False,
        validation_fraction=None,
        n_iter_no_change=2,
        class_weight=None,
        random_state=None,
        device=None,
        precision="auto",
        n_jobs=None,
        verbose=0,
    ):
        self.model = model
        self.unfreeze = unfreeze
        self.lr = lr
        self.body_lr = body_lr
        self.epochs = epochs
        self.head_epochs = head_epochs
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.warmup_fraction = warmup_fraction
        self.dropout = dropout
        self.augment = augment
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.class_weight = class_weight
        self.random_state = random_state
        self.device = device
        self.precision = precision
        self.n_jobs = n_jobs
        self.verbose = verbose

    _parameter_constraints = {
        **TRAINING_PARAMETER_CONSTRAINTS,
        "model": [Rule(model_problem, "a model name or an embedxfer.image.ImageModel")],
        "unfreeze": UNFREEZE_CONSTRAINT,
        "body_lr": [Interval(Real, 0, None, closed="neither"), None],
        "epochs": [Interval(Integral, 1, None), None],
        "head_epochs": [
            Interval(Integral, 0, None),
            None,
            Hint("0 starts fine-tuning from the random head."),
        ],
        "augment": ["boolean"],
        "n_jobs": [
            Interval(Integral, None, -1),
            Interval(Integral, 1, None),
            None,
            Hint("Pass None, -1 or a positive integer."),
        ],
    }

    # ------------------------------------------------------------ checks
    def _resolved_epochs(self, unfreeze, n_train):
        # With augmentation the head trains on new crops every epoch, as fine-tuning does.
        head_only = unfreeze == 0 and not self.augment
        return resolved_epochs(self.epochs, head_only, n_train, self.batch_size)

    # --------------------------------------------------------------- fit
    def fit(self, X, y):
        """Train the head (and the unfrozen blocks) on labelled images.

        Parameters
        ----------
        X : iterable of images
            File paths, bytes, ``PIL.Image`` objects or numpy arrays, as for
            :meth:`ImageEmbedder.transform`.
        y : array-like of shape (n_samples,)
            Class labels (two or more classes).

        Returns
        -------
        self : ImageClassifier
            The fitted estimator.
        """
        return super().fit(X, y)

    def _check_fit_data(self, X, y):
        import_pil()
        return check_xy(X, y, check_images, "image")

    def _set_training_mode(self, modules, training):
        _set_training_mode(modules, training)

    def _prepare_training(self, data, settings):
        unfreeze = resolved_unfreeze(self.unfreeze)
        runtime, names, n_blocks = self._build_network(
            unfreeze, data.classes, settings.seed, settings.device, settings.amp_dtype
        )
        if self.augment and not isinstance(runtime.preprocess, ImagePreprocess):
            raise ValueError(
                "augment=True needs the model's preprocessing as an ImagePreprocess (to crop "
                "at random); this model's is a callable. Use augment=False."
            )
        return _PreparedBackbone(runtime=runtime, names=names, n_blocks=n_blocks, unfreeze=unfreeze)

    def _training_stages(self, prepared, data, settings):
        runtime, unfreeze = prepared.runtime, prepared.unfreeze
        train_items = [data.inputs[i] for i in data.train_idx]
        val_items = None if data.val_idx is None else [data.inputs[i] for i in data.val_idx]
        val_inputs = None if val_items is None else self._lower_outputs(runtime, val_items)
        # Without augmentation the frozen parts run once over the training images.
        train_lower = None if self.augment else self._lower_outputs(runtime, train_items)
        desc = f"ImageClassifier(unfreeze={unfreeze})"
        if unfreeze != 0 and self._head_epochs() > 0:
            # Stage 1: the new head alone on the frozen network's features.
            centre = (
                train_lower
                if train_lower is not None
                else self._lower_outputs(runtime, train_items)
            )
            train_features = self._features(runtime, centre)
            val_features = None if val_inputs is None else self._features(runtime, val_inputs)
            yield TrainingStage(
                groups=[(list(runtime.head.named_parameters()), settings.lr)],
                modules=[runtime.head],
                epochs=self._head_epochs(),
                batch_logits=lambda idx: runtime.head(train_features[idx]),
                val_logits=None
                if val_features is None
                else self._batched_logits(
                    lambda rows: runtime.head(val_features[rows]), len(data.val_idx)
                ),
                desc=f"{desc} head",
            )
        train_inputs = self._training_inputs(runtime, train_items, train_lower, settings.seed)
        head_params = list(runtime.head.named_parameters())
        body = [(f"backbone.{n}", p) for n, p in runtime.trained.named_parameters()]
        if unfreeze == 0:
            groups, rate_names = [(head_params, settings.lr)], ("lr",)
        else:
            # Stage 2: head and unfrozen blocks together, at the body's low rate.
            groups, rate_names = [(head_params + body, self._body_lr())], ("body_lr", "lr")
        yield TrainingStage(
            groups=groups,
            modules=list(runtime.trained) + [runtime.head],
            epochs=self._resolved_epochs(unfreeze, len(data.train_idx)),
            batch_logits=lambda idx: runtime.head(runtime.upper(train_inputs(idx))),
            val_logits=None
            if val_inputs is None
            else self._batched_logits(
                lambda rows: runtime.head(runtime.upper(val_inputs[rows])), len(data.val_idx)
            ),
            desc=desc,
            rate_names=rate_names,
        )

    def _batched_logits(self, logits_of, n_rows):
        """A function giving the logits of ``n_rows`` rows from ``logits_of(slice)``, batched."""
        torch = import_torch()

        def logits():
            return torch.cat(
                [logits_of(slice(a, b)) for a, b in batch_ranges(n_rows, self._predict_batch())]
            )

        return logits

    def _fitted_runtime(self, prepared):
        self.n_features_out_ = prepared.runtime.head.linear.in_features
        self.n_blocks_ = prepared.n_blocks
        self.trainable_parameters_ = list(prepared.names)
        return prepared.runtime

    def _head_epochs(self):
        return HEAD_ONLY_EPOCHS if self.head_epochs is None else self.head_epochs

    def _body_lr(self):
        return default_body_lr(self.body_lr, self.lr)

    def _features(self, runtime, lower):
        """Pooled features of the still-pretrained upper parts, in evaluation mode."""
        torch = import_torch()
        _set_training_mode(list(runtime.trained), False)
        with torch.no_grad(), autocast(runtime.device, runtime.amp_dtype):
            return torch.cat(
                [
                    runtime.upper(lower[a:b]).float()
                    for a, b in batch_ranges(len(lower), self._predict_batch())
                ]
            )

    # ------------------------------------------- image-specific pieces
    def _build_network(self, unfreeze, classes, seed, device, amp_dtype):
        """Runtime with trainable copies of the unfrozen parts and a new head."""
        torch = import_torch()
        frozen = load_backbone(self.model, device)
        n_blocks = len(frozen.blocks)
        if unfreeze != "all" and unfreeze > n_blocks:
            raise ValueError(
                f"unfreeze={unfreeze} but the model has {n_blocks} blocks; use at most "
                f"{n_blocks}, or unfreeze='all' to train the stem too."
            )
        cut = frozen.first_trained_part(unfreeze)
        trained = torch.nn.ModuleList(
            [frozen.copy_part(i) for i in range(cut, len(frozen.parts))]
        ).to(device)
        trained.requires_grad_(True)
        names = [
            f"parts.{cut + int(n.split('.', 1)[0])}.{n.split('.', 1)[1]}"
            for n, _ in trained.named_parameters()
        ]
        width = self._probe_width(frozen, device)
        head = new_head(width, len(classes), self.dropout, seed, _HEAD_STD).to(device)
        return _ImageRuntime(frozen, trained, cut, head, device, amp_dtype), names, n_blocks

    def _probe_width(self, frozen, device):
        from ._embedder import probe_width

        return probe_width(frozen, len(frozen.parts) - 1, device)

    def _lower_outputs(self, runtime, items):
        """Outputs of the frozen parts below the cut for ``items`` (centre crops), stacked."""
        torch = import_torch()
        outputs = []
        batches = preprocessed_batches(
            items, runtime.preprocess, self._predict_batch(), resolve_threads(self.n_jobs)
        )
        try:
            with torch.inference_mode():
                for start, arrays, errors in batches:
                    for offset, err in enumerate(errors):
                        if err is not None:
                            index = start + offset
                            raise read_error(index, items[index], err, hint=None) from err
                    batch = to_device(torch.from_numpy(np.stack(arrays)), runtime.device)
                    outputs.append(runtime.lower(batch))
        finally:
            batches.close()
        # Leave inference mode so that the tensors can feed a graph with gradients.
        return torch.cat(outputs).clone() if outputs else None

    def _training_inputs(self, runtime, train_items, lower, seed):
        """A function from batch rows (``0 .. n_train - 1``) to the trainable parts' input.

        ``lower``: the frozen parts' outputs for the training images (centre
        crops), or ``None`` with augmentation, where every batch is cropped anew
        and runs through the frozen parts.
        """
        torch = import_torch()
        if lower is not None:

            def inputs(idx):
                return lower[torch.as_tensor(idx, device=lower.device)]

            return inputs
        spec = runtime.preprocess
        images = self._decoded(train_items, spec)
        rng = np.random.default_rng(seed)

        def augmented(idx):
            arrays = [random_resized_crop(images[i], spec, rng) for i in idx]
            batch = to_device(torch.from_numpy(np.stack(arrays)), runtime.device)
            return runtime.lower(batch)

        return augmented

    def _decoded(self, items, spec):
        """RGB images resized to the model's resize length, decoded once in threads."""
        from concurrent.futures import ThreadPoolExecutor

        def load(item):
            try:
                image = limit_aspect(to_rgb(item, spec.resize))
                return resize_shorter(image, spec.resize, spec.interpolation), None
            except (OSError, ValueError, SyntaxError, EOFError) as err:
                return None, err

        with ThreadPoolExecutor(resolve_threads(self.n_jobs)) as pool:
            results = list(pool.map(load, items))
        for index, (_, err) in enumerate(results):
            if err is not None:
                raise read_error(index, items[index], err, hint=None) from err
        return [image for image, _ in results]

    def _predict_batch(self):
        return int(self.batch_size) * _PREDICT_BATCH_FACTOR

    # -------------------------------------------------------- prediction
    def _check_predict_docs(self, X):
        check_is_fitted(self)
        return check_images(X, allow_empty=True)

    def _logits_numpy(self, items):
        runtime = self._ensure_runtime()
        return runtime.run(items, self._predict_batch(), resolve_threads(self.n_jobs), "logits")

    def transform(self, X):
        """Fine-tuned image vectors: the pooled output of the trained backbone.

        Parameters
        ----------
        X : iterable of images
            As for :meth:`fit`.

        Returns
        -------
        vectors : ndarray of shape (n_samples, n_features_out), float32
            The pooled vectors the fitted head reads, one row per sample.
        """
        items = self._check_predict_docs(X)
        runtime = self._ensure_runtime()
        return runtime.run(items, self._predict_batch(), resolve_threads(self.n_jobs), "pooled")

    # ------------------------------------------------------- persistence
    def _trained_tensors(self):
        runtime = self._runtime
        tensors = {f"head.{k}": v for k, v in runtime.head.state_dict().items()}
        for offset, part in enumerate(runtime.trained):
            for key, value in part.state_dict().items():
                tensors[f"parts.{runtime.cut + offset}.{key}"] = value
        return tensors

    _saved_fields = {
        "base_model": tp.OPTIONAL_STR,
        "n_features_out_": tp.INT,
        "n_blocks_": tp.INT,
        "trainable_parameters_": tp.STRS,
    }

    @classmethod
    def _expected_tensors(cls, config):
        head, _ = super()._expected_tensors(config)
        return head, ("parts.",)

    def _extra_config(self):
        base = self.model if isinstance(self.model, str) else None
        return {
            "base_model": base,
            "n_features_out_": self.n_features_out_,
            "n_blocks_": self.n_blocks_,
            "trainable_parameters_": self.trainable_parameters_,
        }

    def _load_extra_config(self, config, folder):
        if self.model is None or (isinstance(self.model, str) and not self.model):
            raise ValueError(
                f"{folder!r} was trained on a model of your own (an ImageModel), which is not "
                "saved; pass it again: ImageClassifier.load(folder, model=ImageModel(...))."
            )
        self.n_features_out_ = config["n_features_out_"]
        self.n_blocks_ = config["n_blocks_"]
        self.trainable_parameters_ = list(config["trainable_parameters_"])

    def _rebuild(self, tensors, device):
        torch = import_torch()
        frozen = load_backbone(self.model, device)
        indices = sorted({int(k.split(".")[1]) for k in tensors if k.startswith("parts.")})
        cut = indices[0] if indices else len(frozen.parts)
        trained = torch.nn.ModuleList([frozen.copy_part(i) for i in range(cut, len(frozen.parts))])
        for offset, part in enumerate(trained):
            prefix = f"parts.{cut + offset}."
            state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            try:
                part.load_state_dict(state, strict=True)
            except RuntimeError as err:
                raise ValueError(
                    f"the saved weights of part {cut + offset} do not fit model={self.model!r}; "
                    f"load with the base model they were trained on ({err})."
                ) from None
        trained = trained.to(device).eval().requires_grad_(False)
        head = saved_head(tensors, self.dropout, device)
        amp_dtype = prediction_precision(self.precision, device)
        self.device_ = device
        self._runtime = _ImageRuntime(frozen, trained, cut, head, device, amp_dtype)
