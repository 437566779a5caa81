"""Behaviour shared by the estimators that take raw text."""

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._param_validation import ConstraintTableMixin


class TextInputMixin(ConstraintTableMixin):
    """Declare raw-text input to scikit-learn (as ``HashingVectorizer`` does).

    Through ``ConstraintTableMixin``, the class's ``_parameter_constraints``
    is put in scikit-learn's schema when the class is defined.
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
