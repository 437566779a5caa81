"""Every error and warning embedxfer raises, in one hierarchy.

Catch :class:`EmbedxferError` for any error of the package's own, or
:class:`EmbedxferWarning` to filter its warnings; each class also subclasses
the built-in exception that code written against the standard library
catches (``ValueError`` for a bad value, ``ConnectionError`` for a model that
cannot be downloaded), so ``except ValueError`` keeps working.

::

    EmbedxferError
     +-- InvalidParameterError   (ValueError, TypeError; scikit-learn's InvalidParameterError)
     +-- VectorFormatError       (ValueError)
     |    +-- UnsafeVectorFileError
     +-- ImageReadError          (ValueError)
     +-- ColumnNotFoundError     (ValueError)
     +-- UnknownModelError       (ValueError)
     +-- ModelUnavailableError   (ConnectionError, RuntimeError)
     +-- SavedModelError         (ValueError)
     +-- OutputFolderError       (ValueError)
     +-- TrainingDivergedError   (ValueError)
     +-- CLIError
    EmbedxferWarning             (UserWarning)
     +-- EmptyDocumentWarning
     +-- NotCachedWarning
     +-- CacheWarning
     +-- TruncationWarning
     +-- BatchSizeWarning        (RuntimeWarning)
     +-- ImageReadWarning
     +-- VectorFileWarning
     +-- SavedModelWarning

Errors that are not about embedxfer's input (a missing optional dependency,
a file that does not exist, an interrupted download) keep their built-in
types: ``ImportError``, ``FileNotFoundError``, ``OSError``.
"""

from sklearn.utils._param_validation import (
    InvalidParameterError as _SklearnInvalidParameterError,
)

__all__ = [
    "BatchSizeWarning",
    "CacheWarning",
    "CLIError",
    "ColumnNotFoundError",
    "EmbedxferError",
    "EmbedxferWarning",
    "EmptyDocumentWarning",
    "ImageReadError",
    "ImageReadWarning",
    "InvalidParameterError",
    "ModelUnavailableError",
    "NotCachedWarning",
    "OutputFolderError",
    "SavedModelError",
    "SavedModelWarning",
    "TrainingDivergedError",
    "TruncationWarning",
    "UnknownModelError",
    "UnsafeVectorFileError",
    "VectorFileWarning",
    "VectorFormatError",
]


class EmbedxferError(Exception):
    """Base class of every error embedxfer raises about its input or its models."""


class InvalidParameterError(EmbedxferError, _SklearnInvalidParameterError):
    """An estimator's parameter has a value or type it does not accept.

    A subclass of scikit-learn's ``InvalidParameterError`` (so scikit-learn's
    ``check_param_validation`` recognises it), and through it of both
    ``ValueError`` and ``TypeError``. The message names the parameter and the
    estimator, what it accepts, the value given and the way out.
    """


class VectorFormatError(EmbedxferError, ValueError):
    """A vector file is of an unknown format, truncated or corrupt."""


class UnsafeVectorFileError(VectorFormatError):
    """A vector file is a pickle, which is only loaded with ``allow_pickle=True``."""


class ImageReadError(EmbedxferError, ValueError):
    """An image could not be read or decoded; the message names it and its index."""


class ColumnNotFoundError(EmbedxferError, ValueError):
    """A named column is not in the file; the message lists the columns it has."""


class UnknownModelError(EmbedxferError, ValueError):
    """A model name that is neither a known name, a hub id nor an existing path."""


class ModelUnavailableError(EmbedxferError, ConnectionError, RuntimeError):
    """A model cannot be loaded where it is needed.

    Raised when a model must be downloaded while the network cannot be used
    (the command line checks before it starts), and when a Dask worker cannot
    load an estimator's model (the message names the worker and the path).
    Subclasses ``ConnectionError`` and ``RuntimeError`` so that either
    ``except`` clause catches it.
    """


class SavedModelError(EmbedxferError, ValueError):
    """A saved classifier folder does not follow the saved format; names the file and the field."""


class OutputFolderError(EmbedxferError, ValueError):
    """An output folder holds files a job cannot prove it wrote, or a damaged job manifest."""


class TrainingDivergedError(EmbedxferError, ValueError):
    """Training produced a non-finite loss or non-finite weights, so no model is returned.

    The message names the estimator's training stage, the epoch and the
    parameters to lower (the learning rates, ``weight_decay``).
    """


class CLIError(EmbedxferError):
    """A problem with a command's input, reported as one line without a traceback."""


class EmbedxferWarning(UserWarning):
    """Base class of every warning embedxfer issues."""


class EmptyDocumentWarning(EmbedxferWarning):
    """Some documents had no in-vocabulary token and were embedded as zeros."""


class NotCachedWarning(EmbedxferWarning):
    """An input could not be fingerprinted safely, so its vectors are not cached."""


class TruncationWarning(EmbedxferWarning):
    """Documents longer than the encoder's token limit were truncated."""


class BatchSizeWarning(EmbedxferWarning, RuntimeWarning):
    """A batch ran out of device memory and encoding went on with a smaller batch."""


class CacheWarning(EmbedxferWarning):
    """Damaged vectors in a disk embedding cache were dropped; their documents are encoded again."""


class ImageReadWarning(EmbedxferWarning):
    """Images could not be read and were embedded as zeros (``on_error="zero"``)."""


class VectorFileWarning(EmbedxferWarning):
    """A vector file was repaired on loading, or a stale converted copy was ignored.

    Repairs drop non-finite vectors or duplicate words.
    """


class SavedModelWarning(EmbedxferWarning):
    """A saved classifier folder without checksums of its files (saved by an earlier version).

    It loads after the checks its fields and tensor shapes allow; saving it
    again adds the checksums.
    """
