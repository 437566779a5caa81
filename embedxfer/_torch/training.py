"""The training outline, loop and saved format shared by the torch classifiers.

``TransformerClassifier`` (``_finetune.py``), ``SequenceClassifier``
(``_sequence.py``) and ``ImageClassifier`` (``image/_classifier.py``) differ
in the network they train and the inputs they feed it; everything around
the network lives here: the training parameters' constraints, label
encoding, class weights, the validation split, the outline of ``fit``
(``TorchClassifierMixin``, whose abstract methods each classifier
implements), the training settings (``TrainingSettings``) and stages
(``TrainingStage``), the warm-up schedule, the epoch loop with early
stopping (``EpochLoop``, in named steps; ``ClassifierLoop`` for the
classifiers' stages), mixed precision, seeding that leaves torch's
global random state as it found it, prediction, pickling and save / load (in
the format of ``_torch_persistence``).
"""

import abc
import contextlib
import dataclasses
import numbers
import os
import sys
import time

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from .._core.device import (
    AUTO_PRECISIONS,
    DEVICE_CONSTRAINT,
    import_torch,
    resolve_device,
    resolve_dtype,
)
from .._core.param_validation import Hint, Interval, Options, check_param, validate_params
from .._core.progress import progress
from .._core.validation import check_documents
from .persistence import (
    WEIGHTS_NAME,
    SavedModelError,
    TrainedWeightsState,
    estimator_from_folder,
    saved_config,
    write_folder,
)

MAX_GRAD_NORM = 1.0


# ----------------------------------------------------------------- parameters
UNFREEZE_CONSTRAINT = [
    Interval(numbers.Integral, 0, None),
    Options(["all"]),
    Hint("Pass an integer >= 0 (the top layers that train) or 'all'."),
]

# epochs=None: the head alone trains on vectors computed once, so many passes
# are cheap; fine-tuning runs 3 epochs, or more on small data sets so that at
# least MIN_FINETUNE_STEPS optimizer steps are taken (with 50 documents,
# 3 epochs are 12 steps, too few to move off the random head).
HEAD_ONLY_EPOCHS = 30
MIN_FINETUNE_EPOCHS = 3
MIN_FINETUNE_STEPS = 40
MAX_AUTO_EPOCHS = 20
# The body's learning rate with body_lr=None: this fraction of ``lr``.
BODY_LR_DIVISOR = 30

# What the torch classifiers accept for the training parameters they share;
# each estimator's ``_parameter_constraints`` starts from this table.
TRAINING_PARAMETER_CONSTRAINTS = {
    "lr": [Interval(numbers.Real, 0, None, closed="neither")],
    "epochs": [Interval(numbers.Integral, 1, None)],
    "batch_size": [Interval(numbers.Integral, 1, None)],
    "weight_decay": [Interval(numbers.Real, 0, None)],
    "warmup_fraction": [Interval(numbers.Real, 0, 1, closed="left")],
    "validation_fraction": [
        Interval(numbers.Real, 0, 1, closed="neither"),
        None,
        Hint("None trains on all the data without early stopping."),
    ],
    "n_iter_no_change": [Interval(numbers.Integral, 1, None)],
    "dropout": [Interval(numbers.Real, 0, 1, closed="left")],
    "class_weight": [
        Options(["balanced"]),
        dict,
        None,
        Hint("A dict maps labels to weights: {label: weight}."),
    ],
    "random_state": ["random_state"],
    "device": DEVICE_CONSTRAINT,
    "precision": [Options(AUTO_PRECISIONS)],
    "verbose": ["verbose"],
}


def resolved_unfreeze(unfreeze):
    """``unfreeze`` as an ``int``, or ``"all"`` as it is."""
    return unfreeze if isinstance(unfreeze, str) else int(unfreeze)


def resolved_epochs(epochs, head_only, n_train, batch_size):
    """The epochs of the training stage: ``epochs``, or with ``None`` the default.

    ``head_only`` (the head alone trains, on vectors computed once) gets
    ``HEAD_ONLY_EPOCHS``; fine-tuning gets enough epochs for
    ``MIN_FINETUNE_STEPS`` optimizer steps, within ``MIN_FINETUNE_EPOCHS``
    .. ``MAX_AUTO_EPOCHS``.
    """
    if epochs is not None:
        return epochs
    if head_only:
        return HEAD_ONLY_EPOCHS
    steps_per_epoch = int(np.ceil(n_train / batch_size))
    wanted = int(np.ceil(MIN_FINETUNE_STEPS / steps_per_epoch))
    return int(np.clip(wanted, MIN_FINETUNE_EPOCHS, MAX_AUTO_EPOCHS))


def default_body_lr(body_lr, lr):
    """The learning rate of the unfrozen layers: ``body_lr``, or ``lr / 30`` with ``None``."""
    return body_lr if body_lr is not None else lr / BODY_LR_DIVISOR


def resolve_precision(precision, device):
    """``"auto"`` -> bfloat16 autocast on a CUDA GPU that has it, float16 on older
    GPUs, float32 elsewhere. Returns the torch dtype for autocast (float32 = off)."""
    torch = import_torch()
    kind = device.split(":")[0]
    if precision == "auto":
        if kind != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return resolve_dtype(precision, device)


def prediction_precision(precision, device):
    """:func:`resolve_precision` for a loaded model: float32 where ``precision``
    cannot run (saved with half precision on a GPU, loaded on a CPU)."""
    try:
        return resolve_precision(precision, device)
    except ValueError:
        return import_torch().float32


def autocast(device, amp_dtype):
    """Mixed precision on the GPU; a no-op context for float32."""
    torch = import_torch()
    if amp_dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=amp_dtype)


# --------------------------------------------------------------------- labels
def check_xy(X, y, check_inputs=check_documents, noun="document"):
    """Inputs as a list, ``y`` as a 1-D array of the same length.

    ``check_inputs`` checks ``X`` and returns the list (documents by default,
    ``check_images`` for images); ``noun`` names one input in the messages.
    """
    inputs = check_inputs(X)
    if y is None:
        raise ValueError(f"y is None; a classifier needs one label per {noun}.")
    y = column_or_1d(np.asarray(y), warn=True)
    _check_labels(y, noun)
    if len(y) != len(inputs):
        raise ValueError(
            f"X has {len(inputs)} {noun}s but y has {len(y)} labels; pass one label per {noun}."
        )
    check_classification_targets(y)
    return inputs, y


def _check_labels(y, noun="document"):
    """Missing or mixed-type labels get an error naming the first bad one."""
    if y.dtype.kind == "f":
        missing = np.flatnonzero(np.isnan(y))
    elif y.dtype.kind == "O":
        missing = np.flatnonzero([v is None or (isinstance(v, float) and np.isnan(v)) for v in y])
    else:
        return
    if len(missing):
        raise ValueError(
            f"{len(missing)} labels are missing (first: label {missing[0]} is "
            f"{y[missing[0]]!r}); drop those {noun}s or fill their labels before fitting."
        )
    if y.dtype.kind == "O":
        kinds = {type(v).__name__ for v in y}
        if len(kinds) > 1 and not all(
            isinstance(v, (int, np.integer, float, np.floating)) for v in y
        ):
            raise ValueError(
                f"labels mix types {sorted(kinds)}; convert them to one type (e.g. all str)."
            )


def encode_labels(y):
    """``classes_`` (sorted) and integer targets; at least two classes."""
    classes, y_idx = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(
            f"y has a single class {classes[0]!r}; a classifier needs at least two classes."
        )
    return classes, y_idx.astype(np.int64)


def class_weight_vector(class_weight, classes, y_idx):
    """Per-class loss weights (float32 array) or ``None``."""
    if class_weight is None:
        return None
    if isinstance(class_weight, str) and class_weight == "balanced":
        # Every class occurs in y: ``classes`` come from it (encode_labels).
        labels = np.arange(len(classes))
        return compute_class_weight("balanced", classes=labels, y=y_idx).astype(np.float32)
    weights = np.ones(len(classes), dtype=np.float32)
    known = {label: i for i, label in enumerate(classes.tolist())}
    for label, weight in class_weight.items():
        key = label.item() if hasattr(label, "item") else label
        if key not in known:
            raise ValueError(
                f"class_weight names the label {label!r}, which is not in y; "
                f"the classes are {list(known)[:10]}."
            )
        weights[known[key]] = check_param(
            f"class_weight[{label!r}]", weight, [Interval(numbers.Real, 0, None)]
        )
    return weights


def split_validation(y_idx, fraction, seed):
    """Train / validation index arrays; stratified when every class can be split."""
    n = len(y_idx)
    all_idx = np.arange(n)
    if fraction is None:
        return all_idx, None
    n_val = int(np.ceil(fraction * n))
    if n_val < 1 or n - n_val < 2:
        raise ValueError(
            f"validation_fraction={fraction} leaves no usable split of {n} documents; "
            "use more data or validation_fraction=None."
        )
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y_idx)
    stratify = y_idx if counts[counts > 0].min() >= 2 and n_val >= len(counts) else None
    train_idx, val_idx = train_test_split(
        all_idx, test_size=n_val, random_state=seed, stratify=stratify
    )
    return np.sort(train_idx), np.sort(val_idx)


def draw_seed(random_state):
    """One 31-bit seed from ``random_state`` (None, int or RandomState)."""
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


@contextlib.contextmanager
def seeded_torch(seed, device):
    """Seed torch's global generators for dropout, then put them back.

    Dropout draws from torch's global generator and takes no ``generator``
    argument, so the fit seeds it inside ``torch.random.fork_rng``: the
    caller's random state is saved before and restored after, and nothing
    outside ``fit`` sees a change. (Two fits running at once in threads of one
    process would share the generator; joblib's default process-based
    backend does not.)
    """
    torch = import_torch()
    devices = []
    if device.startswith("cuda"):
        devices = [torch.device(device).index or 0]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


# ------------------------------------------------------------------ training
def new_head(width, n_classes, dropout, seed, std):
    """Dropout + a new linear layer, its weights drawn from ``seed`` with ``std``.

    The draws come from a generator of its own: ``Linear``'s usual
    initialisation (skipped) would draw from torch's global generator.
    """
    torch = import_torch()
    from collections import OrderedDict

    linear = torch.nn.utils.skip_init(torch.nn.Linear, width, n_classes)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        linear.weight.normal_(0.0, std, generator=generator)
        linear.bias.zero_()
    return torch.nn.Sequential(
        OrderedDict([("dropout", torch.nn.Dropout(dropout)), ("linear", linear)])
    )


def saved_head(tensors, dropout, device):
    """The head saved under ``head.`` in ``tensors``, on ``device``, frozen."""
    weight = tensors["head.linear.weight"]
    head = new_head(weight.shape[1], weight.shape[0], dropout, 0, 0.02)
    head.load_state_dict(
        {k[len("head.") :]: v for k, v in tensors.items() if k.startswith("head.")}
    )
    return head.to(device).eval().requires_grad_(False)


def make_optimizer(groups, weight_decay):
    """AdamW over ``[(params_with_names, lr), ...]``; no decay on biases and norms."""
    torch = import_torch()
    param_groups = []
    for named, lr in groups:
        decay = [p for n, p in named if not _no_decay(n, p)]
        no_decay = [p for n, p in named if _no_decay(n, p)]
        if decay:
            param_groups.append({"params": decay, "lr": lr, "weight_decay": weight_decay})
        if no_decay:
            param_groups.append({"params": no_decay, "lr": lr, "weight_decay": 0.0})
    return torch.optim.AdamW(param_groups)


def _no_decay(name, param):
    return param.ndim < 2 or "norm" in name.lower()


def warmup_linear_schedule(optimizer, total_steps, warmup_fraction):
    """Linear warm-up over ``warmup_fraction`` of the steps, then linear decay to 0."""
    torch = import_torch()
    warmup = int(round(warmup_fraction * total_steps))

    def factor(step):
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclasses.dataclass(frozen=True)
class TrainingSettings:
    """The training parameters of one ``fit``, resolved once and shared by its stages.

    Built by :meth:`TorchClassifierMixin.fit` from the estimator's parameters;
    what differs between the stages of one fit (the learning rates, the
    epochs) is in :class:`TrainingStage`.
    """

    lr: float
    batch_size: int
    weight_decay: float
    warmup_fraction: float
    validation_fraction: float | None
    n_iter_no_change: int
    verbose: int
    device: str
    amp_dtype: object  # torch dtype of autocast; float32 means off
    seed: int

    @classmethod
    def of(cls, estimator, *, device, amp_dtype, seed):
        """The settings of ``estimator``'s parameters, with what ``fit`` resolved."""
        return cls(
            lr=estimator.lr,
            batch_size=estimator.batch_size,
            weight_decay=estimator.weight_decay,
            warmup_fraction=estimator.warmup_fraction,
            validation_fraction=estimator.validation_fraction,
            n_iter_no_change=estimator.n_iter_no_change,
            verbose=estimator.verbose,
            device=device,
            amp_dtype=amp_dtype,
            seed=seed,
        )


@dataclasses.dataclass(frozen=True)
class TrainingData:
    """The labelled inputs of one ``fit`` and their train / validation split."""

    inputs: list  # documents or images, in the caller's order
    classes: np.ndarray
    y_idx: np.ndarray  # class index of every input
    train_idx: np.ndarray
    val_idx: np.ndarray | None

    @property
    def y_train(self):
        return self.y_idx[self.train_idx]

    @property
    def y_val(self):
        return None if self.val_idx is None else self.y_idx[self.val_idx]


@dataclasses.dataclass
class TrainingStage:
    """One run of the epoch loop: what trains, at which rates, on which batches.

    Attributes
    ----------
    groups : list of (list of (name, parameter), float)
        The trained parameters and their peak learning rate, per group.
    modules : list of torch modules
        Put in training mode for the stage (evaluation mode to validate).
    epochs : int
    batch_logits : callable(index_array) -> logits tensor
        Forward pass over a batch of training rows ``0 .. n_train - 1``.
    val_logits : callable() -> logits tensor, optional
        Logits of the validation rows, called in evaluation and inference
        mode; with it, training stops after ``n_iter_no_change`` epochs
        without improvement and the best epoch's weights come back.
    lengths : array of int, optional
        Token counts of the training rows; with them, batches group rows of
        similar length (see ``epoch_batches``).
    desc : str
        Label of the progress bar.
    """

    groups: list
    modules: list
    epochs: int
    batch_logits: object
    val_logits: object = None
    lengths: object = None
    desc: str = "fit"

    @property
    def parameters(self):
        return [p for named, _ in self.groups for _, p in named]


def set_training_mode(modules, training):
    """Put ``modules`` in training (``True``) or evaluation mode."""
    for module in modules:
        module.train(training)


@dataclasses.dataclass
class TrainingHistory:
    """What one training run recorded.

    Attributes
    ----------
    loss : list of float
        Mean training loss of every epoch.
    val_loss : list of float
        Validation loss after every epoch (empty without validation rows).
    best_epoch : int or None
        The epoch (from 1) of the lowest validation loss, whose weights were kept.
    n_iter : int
        Optimizer steps taken.
    time : float
        Seconds the loop ran.
    """

    loss: list = dataclasses.field(default_factory=list)
    val_loss: list = dataclasses.field(default_factory=list)
    best_epoch: int | None = None
    n_iter: int = 0
    time: float = 0.0

    @classmethod
    def joined(cls, histories):
        """One history from those of consecutive training stages."""
        return cls(
            loss=[v for h in histories for v in h.loss],
            val_loss=[v for h in histories for v in h.val_loss],
            n_iter=sum(h.n_iter for h in histories),
            time=sum(h.time for h in histories),
        )

    def set_fitted_attributes(self, est):
        """The fitted attributes that describe the training run."""
        est.loss_curve_ = list(self.loss)
        est.validation_loss_curve_ = list(self.val_loss) or None
        est.best_validation_loss_ = min(self.val_loss) if self.val_loss else None
        est.n_epochs_ = len(self.loss)
        est.n_iter_ = self.n_iter
        est.fit_time_ = self.time


class EpochLoop(abc.ABC):
    """The epoch loop, in named steps that a subclass overrides one at a time.

    :meth:`fit_loop` builds the optimizer (:meth:`make_optimizer`, AdamW) and
    the schedule (:meth:`make_schedule`, linear warm-up then decay), runs
    :meth:`run_epoch` for every epoch, asks :meth:`validation_step` for the
    validation loss after each one, stops after ``n_iter_no_change`` epochs
    without improvement and brings the best epoch's weights back.
    :meth:`run_epoch` runs :meth:`train_step` on every batch that
    :meth:`epoch_batches` yields; :meth:`train_step` computes
    :meth:`batch_loss` and takes one optimizer step (:meth:`optimizer_step`:
    backward pass, gradient clipping, float16 loss scaling). A subclass
    supplies :meth:`epoch_batches` and :meth:`batch_loss`.

    Parameters
    ----------
    groups : list of (list of (name, parameter), float)
        The trained parameters and their peak learning rate, per group.
    epochs : int
    steps_per_epoch : int
        Batches per epoch (for the schedule and the progress bar).
    device : str
    amp_dtype : torch dtype
        Of autocast; float32 means off, float16 adds loss scaling.
    weight_decay, warmup_fraction : float
    verbose : int
        A progress bar from 1, a line per epoch from 2.
    desc : str
        Label of the progress bar.
    n_iter_no_change : int, optional
        Epochs without a lower validation loss before training stops.
    """

    def __init__(
        self,
        groups,
        *,
        epochs,
        steps_per_epoch,
        device,
        amp_dtype,
        weight_decay,
        warmup_fraction,
        verbose=0,
        desc="fit",
        n_iter_no_change=None,
    ):
        self.groups = groups
        # Fixed for the loop's life; every optimizer step clips over them.
        self.parameters = [p for named, _ in groups for _, p in named]
        self.epochs = int(epochs)
        self.steps_per_epoch = int(steps_per_epoch)
        self.device = device
        self.amp_dtype = amp_dtype
        self.weight_decay = weight_decay
        self.warmup_fraction = warmup_fraction
        self.verbose = verbose
        self.desc = desc
        self.n_iter_no_change = n_iter_no_change

    # what a subclass supplies -----------------------------------------
    @abc.abstractmethod
    def epoch_batches(self, epoch):
        """The batches of epoch ``epoch`` (from 0), in training order."""

    @abc.abstractmethod
    def batch_loss(self, batch):
        """``(loss, weight)``: the loss tensor of ``batch`` and its weight in the epoch's mean."""

    def validation_step(self):
        """The validation loss after an epoch, or None to train every epoch."""
        return None

    # the steps ----------------------------------------------------------
    def make_optimizer(self):
        return make_optimizer(self.groups, self.weight_decay)

    def make_schedule(self, optimizer):
        total_steps = self.steps_per_epoch * self.epochs
        return warmup_linear_schedule(optimizer, total_steps, self.warmup_fraction)

    def optimizer_step(self, loss):
        """Backward pass, gradient clipping and one optimizer step (scaled for float16)."""
        torch = import_torch()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.parameters, MAX_GRAD_NORM)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.parameters, MAX_GRAD_NORM)
            self.optimizer.step()

    def train_step(self, batch):
        """One optimizer step on ``batch``; ``(loss, weight)`` as floats."""
        loss, weight = self.batch_loss(batch)
        self.optimizer_step(loss)
        self.schedule.step()
        return loss.item(), weight

    def run_epoch(self, epoch):
        """Train on every batch of epoch ``epoch``; the weighted mean training loss."""
        total, count = 0.0, 0
        for batch in self.epoch_batches(epoch):
            loss, weight = self.train_step(batch)
            self.history.n_iter += 1
            total += loss * weight
            count += weight
            self.bar.update(1)
            self.bar.set_postfix(epoch=epoch + 1, loss=f"{total / count:.4f}")
        return total / count

    def snapshot(self):
        return [p.detach().clone() for p in self.parameters]

    def restore(self, state):
        torch = import_torch()
        with torch.no_grad():
            for p, saved in zip(self.parameters, state):
                p.copy_(saved)

    def fit_loop(self):
        """Run the epochs with early stopping; return the :class:`TrainingHistory`."""
        torch = import_torch()
        self.optimizer = self.make_optimizer()
        self.schedule = self.make_schedule(self.optimizer)
        self.scaler = None
        if self.amp_dtype == torch.float16:
            self.scaler = torch.amp.GradScaler(self.device.split(":")[0])
        history = self.history = TrainingHistory()
        lowest, best_state, bad_epochs = np.inf, None, 0
        self.bar = progress(self.steps_per_epoch * self.epochs, self.verbose, self.desc)
        start = time.perf_counter()
        try:
            for epoch in range(self.epochs):
                history.loss.append(self.run_epoch(epoch))
                message = f"epoch {epoch + 1}/{self.epochs}: loss {history.loss[-1]:.4f}"
                val_loss = self.validation_step()
                if val_loss is not None:
                    val_loss = float(val_loss)
                    history.val_loss.append(val_loss)
                    message += f", validation loss {val_loss:.4f}"
                    if val_loss < lowest:
                        lowest, bad_epochs = val_loss, 0
                        best_state = self.snapshot()
                        history.best_epoch = epoch + 1
                    else:
                        bad_epochs += 1
                if self.verbose > 1:
                    print(f"{self.desc}: {message}", file=sys.stderr)
                if val_loss is not None and bad_epochs >= self.n_iter_no_change:
                    break
        finally:
            self.bar.close()
        if best_state is not None and history.best_epoch != len(history.loss):
            self.restore(best_state)
        history.time = time.perf_counter() - start
        return history


class ClassifierLoop(EpochLoop):
    """The epoch loop of a classifier's :class:`TrainingStage`: cross-entropy on row batches.

    Batches are index arrays of the training rows (grouped by length where
    the stage gives lengths); with the stage's ``val_logits``, the validation
    loss after each epoch decides early stopping.
    """

    def __init__(self, stage, settings, loss_fn, data, set_mode=set_training_mode):
        torch = import_torch()
        n_train = len(data.train_idx)
        super().__init__(
            stage.groups,
            epochs=stage.epochs,
            steps_per_epoch=int(np.ceil(n_train / settings.batch_size)),
            device=settings.device,
            amp_dtype=settings.amp_dtype,
            weight_decay=settings.weight_decay,
            warmup_fraction=settings.warmup_fraction,
            verbose=settings.verbose,
            desc=stage.desc,
            n_iter_no_change=settings.n_iter_no_change,
        )
        self.stage = stage
        self.loss_fn = loss_fn
        self.set_mode = set_mode
        self.batch_size = settings.batch_size
        self.shuffle = torch.Generator().manual_seed(settings.seed)
        self.y_train = torch.as_tensor(data.y_train, dtype=torch.long, device=settings.device)
        self.y_val = None
        if stage.val_logits is not None:
            self.y_val = torch.as_tensor(data.y_val, device=settings.device)

    def epoch_batches(self, epoch):
        return epoch_batches(len(self.y_train), self.batch_size, self.shuffle, self.stage.lengths)

    def batch_loss(self, idx):
        with autocast(self.device, self.amp_dtype):
            logits = self.stage.batch_logits(idx)
        return self.loss_fn(logits.float(), self.y_train[idx]), len(idx)

    def validation_step(self):
        if self.y_val is None:
            return None
        torch = import_torch()
        self.set_mode(self.stage.modules, False)
        with torch.inference_mode():
            loss = self.loss_fn(self.stage.val_logits().float(), self.y_val).item()
        self.set_mode(self.stage.modules, True)
        return loss

    def fit_loop(self):
        self.set_mode(self.stage.modules, True)
        return super().fit_loop()


def epoch_batches(n, batch_size, generator, lengths=None, pool=50):
    """Index arrays of one epoch's batches, in random order.

    With ``lengths``, a random permutation is cut into pools of ``pool``
    batches, each pool is sorted by length and cut into batches, and the
    batches are shuffled: each batch holds documents of similar length (as
    Hugging Face's ``group_by_length``), which saves padding on the CPU,
    while the composition of the batches stays random.
    """
    torch = import_torch()
    order = torch.randperm(n, generator=generator).numpy()
    if lengths is None:
        return [order[s : s + batch_size] for s in range(0, n, batch_size)]
    lengths = np.asarray(lengths)
    batches = []
    chunk = batch_size * pool
    for s in range(0, n, chunk):
        part = order[s : s + chunk]
        part = part[np.argsort(-lengths[part], kind="stable")]
        batches.extend(part[b : b + batch_size] for b in range(0, len(part), batch_size))
    shuffled = torch.randperm(len(batches), generator=generator).numpy()
    return [batches[i] for i in shuffled]


def batch_ranges(n, batch_size):
    return [(s, min(n, s + batch_size)) for s in range(0, n, batch_size)]


# ------------------------------------------------------------------- mixin
class TorchClassifierMixin(TrainedWeightsState, abc.ABC):
    """Training outline, prediction, pickling and save/load of a classifier with a torch network.

    :meth:`fit` runs the outline every torch classifier follows: check the
    parameters and the data, encode the labels, draw the seed, split off the
    validation rows, build the network, train it in one or more stages (each
    with early stopping) inside a seeded ``torch.random.fork_rng``, and set
    the fitted attributes. A subclass supplies what differs through the
    abstract methods below; ``_runtime`` holds the live torch objects and is
    never pickled.
    """

    # config.json fields of the subclass beside the common ones: name -> (kind, check)
    _saved_fields = {}

    # the training outline ---------------------------------------------
    def fit(self, X, y):
        """Train the network on labelled inputs.

        Parameters
        ----------
        X : iterable
            Training inputs (documents or images, as the estimator takes).
        y : array-like of shape (n_samples,)
            Class labels (strings or numbers; two or more classes).

        Returns
        -------
        self : estimator
            The fitted estimator.
        """
        validate_params(self)
        self._check_param_combinations()
        torch = import_torch()
        inputs, y = self._check_fit_data(X, y)
        device = resolve_device(self.device)
        amp_dtype = resolve_precision(self._training_precision(), device)
        classes, y_idx = encode_labels(y)
        weights = class_weight_vector(self.class_weight, classes, y_idx)
        seed = draw_seed(self.random_state)
        settings = TrainingSettings.of(self, device=device, amp_dtype=amp_dtype, seed=seed)
        train_idx, val_idx = split_validation(y_idx, settings.validation_fraction, seed)
        data = TrainingData(inputs, classes, y_idx, train_idx, val_idx)
        prepared = self._prepare_training(data, settings)
        loss_fn = torch.nn.CrossEntropyLoss(
            weight=None if weights is None else torch.as_tensor(weights, device=device)
        )
        histories, trained_modules = [], []
        with seeded_torch(seed, device):
            for stage in self._training_stages(prepared, data, settings):
                loop = ClassifierLoop(stage, settings, loss_fn, data, self._set_training_mode)
                histories.append(loop.fit_loop())
                trained_modules.extend(stage.modules)
        self._set_training_mode(trained_modules, False)
        for module in trained_modules:
            module.requires_grad_(False)

        self.classes_ = classes
        self.device_ = device
        TrainingHistory.joined(histories).set_fitted_attributes(self)
        self._runtime = self._fitted_runtime(prepared)
        self._pending_tensors = None
        return self

    def _check_param_combinations(self):
        """Checks that involve several parameters (after ``validate_params``)."""
        return None

    def _training_precision(self):
        """The ``precision`` that training runs at."""
        return self.precision

    def _set_training_mode(self, modules, training):
        """Put the trained ``modules`` in training (``True``) or evaluation mode."""
        set_training_mode(modules, training)

    @abc.abstractmethod
    def _check_fit_data(self, X, y):
        """``(inputs, y)``: the training inputs as a list and ``y`` as a 1-D array."""

    @abc.abstractmethod
    def _prepare_training(self, data, settings):
        """Load the pretrained model and build the network before the seeded block.

        Runs before torch's global generator is seeded for the training
        stages (loading a model may draw from it). Returns one object (a
        dataclass of the estimator's own) holding what the other hooks need,
        passed to them as ``prepared``.
        """

    @abc.abstractmethod
    def _training_stages(self, prepared, data, settings):
        """Yield the :class:`TrainingStage` objects to train, in order.

        Runs inside the seeded block (dropout and any weight initialisation
        drawn from torch's global generator happen here); each stage is
        trained before the next is asked for.
        """

    @abc.abstractmethod
    def _fitted_runtime(self, prepared):
        """Set the estimator's own fitted attributes and return the runtime kept for prediction."""

    @abc.abstractmethod
    def _logits_numpy(self, inputs):
        """Float32 logits ``(n_samples, n_classes)`` of checked inputs."""

    @abc.abstractmethod
    def _trained_tensors(self):
        """``{name: tensor}`` of what ``fit`` trained (saved and pickled)."""

    @abc.abstractmethod
    def _rebuild(self, tensors, device):
        """Recreate ``_runtime`` on ``device`` from the pretrained model and ``tensors``."""

    @abc.abstractmethod
    def _extra_config(self):
        """The estimator's own fitted attributes for ``config.json``."""

    @abc.abstractmethod
    def _load_extra_config(self, config, folder):
        """Set the attributes ``_extra_config`` wrote."""

    # prediction -------------------------------------------------------
    def embed(self, X):
        """Alias of :meth:`transform`.

        Parameters
        ----------
        X : iterable
            Inputs: documents or images, as the estimator's fit takes.

        Returns
        -------
        vectors : ndarray of shape (n_samples, n_features_out), float32
            The pooled vectors the fitted head reads, one row per sample.
        """
        return self.transform(X)

    def predict_proba(self, X):
        """Class probabilities.

        Parameters
        ----------
        X : iterable
            Inputs: documents or images, as the estimator's fit takes.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes), float32
            Rows sum to 1; columns follow ``classes_``.
        """
        logits = self._logits_numpy(self._check_predict_docs(X))
        logits = logits - logits.max(axis=1, keepdims=True)
        proba = np.exp(logits)
        proba /= proba.sum(axis=1, keepdims=True)
        return proba.astype(np.float32)

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`.

        Parameters
        ----------
        X : iterable
            Inputs: documents or images, as the estimator's fit takes.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes), float32
        """
        logits = self._logits_numpy(self._check_predict_docs(X)).astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        logits -= np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return logits.astype(np.float32)

    def predict(self, X):
        """Most probable class of each input.

        Parameters
        ----------
        X : iterable
            Inputs: documents or images, as the estimator's fit takes.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        logits = self._logits_numpy(self._check_predict_docs(X))
        return self.classes_[np.argmax(logits, axis=1)]

    def _check_predict_docs(self, X):
        check_is_fitted(self)
        return check_documents(X, allow_empty=True)

    # save / load ------------------------------------------------------
    def save(self, folder):
        """Write the fitted classifier to ``folder`` (created if needed).

        The folder holds ``model.safetensors`` (the weights ``fit`` trained)
        and ``config.json`` (parameters, classes and a reference to the
        pretrained source the untouched weights come from); no pickle.
        Parameters that JSON cannot hold (a ``RandomState`` instance, an
        in-memory ``KeyedVectors``) are written as ``None`` and listed under
        ``unsaved_params``; prediction does not need them.

        Parameters
        ----------
        folder : str or path-like
            Destination folder.

        Returns
        -------
        folder : str
        """
        self._ensure_runtime()
        folder = os.fspath(folder)
        fitted = {
            "loss_curve_": self.loss_curve_,
            "validation_loss_curve_": self.validation_loss_curve_,
            "best_validation_loss_": self.best_validation_loss_,
            "n_epochs_": self.n_epochs_,
            "n_iter_": self.n_iter_,
            "fit_time_": self.fit_time_,
        }
        config = saved_config(self, fitted)
        config.update(self._extra_config())
        write_folder(folder, config, self._trained_tensors())
        return folder

    @classmethod
    def load(cls, folder, *, device=None, **params):
        """Load a classifier written by :meth:`save`.

        Parameters
        ----------
        folder : str or path-like
            Folder written by :meth:`save`.
        device : str, default=None
            Where to run it; ``None`` keeps the saved ``device`` parameter
            (``None``/``"auto"`` picks a GPU when there is one, else the CPU),
            so a model trained on a GPU loads on a CPU-only machine.
        **params
            Parameters to change from the saved ones, e.g. ``model=`` the
            base model's folder on this machine, or ``batch_size``.

        Returns
        -------
        estimator : fitted instance
        """
        folder = os.fspath(folder)
        est, config, tensors = estimator_from_folder(cls, folder, device, params)
        est._load_extra_config(config, folder)
        try:
            est._rebuild(tensors, resolve_device(est.device))
        except (RuntimeError, KeyError) as err:  # load_state_dict on a mismatched network
            message = " ".join(str(err).split())[:300]
            raise SavedModelError(
                f"{os.path.join(folder, WEIGHTS_NAME)}: the tensors do not fit the network "
                f"({message})."
            ) from None
        return est

    @classmethod
    def _expected_tensors(cls, config):
        """``({name: shape}, prefixes)`` of the tensors a checked ``config`` goes with."""
        n_classes = len(config["classes"]["values"])
        width = config["n_features_out_"]
        head = {"head.linear.weight": (n_classes, width), "head.linear.bias": (n_classes,)}
        return head, ()
