"""The training outline shared by the torch classifiers (embedxfer/_torch/training.py)."""

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, clone

torch = pytest.importorskip("torch")

from embedxfer import ImageClassifier, SequenceClassifier, TransformerClassifier
from embedxfer._core.param_validation import InvalidParameterError
from embedxfer._torch.classifier import TorchClassifierMixin
from embedxfer._torch.data import class_weight_vector, split_validation
from embedxfer._torch.loop import EpochLoop, TrainingHistory, TrainingStage, draw_seed
from embedxfer._torch.settings import TRAINING_PARAMETER_CONSTRAINTS, TrainingSettings
from embedxfer.exceptions import TrainingDivergedError


class LinearClassifier(TorchClassifierMixin, ClassifierMixin, BaseEstimator):
    """A softmax regression on numeric rows: the outline with the smallest network."""

    _parameter_constraints = {**TRAINING_PARAMETER_CONSTRAINTS}

    def __init__(
        self,
        *,
        lr=0.5,
        epochs=10,
        batch_size=16,
        weight_decay=0.0,
        warmup_fraction=0.0,
        dropout=0.0,
        validation_fraction=None,
        n_iter_no_change=2,
        class_weight=None,
        random_state=0,
        device="cpu",
        precision="auto",
        verbose=0,
    ):
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.warmup_fraction = warmup_fraction
        self.dropout = dropout
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.class_weight = class_weight
        self.random_state = random_state
        self.device = device
        self.precision = precision
        self.verbose = verbose

    def _check_fit_data(self, X, y):
        return [np.asarray(row, dtype=np.float32) for row in X], np.asarray(y)

    def _prepare_training(self, data, settings):
        return SimpleNamespace(linear=None, x=torch.from_numpy(np.stack(data.inputs)))

    def _training_stages(self, prepared, data, settings):
        linear = torch.nn.Linear(prepared.x.shape[1], len(data.classes))  # draws: seeded
        prepared.linear = linear
        x_train, x_val = prepared.x[data.train_idx], None
        if data.val_idx is not None:
            x_val = prepared.x[data.val_idx]
        yield TrainingStage(
            groups=[(list(linear.named_parameters()), self.lr)],
            modules=[linear],
            epochs=self.epochs,
            batch_logits=lambda idx: linear(x_train[idx]),
            val_logits=None if x_val is None else (lambda: linear(x_val)),
        )

    def _fitted_runtime(self, prepared):
        return prepared.linear

    def _check_predict_docs(self, X):
        return [np.asarray(row, dtype=np.float32) for row in X]

    def _logits_numpy(self, inputs):
        linear = self._ensure_runtime()
        with torch.inference_mode():
            return linear(torch.from_numpy(np.stack(inputs))).numpy()

    def _trained_tensors(self):
        return dict(self._runtime.state_dict())

    def _rebuild(self, tensors, device):
        weight = tensors["weight"]
        linear = torch.nn.Linear(weight.shape[1], weight.shape[0])
        linear.load_state_dict(tensors)
        self._runtime = linear.eval().requires_grad_(False)

    @classmethod
    def _expected_tensors(cls, config):
        return {"weight": None, "bias": None}, ()

    def _extra_config(self):
        return {}

    def _load_extra_config(self, config, folder):
        pass


def blobs(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    X = rng.normal(size=(n, 4)) + 1.5 * y[:, None]
    return X, np.where(y == 1, "b", "a")


def test_the_outline_trains_a_small_network_and_leaves_torch_alone():
    X, y = blobs()
    state = torch.random.get_rng_state()
    clf = LinearClassifier().fit(X, y)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert list(clf.classes_) == ["a", "b"] and clf.device_ == "cpu"
    assert clf.n_epochs_ == 10 and clf.n_iter_ == 10 * 4
    assert np.mean(clf.predict(X) == y) > 0.8
    again = clone(clf).fit(X, y)
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    assert not any(p.requires_grad for p in clf._runtime.parameters())
    assert not clf._runtime.training


def test_save_load_and_pickle_give_the_same_predictions(tmp_path):
    import pickle

    X, y = blobs()
    clf = LinearClassifier().fit(X, y)
    expected = clf.predict_proba(X)
    loaded = LinearClassifier.load(clf.save(tmp_path / "model"))
    np.testing.assert_array_equal(loaded.predict_proba(X), expected)
    assert loaded.loss_curve_ == clf.loss_curve_
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(clf)).predict_proba(X), expected)
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]


def test_early_stopping_keeps_the_best_epoch_weights():
    X, y = blobs(seed=1)
    clf = LinearClassifier(
        lr=2.0, epochs=15, validation_fraction=0.3, n_iter_no_change=3, random_state=3
    ).fit(X, y)
    assert len(clf.validation_loss_curve_) == clf.n_epochs_
    assert clf.best_validation_loss_ == min(clf.validation_loss_curve_)
    # Training went on past the best epoch, so its weights had to be put back.
    assert np.argmin(clf.validation_loss_curve_) < clf.n_epochs_ - 1
    # The kept weights are those of the best epoch: their validation loss is the lowest one.
    _, val_idx = split_validation(
        np.unique(y, return_inverse=True)[1], 0.3, draw_seed(clf.random_state)
    )
    logits = torch.from_numpy(clf._logits_numpy(list(X[val_idx].astype(np.float32))))
    targets = torch.as_tensor(np.unique(y, return_inverse=True)[1][val_idx])
    loss = torch.nn.functional.cross_entropy(logits, targets).item()
    assert loss == pytest.approx(clf.best_validation_loss_, rel=1e-5)


def test_a_classifier_without_its_hooks_cannot_be_made():
    class Incomplete(TorchClassifierMixin, ClassifierMixin, BaseEstimator):
        def _check_fit_data(self, X, y):
            return X, y

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()


def test_training_settings_are_frozen():
    settings = TrainingSettings(
        lr=1e-3,
        batch_size=8,
        weight_decay=0.0,
        warmup_fraction=0.0,
        validation_fraction=None,
        n_iter_no_change=2,
        verbose=0,
        device="cpu",
        amp_dtype=torch.float32,
        seed=0,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.lr = 1.0


@pytest.mark.parametrize("cls", [TransformerClassifier, SequenceClassifier, ImageClassifier])
@pytest.mark.parametrize(
    "params, message",
    [
        ({"lr": 0}, r"'lr' parameter of \w+ must be a float in the range \(0\.0, inf\)\. Got 0"),
        ({"batch_size": 2.5}, r"'batch_size' parameter of \w+ must be an int .*Got 2\.5 instead"),
        ({"warmup_fraction": 1}, r"'warmup_fraction' .* range \[0\.0, 1\.0\)\. Got 1 instead"),
        (
            {"validation_fraction": 0},
            r"'validation_fraction' .*Got 0 .*None trains on all the data",
        ),
        ({"class_weight": "even"}, r"'class_weight' .*Got 'even' .*\{label: weight\}"),
        ({"precision": "half"}, r"'precision' .*'float32'.*Got 'half' instead"),
        ({"verbose": -1}, r"'verbose' .*range \[0, inf\).*Got -1 instead"),
    ],
)
def test_shared_training_parameters_are_checked_before_any_loading(cls, params, message):
    # Nothing is loaded or tokenised: the check comes first, so even a bad X is not reached.
    with pytest.raises(InvalidParameterError, match=message):
        cls(**params).fit(None, None)


@pytest.mark.parametrize("cls", [TransformerClassifier, ImageClassifier])
def test_unfreeze_keeps_its_fix_it_wording(cls):
    with pytest.raises(
        InvalidParameterError, match=r"'unfreeze' .*Got 'top' instead.*integer >= 0.*'all'"
    ):
        cls(unfreeze="top").fit(None, None)


def test_balanced_class_weights_are_inverse_class_frequencies():
    y_idx = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2])  # 6, 2 and 1 of 9
    weights = class_weight_vector("balanced", np.array(["a", "b", "c"]), y_idx)
    assert weights.dtype == np.float32
    np.testing.assert_array_equal(weights, np.float32([9 / 18, 9 / 6, 9 / 3]))
    dict_weights = class_weight_vector({"c": 2.5}, np.array(["a", "b", "c"]), y_idx)
    np.testing.assert_array_equal(dict_weights, np.float32([1, 1, 2.5]))
    with pytest.raises(
        InvalidParameterError, match=r"class_weight\['a'\]. parameter must be a float"
    ):
        class_weight_vector({"a": -1.0}, np.array(["a", "b", "c"]), y_idx)


class _RegressionLoop(EpochLoop):
    """Least squares on ten rows in two batches: the loop with the smallest model."""

    def __init__(self, weight, val_losses=None, **kwargs):
        settings = dict(epochs=4, steps_per_epoch=2, device="cpu", amp_dtype=torch.float32)
        settings.update(weight_decay=0.0, warmup_fraction=0.0, n_iter_no_change=2)
        super().__init__([([("w", weight)], 0.1)], **{**settings, **kwargs})
        generator = torch.Generator().manual_seed(0)
        self.x = torch.randn(10, 3, generator=generator)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5])
        self.val_losses = list(val_losses) if val_losses is not None else None
        self.steps = []

    def epoch_batches(self, epoch):
        return [np.arange(0, 6), np.arange(6, 10)]

    def batch_loss(self, idx):
        return ((self.x[idx] @ self.parameters[0] - self.y[idx]) ** 2).mean(), len(idx)

    def train_step(self, batch):
        self.steps.append(len(batch))
        return super().train_step(batch)

    def validation_step(self):
        if self.val_losses is None:
            return None
        self.weights_seen = [*getattr(self, "weights_seen", []), self.snapshot()[0]]
        return self.val_losses.pop(0)


def test_epoch_loop_runs_its_named_steps_and_one_can_be_replaced():
    weight = torch.nn.Parameter(torch.zeros(3))
    loop = _RegressionLoop(weight)
    loop.make_optimizer = lambda: torch.optim.SGD(loop.parameters, lr=0.1)
    history = loop.fit_loop()
    assert isinstance(loop.optimizer, torch.optim.SGD)
    assert loop.steps == [6, 4] * 4 and history.n_iter == 8 and len(history.loss) == 4
    assert history.loss[-1] < 0.8 * history.loss[0] and history.val_loss == []
    assert history.best_epoch is None and history.time > 0


def test_epoch_loop_stops_early_and_restores_the_best_epoch():
    weight = torch.nn.Parameter(torch.zeros(3))
    loop = _RegressionLoop(weight, val_losses=[3.0, 1.0, 2.0, 2.5])
    history = loop.fit_loop()
    # Epochs 3 and 4 do not improve on epoch 2: training stops after epoch 4 (2 bad epochs).
    assert len(history.loss) == 4 and history.best_epoch == 2
    torch.testing.assert_close(weight.detach(), loop.weights_seen[1])
    assert not torch.equal(weight.detach(), loop.weights_seen[3])


def test_histories_of_stages_join_in_order():
    first = TrainingHistory(loss=[3.0, 2.0], val_loss=[2.5], n_iter=4, time=1.0)
    second = TrainingHistory(loss=[1.0], val_loss=[1.5], n_iter=2, time=0.5)
    joined = TrainingHistory.joined([first, second])
    assert joined.loss == [3.0, 2.0, 1.0] and joined.val_loss == [2.5, 1.5]
    assert (joined.n_iter, joined.time) == (6, 1.5)


# ------------------------------------------------------------------ divergence
class _PoisonedLoop(_RegressionLoop):
    """The regression loop with one batch an epoch, whose step sets the weights to ``value``."""

    def __init__(self, weight, value, **kwargs):
        super().__init__(weight, **kwargs)
        self.value = value

    def epoch_batches(self, epoch):
        return [np.arange(10)]

    def optimizer_step(self, loss):
        super().optimizer_step(loss)
        with torch.no_grad():
            self.parameters[0].fill_(self.value)


def test_a_non_finite_loss_stops_training_naming_the_epoch_and_the_way_out():
    weight = torch.nn.Parameter(torch.zeros(3))
    loop = _RegressionLoop(weight, rate_names=("lr", "body_lr"))
    loop.x[7, 0] = float("inf")  # the second batch of every epoch
    with pytest.raises(
        TrainingDivergedError,
        match=r"^fit: training diverged at epoch 1 \(the loss is (inf|nan)\); "
        r"lower lr, body_lr or weight_decay\.$",
    ):
        loop.fit_loop()
    assert isinstance(TrainingDivergedError("x"), ValueError)


@pytest.mark.parametrize(
    "value, what",
    [(float("nan"), "the trained weights are not finite"), (1e30, "the trained weights give")],
)
def test_weights_that_end_non_finite_or_overflowing_are_never_returned(value, what):
    # The last step's loss is finite; only the weights it leaves show the problem.
    loop = _PoisonedLoop(torch.nn.Parameter(torch.zeros(3)), value, epochs=1)
    with pytest.raises(TrainingDivergedError, match=f"at epoch 1 \\({what}"):
        loop.fit_loop()


def test_a_non_finite_validation_loss_stops_training():
    loop = _RegressionLoop(torch.nn.Parameter(torch.zeros(3)), val_losses=[1.0, float("nan")])
    with pytest.raises(TrainingDivergedError, match=r"epoch 2 \(the validation loss is nan\)"):
        loop.fit_loop()


def test_float16_loss_scaling_skips_an_overflowing_step_and_trains_on():
    weight = torch.nn.Parameter(torch.zeros(3))
    loop = _RegressionLoop(weight, epochs=2, amp_dtype=torch.float16)
    losses = []

    def batch_loss(idx, batch_loss=loop.batch_loss):
        loss, n = batch_loss(idx)
        losses.append(loss)
        return (loss * float("inf") if len(losses) == 1 else loss), n

    loop.batch_loss = batch_loss
    history = loop.fit_loop()
    assert loop.scaler is not None and loop.scaler.get_scale() < 2.0**16  # the step was skipped
    assert np.isfinite(history.loss).all() and torch.isfinite(weight).all()
    assert weight.abs().sum() > 0  # the other steps trained


def test_settings_that_make_divergence_certain_are_refused_before_training():
    X, y = blobs()
    for params, match in [
        ({"class_weight": {"a": 0, "b": 0.0}}, r"class_weight=.* weighs every class of y 0"),
        ({"weight_decay": float("inf")}, r"'weight_decay' .*\[0\.0, inf\)\. Got inf"),
        ({"weight_decay": 1e30}, r"weight_decay=1e\+30, lr=0\.5\) multiplies the weights by"),
    ]:
        with pytest.raises(InvalidParameterError, match=match):
            LinearClassifier(**params).fit(X, y)


def test_a_batch_of_zero_weighted_rows_adds_no_loss():
    # One row a batch: every batch of class "a" weighs 0 (torch's weighted mean is 0 / 0 there).
    X, y = blobs(n=20)
    clf = LinearClassifier(batch_size=1, epochs=2, class_weight={"a": 0.0}).fit(X, y)
    assert np.isfinite(clf.loss_curve_).all()
    assert np.isfinite(clf.predict_proba(X)).all()
    assert (clf.predict(X[y == "b"]) == "b").all()
