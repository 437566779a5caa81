"""Datasets: a real labelled corpus shipped with the package, and file loaders.

``load_sms_spam`` needs no download (the SMS Spam Collection, CC BY 4.0,
attribution in ``DESCR`` and ``data/README.md``); ``load_csv`` reads your own
labelled texts from CSV, TSV, JSON Lines or Parquet.
"""

from ._files import ColumnNotFoundError, load_csv, load_text_lines
from ._packaged import load_sms_spam

__all__ = ["load_sms_spam", "load_csv", "load_text_lines", "ColumnNotFoundError"]
