"""The epoch loop in named, overridable steps, and what it trains.

``EpochLoop`` has skorch's shape: ``fit_loop`` -> ``run_epoch`` ->
``train_step`` -> ``batch_loss`` and ``optimizer_step``, with
``validation_step`` after each epoch and ``make_optimizer`` /
``make_schedule`` as steps of their own; a subclass replaces one and keeps
the rest. ``ClassifierLoop`` trains a classifier's ``TrainingStage`` on
batches of rows. Also here: new and saved classification heads, the
optimizer and warm-up schedule, seeding that leaves torch's global random
state as it found it, and the ``TrainingHistory``.
"""

import abc
import contextlib
import dataclasses
import math
import sys
import time

import numpy as np
from sklearn.utils import check_random_state

from .._core.device import (
    import_torch,
)
from .._core.progress import progress
from ..exceptions import TrainingDivergedError
from .data import epoch_batches
from .settings import MAX_GRAD_NORM, autocast


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
    return fused_optimizer(torch.optim.AdamW, param_groups)


def fused_optimizer(optimizer_class, params, **options):
    """``optimizer_class(params)`` with its fused kernel where torch has one, else its default.

    One fused kernel per step is, on a CPU, about 5x faster than the
    per-tensor loop torch picks by default there (a quarter of a contrastive
    fit), with the same updates.
    """
    try:
        return optimizer_class(params, fused=True, **options)
    except (RuntimeError, TypeError, ValueError):  # a device or torch without the kernel
        return optimizer_class(params, **options)


def class_weighted_loss(weights, device):
    """Cross-entropy with per-class ``weights`` (None: unweighted), a weighted mean per batch.

    torch's weighted mean divides by the batch's total weight, which is 0
    (and the loss NaN) when every row of a batch is of a class weighted 0;
    such a batch here has loss 0 and no gradient.
    """
    torch = import_torch()
    if weights is None:
        return torch.nn.CrossEntropyLoss()
    weight = torch.as_tensor(weights, device=device)

    def loss(logits, target):
        total = torch.nn.functional.cross_entropy(logits, target, weight=weight, reduction="sum")
        return total / weight[target].sum().clamp_min(torch.finfo(total.dtype).tiny)

    return loss


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
    rate_names : tuple of str
        The estimator's parameters that set the learning rates of ``groups``,
        named in the error when training diverges.
    """

    groups: list
    modules: list
    epochs: int
    batch_logits: object
    val_logits: object = None
    lengths: object = None
    desc: str = "fit"
    rate_names: tuple = ("lr",)

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
    supplies :meth:`epoch_batches` and :meth:`batch_loss`. A non-finite loss,
    validation loss or trained weight ends the loop with
    :class:`~embedxfer.exceptions.TrainingDivergedError`, so a diverged
    model is never returned.

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
    rate_names : tuple of str, default=("lr",)
        The estimator's learning-rate parameters, named in the error when
        training diverges.
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
        rate_names=("lr",),
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
        self.rate_names = tuple(rate_names)

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
        """Train on every batch of epoch ``epoch``; the weighted mean training loss.

        Steps whose loss is not finite are left out of the mean where float16
        loss scaling skipped them; without it such a step ends training.
        """
        total, count = 0.0, 0
        for batch in self.epoch_batches(epoch):
            loss, weight = self.train_step(batch)
            self.history.n_iter += 1
            self.bar.update(1)
            if not math.isfinite(loss):
                # The scaler skips a step whose float16 values overflowed and
                # lowers its scale; nothing excuses it in float32.
                if getattr(self, "scaler", None) is None:
                    raise self.diverged(epoch, f"the loss is {loss}")
                continue
            total += loss * weight
            count += weight
            self.bar.set_postfix(epoch=epoch + 1, loss=f"{total / count:.4f}")
        if not count:
            raise self.diverged(epoch, "the loss was not finite at any step")
        self.check_parameters(epoch)
        return total / count

    def check_parameters(self, epoch):
        """Raise :class:`TrainingDivergedError` where a trained parameter is not finite."""
        torch = import_torch()
        if not self.parameters:
            return
        # One device sync for all the parameters, once an epoch.
        finite = torch.stack([torch.isfinite(p).all() for p in self.parameters]).all()
        if not finite.item():
            raise self.diverged(epoch, "the trained weights are not finite")

    def check_trained_loss(self, epoch):
        """Raise :class:`TrainingDivergedError` where the final weights give a non-finite loss.

        The last step's loss was computed before that step: finite weights can
        still overflow. One forward pass over the first batch (no gradients,
        torch's random state put back) checks what the caller is handed.
        """
        torch = import_torch()
        devices = [torch.device(self.device).index or 0] if self.device.startswith("cuda") else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            loss, _ = self.batch_loss(next(iter(self.epoch_batches(epoch))))
            value = loss.item()
        if not math.isfinite(value):
            raise self.diverged(epoch, f"the trained weights give the loss {value}")

    def diverged(self, epoch, what):
        """The error for training that diverged in epoch ``epoch`` (from 0)."""
        names = [*self.rate_names, "weight_decay"]
        lower = f"{', '.join(names[:-1])} or {names[-1]}"
        return TrainingDivergedError(
            f"{self.desc}: training diverged at epoch {epoch + 1} ({what}); lower {lower}."
        )

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
                    if not math.isfinite(val_loss):
                        raise self.diverged(epoch, f"the validation loss is {val_loss}")
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
            if val_loss is None:
                self.check_trained_loss(epoch)
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
            rate_names=stage.rate_names,
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
