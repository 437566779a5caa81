"""Which tests read the data sets beside the project, found from the test files' source.

``.ci/run`` runs the suite twice where ``../shared/data`` exists: as the
checkout sees it, then with ``EMBEDXFER_NO_SHARED=1`` as a fresh clone does.
Only the tests that can read that data behave differently the second time, so
only they run again. They are found by reading the test folder's imports, not by
a hand-kept list, so that a new test reading the data is never left out:

- a module that imports a reader (``_shared_data``, ``_image_data``), directly
  or through another file of the test folder, anywhere in its code;
- a test of any module that asks for a fixture of ``conftest.py`` whose code
  uses a reader's names, directly or through another such fixture.

The selection errs towards running more: a whole module counts as soon as any
of its code reads the data.
"""

import ast
from pathlib import Path

#: The test folder's modules through which ``../shared/data`` is read.
READERS = frozenset({"_shared_data", "_image_data"})


def _imported_modules(tree):
    """Top-level names of the modules a parsed file imports, at any depth of its code."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def modules_reading_shared_data(folder):
    """Stems of the files in ``folder`` that import a reader, directly or through each other.

    Parameters
    ----------
    folder : path-like
        The test folder.

    Returns
    -------
    set of str
        The readers themselves and every module that reaches one of them.
    """
    imports = {
        path.stem: _imported_modules(ast.parse(path.read_text(encoding="utf-8")))
        for path in Path(folder).glob("*.py")
    }
    return set(READERS) | _reached(imports, READERS)


def fixtures_reading_shared_data(conftest):
    """Names of the functions in ``conftest`` whose code uses a reader's imported names.

    A function counts too when one of its parameters (a fixture it asks for)
    names a function that counts.

    Parameters
    ----------
    conftest : path-like
        The test folder's ``conftest.py``.

    Returns
    -------
    set of str
    """
    tree = ast.parse(Path(conftest).read_text(encoding="utf-8"))
    tainted = set(READERS)
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module in READERS:
            tainted.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            tainted.update(alias.asname for alias in node.names if alias.name in READERS)
    tainted.discard(None)
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    uses = {
        name: {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        | {argument.arg for argument in node.args.args}
        for name, node in functions.items()
    }
    return _reached(uses, tainted)


def _reached(uses, seeds):
    """The keys of ``uses`` whose set meets ``seeds`` or another such key, transitively."""
    found = set()
    while True:
        reached = {key for key, used in uses.items() if used & (seeds | found)} - found
        if not reached:
            return found
        found |= reached
