"""Datasets shipped inside the package (``embedxfer/datasets/data``)."""

import csv
import gzip
import io
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from .._core.optional import import_optional

DATA_DIR = Path(__file__).resolve().parent / "data"
SMS_SPAM_FILE = DATA_DIR / "sms_spam.csv.gz"

_SMS_SPAM_DESCR = """\
SMS Spam Collection v.1 (Almeida & Gomez Hidalgo, 2011)
--------------------------------------------------------

5,574 English SMS messages labelled ham (4,827, target 0) or spam (747,
target 1). Real, informal messages: abbreviations, slang, phone numbers and
prices. About 400 texts occur more than once, as in the original.

Source: UCI Machine Learning Repository, "SMS Spam Collection",
https://archive.ics.uci.edu/dataset/228/sms+spam+collection
Creators: Tiago A. Almeida and Jose Maria Gomez Hidalgo.
Licence: Creative Commons Attribution 4.0 International (CC BY 4.0),
https://creativecommons.org/licenses/by/4.0/ (full text in
embedxfer/datasets/data/LICENSE-CC-BY-4.0.txt).
Changes: converted from tab-separated label/text to CSV (text,label) and
gzip-compressed; no message edited, added or removed.

Please cite: Almeida, T. A., Gomez Hidalgo, J. M., and Yamakami, A. (2011).
Contributions to the Study of SMS Spam Filtering: New Collection and
Results. Proceedings of the 2011 ACM Symposium on Document Engineering
(DocEng'11), Mountain View, CA, USA.
"""


def load_sms_spam(*, as_frame=False, return_X_y=False):
    """Load the SMS Spam Collection shipped with embedxfer (5,574 messages, 2 classes).

    A real, freely licensed (CC BY 4.0) labelled text dataset that needs no
    download: ``embedxfer demo`` runs on it. Attribution and licence are in
    ``DESCR`` and in ``embedxfer/datasets/data/README.md``.

    =================   ====================
    Classes                                2
    Samples total                       5574
    Samples per class   ham 4827, spam 747
    Features                text (SMS, str)
    =================   ====================

    Parameters
    ----------
    as_frame : bool, default=False
        Return ``data`` as a pandas Series named ``"text"``, ``target`` as
        a Series named ``"target"`` and add ``frame``, a DataFrame with
        both. Needs pandas.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a Bunch.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``data`` (list of str, in the original order), ``target`` (ndarray
        of int: 0 ham, 1 spam), ``target_names`` (``array(['ham', 'spam'])``),
        ``frame`` (DataFrame or ``None``), ``DESCR`` and ``filename``.
    (data, target) : tuple
        With ``return_X_y=True``.

    See Also
    --------
    load_csv : Load your own labelled texts from CSV, JSON Lines or Parquet.

    Examples
    --------
    >>> from embedxfer.datasets import load_sms_spam
    >>> sms = load_sms_spam()
    >>> len(sms.data), sms.target_names.tolist()
    (5574, ['ham', 'spam'])
    >>> print(sms.data[2][:34], "->", sms.target_names[sms.target[2]])
    Free entry in 2 a wkly comp to win -> spam
    """
    with gzip.open(SMS_SPAM_FILE, "rt", encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(io.StringIO(fh.read(), newline="")))
    if rows[0] != ["text", "label"]:  # pragma: no cover - guards the shipped file
        raise RuntimeError(f"{SMS_SPAM_FILE} has header {rows[0]}; expected ['text', 'label'].")
    texts = [row[0] for row in rows[1:]]
    names = np.array(["ham", "spam"])
    target = np.searchsorted(names, np.array([row[1] for row in rows[1:]])).astype(np.int64)
    frame = None
    data = texts
    if as_frame:
        pd = import_optional("pandas", "as_frame=True needs pandas; pip install pandas.")
        data = pd.Series(texts, name="text", dtype=object)
        target = pd.Series(target, name="target")
        frame = pd.concat([data, target], axis=1)
    if return_X_y:
        return data, target
    return Bunch(
        data=data,
        target=target,
        target_names=names,
        frame=frame,
        DESCR=_SMS_SPAM_DESCR,
        filename=str(SMS_SPAM_FILE),
    )
