"""The outline of ``fit`` and prediction shared by the torch classifiers.

``TransformerClassifier``, ``SequenceClassifier`` and ``ImageClassifier``
differ in the network they train and the inputs they feed it; they
implement the abstract hooks of ``TorchClassifierMixin`` (prepare the
network, yield its training stages, keep the fitted runtime, compute
logits) and inherit the rest: labels, seeding, the validation split,
training with early stopping, prediction, pickling and save / load.
"""

import abc

import numpy as np
from sklearn.utils.validation import check_is_fitted

from .._core.device import (
    import_torch,
    resolve_device,
)
from .._core.param_validation import validate_params
from .._core.validation import check_documents
from .data import TrainingData, class_weight_vector, encode_labels, split_validation
from .loop import (
    ClassifierLoop,
    TrainingHistory,
    class_weighted_loss,
    draw_seed,
    seeded_torch,
    set_training_mode,
)
from .persistence import SavedWeightsMixin
from .settings import TrainingSettings, check_decay_rates, resolve_precision


# ------------------------------------------------------------------- mixin
class TorchClassifierMixin(SavedWeightsMixin, abc.ABC):
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
        rates = {"lr": self.lr, "body_lr": getattr(self, "body_lr", None)}
        check_decay_rates(type(self).__name__, self.weight_decay, rates)
        import_torch()
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
        loss_fn = class_weighted_loss(weights, device)
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

    # save / load (SavedWeightsMixin) ----------------------------------
    def _saved_fitted_attributes(self):
        return {
            "loss_curve_": self.loss_curve_,
            "validation_loss_curve_": self.validation_loss_curve_,
            "best_validation_loss_": self.best_validation_loss_,
            "n_epochs_": self.n_epochs_,
            "n_iter_": self.n_iter_,
            "fit_time_": self.fit_time_,
        }

    @classmethod
    def _expected_tensors(cls, config):
        """``({name: shape}, prefixes)`` of the tensors a checked ``config`` goes with."""
        n_classes = len(config["classes"]["values"])
        width = config["n_features_out_"]
        head = {"head.linear.weight": (n_classes, width), "head.linear.bias": (n_classes,)}
        return head, ()
