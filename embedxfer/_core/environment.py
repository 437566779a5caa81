"""Where embedxfer keeps its files, and whether it may download.

One home for the two environment switches every loader reads: the folder
for converted vectors and exported graphs (``EMBEDXFER_HOME``, else the
user cache folder) and the offline switch.
"""

import os
from pathlib import Path

__all__ = ["OFFLINE_VARIABLES", "home_folder", "offline"]

# Any of these set (to anything but "", "0" or "false") forbids downloads:
# embedxfer's own switch and those of the libraries it downloads through.
OFFLINE_VARIABLES = (
    "EMBEDXFER_OFFLINE",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "GENSIM_DATA_OFFLINE",
)


def offline():
    """Whether an environment variable of ``OFFLINE_VARIABLES`` forbids downloads.

    A variable counts as set unless it is empty, ``"0"`` or ``"false"``
    (in any case).
    """
    return any(
        os.environ.get(var, "").lower() not in ("", "0", "false") for var in OFFLINE_VARIABLES
    )


def home_folder(*parts):
    """``$EMBEDXFER_HOME`` (else the user cache folder), joined with ``parts``.

    Parameters
    ----------
    *parts : str
        Sub-folder names, e.g. ``home_folder("vectors")``.

    Returns
    -------
    pathlib.Path
        The folder; not created.

    Raises
    ------
    NotADirectoryError
        When ``EMBEDXFER_HOME`` names an existing file.
    """
    home = os.environ.get("EMBEDXFER_HOME")
    if home:
        folder = Path(home).expanduser()
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(
                f"EMBEDXFER_HOME={home} is a file, not a folder; point EMBEDXFER_HOME at a "
                "folder (created when missing)."
            )
        return folder.joinpath(*parts)
    import platformdirs

    return Path(platformdirs.user_cache_dir("embedxfer")).joinpath(*parts)
