"""Training parameters of the torch classifiers: constraints, defaults and resolved settings.

The constraint table every torch classifier adds to its own, the rules that
turn ``epochs="auto"``, ``unfreeze`` and ``body_lr=None`` into numbers, the
precision rules (mixed precision on a GPU, float32 elsewhere), and
``TrainingSettings``, the one frozen object ``fit`` resolves them into.
"""

import contextlib
import dataclasses
import numbers

import numpy as np

from .._core.device import (
    AUTO_PRECISIONS,
    DEVICE_CONSTRAINT,
    import_torch,
    resolve_dtype,
)
from .._core.param_validation import Hint, Interval, InvalidParameterError, Options

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


# AdamW's decoupled decay is finite: an infinite one turns every weight into NaN.
WEIGHT_DECAY_CONSTRAINT = [Interval(numbers.Real, 0, None, closed="left")]


def check_decay_rates(caller, weight_decay, rates):
    """Refuse a ``weight_decay`` whose product with a learning rate reaches 1.

    AdamW multiplies the decayed weights by ``1 - lr * weight_decay`` at
    every step: from 1 on that zeroes or flips them, beyond 2 they grow
    without bound. ``rates`` maps the estimator's learning-rate parameters to
    their values (None: unused).
    """
    for name, lr in rates.items():
        if lr is not None and weight_decay * lr >= 1:
            raise InvalidParameterError(
                f"{caller}(weight_decay={weight_decay!r}, {name}={lr!r}) multiplies the weights "
                f"by 1 - {name} * weight_decay = {1 - weight_decay * lr:g} at every step; keep "
                f"weight_decay * {name} below 1 (weight_decay is usually 0 to 0.1)."
            )


# What the torch classifiers accept for the training parameters they share;
# each estimator's ``_parameter_constraints`` starts from this table.
TRAINING_PARAMETER_CONSTRAINTS = {
    "lr": [Interval(numbers.Real, 0, None, closed="neither")],
    "epochs": [Interval(numbers.Integral, 1, None)],
    "batch_size": [Interval(numbers.Integral, 1, None)],
    "weight_decay": WEIGHT_DECAY_CONSTRAINT,
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
