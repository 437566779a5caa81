"""Where the benchmarks find the research data sets they read.

The data sets (SST-2, MR, TREC-6, AG News, BBC News, the hymenoptera photos)
are not distributed with embedxfer. Each script's ``--data`` names a folder
holding one subfolder per data set (``sst2/train.csv``, ``mr/all.csv``,
``bbc_news/all.csv``, ``hymenoptera/train/<class>/``...), every CSV with
``text`` and ``label`` columns. Its default is the ``EMBEDXFER_DATA``
environment variable, else ``data`` in the current folder.
"""

import os
from pathlib import Path

#: The default ``--data`` folder.
DATA_DIR = Path(os.environ.get("EMBEDXFER_DATA") or "data")
