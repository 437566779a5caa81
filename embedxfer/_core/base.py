"""Behaviour shared by the estimators that take raw input (texts, image paths, images)."""

import numpy as np
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from .param_validation import ConstraintTableMixin, validate_params


class StoredAttributesDisplayMixin:
    """List only stored fitted attributes in scikit-learn's HTML display.

    scikit-learn finds fitted attributes with ``inspect.getmembers``, which
    evaluates every property. ``keyed_vectors_``, ``model_`` and ``table_``
    load a model (or distil a table) when read, so showing an estimator in a
    notebook would load it, or fail where its files are missing.
    """

    def _get_fitted_attr_html(self, doc_link=""):
        from sklearn.base import BaseEstimator

        shown = BaseEstimator._get_fitted_attr_html(_StoredAttributes(vars(self)), doc_link)
        shown.estimator_class = type(self)
        return shown


class _StoredAttributes:
    """An estimator's instance attributes, without its class's properties."""

    def __init__(self, attributes):
        self.__dict__.update(attributes)


class RawInputMixin(StoredAttributesDisplayMixin, ConstraintTableMixin):
    """Declare non-tabular input (texts, paths, images) to scikit-learn.

    As ``HashingVectorizer`` does: ``X`` is a sequence of items, not a 2-D
    array, so scikit-learn's common checks feed it strings.

    Through ``ConstraintTableMixin``, the class's ``_parameter_constraints``
    is put in scikit-learn's schema when the class is defined; through
    ``StoredAttributesDisplayMixin``, displaying it loads nothing.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        return tags


class EmbedderOutputMixin:
    """Feature names ``{prefix}{i}`` for an embedder with ``n_features_out_``.

    Subclasses define ``_feature_prefix()``; ``TransformerMixin`` then gives
    ``set_output(transform="pandas")``.
    """

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns, e.g. ``glove50_mean0`` ... ``glove50_mean49``.

        Parameters
        ----------
        input_features : ignored
            Present for API consistency.

        Returns
        -------
        feature_names_out : ndarray of str
        """
        check_is_fitted(self)
        prefix = self._feature_prefix()
        return np.asarray([f"{prefix}{i}" for i in range(self.n_features_out_)], dtype=object)


class ParamsAddedLaterMixin:
    """Read pickles made before some parameters existed.

    ``_params_added_later`` maps each parameter added after estimators of
    the class were first pickled (or saved) to the value that describes how
    those were fitted. Unpickling fills the missing ones in, in the
    parameters and in the ``_fitted_params`` that ``FitParamsMixin``
    compares them with. The torch estimators' ``load`` reads the same table
    for folders saved before.
    """

    _params_added_later = {}

    def __setstate__(self, state):
        state = {**self._params_added_later, **state}
        fitted = state.get("_fitted_params")
        if isinstance(fitted, dict):
            state["_fitted_params"] = {**self._params_added_later, **fitted}
        super().__setstate__(state)


class ProcessOptInsMixin:
    """Opt-ins that let a file run code come from the running program, never from a file.

    ``allow_pickle=True`` lets an estimator unpickle the vector file it names,
    which runs code. A saved estimator names its file and carries its
    parameters, so restoring that opt-in from the saved estimator would let
    whoever can edit the saved file choose code for the loader to run.
    skops (whose promise is that loading a file runs no code) and ``load``
    therefore set every parameter in ``_PROCESS_OPT_INS`` back to its safe
    value; the program sets it again where it wants it.

    Pickle, joblib and ``copy.deepcopy`` keep it: a pickle can run code by
    itself, and they carry estimators between the processes of one program
    (``GridSearchCV(n_jobs=...)``, Dask), where the opt-in must survive.
    They call ``__reduce_ex__``, which skops does not.
    """

    _PROCESS_OPT_INS = {"allow_pickle": False}

    def __setstate__(self, state):
        if isinstance(state, dict):
            state = _with_opt_ins(state, self._PROCESS_OPT_INS)
        super().__setstate__(state)

    def __reduce_ex__(self, protocol):
        return _unpickle_keeping_opt_ins, (type(self), self.__getstate__())


def _with_opt_ins(state, values):
    """``state`` with ``values`` for the opt-ins it holds, in ``_fitted_params`` too."""
    state = {**state, **{k: v for k, v in values.items() if k in state}}
    fitted = state.get("_fitted_params")
    if isinstance(fitted, dict):
        state["_fitted_params"] = {**fitted, **{k: v for k, v in values.items() if k in fitted}}
    return state


def _unpickle_keeping_opt_ins(cls, state):
    """Pickle's and deepcopy's way back: ``__setstate__``, then the opt-ins as they were."""
    estimator = cls.__new__(cls)
    estimator.__setstate__(state)
    fitted, restored = state.get("_fitted_params"), estimator.__dict__.get("_fitted_params")
    for name in cls._PROCESS_OPT_INS:
        if name in state:
            estimator.__dict__[name] = state[name]
        if isinstance(fitted, dict) and isinstance(restored, dict) and name in fitted:
            restored[name] = fitted[name]
    return estimator


class FitParamsMixin:
    """Refuse to mix fitted state with parameters changed after ``fit``.

    ``fit`` stores ``self._fitted_params = self._params_fit_depends_on()``;
    the transforming methods call ``_check_params_unchanged()``. Parameters
    in ``_INFERENCE_PARAMS`` (what inference reads) may change freely.
    """

    _INFERENCE_PARAMS = ()
    _FITTED_STATE = "its fitted state"

    def _params_fit_depends_on(self):
        params = self.get_params(deep=False)
        for name in self._INFERENCE_PARAMS:
            params.pop(name, None)
        return params

    def _check_params_unchanged(self):
        validate_params(self, self._INFERENCE_PARAMS)
        fitted = self.__dict__.get("_fitted_params")
        if fitted is None:
            raise NotFittedError(
                f"This {type(self).__name__}'s last fit did not complete; call fit again."
            )
        current = self._params_fit_depends_on()
        changed = sorted(k for k in current if not _same_param(current[k], fitted.get(k)))
        if changed:
            raise ValueError(
                f"parameters {changed} changed since this {type(self).__name__} was fitted; "
                f"{self._FITTED_STATE} belongs to the old values. Call fit again (or set them "
                "back)."
            )


def _same_param(a, b):
    if a is b:
        return True
    try:
        return bool(a == b)
    except (ValueError, TypeError):  # e.g. arrays: compare by identity only
        return False
