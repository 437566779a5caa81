"""Which tests read the data sets beside the project, found from the test files' source.

``.ci/run`` runs the suite twice where ``../shared/data`` exists: as the
checkout sees it, then with ``EMBEDXFER_NO_SHARED=1`` as a fresh clone does.
Only the tests that can read that data behave differently the second time, so
only they run again. They are found by reading the test folder's source, not by
a hand-kept list, so that a new test reading the data is never left out:

- in a module that imports a reader (``_shared_data``, ``_image_data``),
  directly or through another file of the test folder: a test whose code
  (decorators included) uses the names imported from one, or a helper,
  fixture or constant of the module that does, at any depth;
- in any module: a test asking for a fixture of ``conftest.py`` whose code
  does the same.

The selection errs towards running more: any use of a name counts, whether
or not that line runs.
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


def definitions_reading_shared_data(path, readers=READERS):
    """The top-level definitions of a file whose code can read the data sets.

    A function, class or assigned name counts when its code (decorators
    included) uses a name the file imports from a module of ``readers``,
    imports such a module itself, or uses another definition that counts. A
    function counts too when one of its parameters (a fixture it asks for) or
    a string in its code (``request.getfixturevalue``) names one; a fixture
    counts under its ``name=`` too.

    Parameters
    ----------
    path : path-like
        A test module or ``conftest.py``.
    readers : set of str, default=READERS
        Stems of the modules through which the data is read: the readers and
        every module reaching one (:func:`modules_reading_shared_data`).

    Returns
    -------
    names : set of str
        The definitions that count.
    everything : bool
        Whether code outside any definition counts (a ``pytestmark``, a loop
        making tests): then every test of the file counts.
    """
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    definitions = [node for node in tree.body if _defined_names(node)]
    module_code = [node for node in tree.body if not _defined_names(node)]
    seeds = set(readers).union(*(_names_imported_from(node, readers) for node in module_code))
    uses = {}
    for node in definitions:
        used = _used_names(node) | (_imported_modules(node) & set(readers))
        for name in _defined_names(node):
            uses[name] = uses.get(name, set()) | used
    names = _reached(uses, seeds)
    everything = "pytestmark" in names or any(
        _used_names(node) & (seeds | names) for node in module_code
    )
    return names, everything


def fixtures_reading_shared_data(conftest):
    """Names of the fixtures and functions of ``conftest`` that can read the data sets.

    Parameters
    ----------
    conftest : path-like
        The test folder's ``conftest.py``.

    Returns
    -------
    set of str
        :func:`definitions_reading_shared_data`'s names for it.
    """
    folder = Path(conftest).parent
    return definitions_reading_shared_data(conftest, modules_reading_shared_data(folder))[0]


def _defined_names(node):
    """The names a top-level statement defines (nothing for other statements)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return {node.name} | {
            keyword.value.value
            for decorator in node.decorator_list
            if isinstance(decorator, ast.Call)
            for keyword in decorator.keywords
            if keyword.arg == "name" and isinstance(keyword.value, ast.Constant)
        }
    if isinstance(node, ast.ClassDef):
        return {node.name}
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        targets = [node.target]
    else:
        return set()
    return {n.id for target in targets for n in ast.walk(target) if isinstance(n, ast.Name)}


def _used_names(node):
    """Names, parameters and strings in a statement's code, at any depth."""
    used = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            used.add(n.id)
        elif isinstance(n, ast.arg):
            used.add(n.arg)
        elif isinstance(n, ast.Constant) and isinstance(n.value, str):
            used.add(n.value)
    return used


def _names_imported_from(node, modules):
    """Names bound by the imports of ``modules`` in a statement, at any depth."""
    names = set()
    for n in ast.walk(node):
        if isinstance(n, ast.ImportFrom) and n.module and not n.level:
            if n.module.split(".")[0] in modules:
                names.update(alias.asname or alias.name for alias in n.names)
        elif isinstance(n, ast.Import):
            names.update(
                alias.asname or alias.name.split(".")[0]
                for alias in n.names
                if alias.name.split(".")[0] in modules
            )
    return names


def _reached(uses, seeds):
    """The keys of ``uses`` whose set meets ``seeds`` or another such key, transitively."""
    found = set()
    while True:
        reached = {key for key, used in uses.items() if used & (seeds | found)} - found
        if not reached:
            return found
        found |= reached
