"""numpydoc validation of the public API's docstrings (as skrub and scikit-learn do).

Every public class and function, and every public method or property a public
class defines itself, goes through numpydoc's ``validate``. The few checks left
out are listed in ``IGNORED`` with the reason. The API reference page lists
every public name too, so nothing public is missing from the documentation.
"""

import importlib
import inspect
import re
from pathlib import Path

import pytest

numpydoc_validate = pytest.importorskip("numpydoc.validate")

import embedxfer

PUBLIC_MODULES = (
    "embedxfer",
    "embedxfer.dask",
    "embedxfer.datasets",
    "embedxfer.exceptions",
    "embedxfer.image",
)
API_PAGE = Path(__file__).resolve().parents[1] / "docs" / "api.md"

IGNORED = {
    # A one-line summary says all there is to say about most methods.
    "ES01": "no extended summary",
    # Not every object has a related one worth pointing to.
    "SA01": "no See Also section",
    # scikit-learn's convention names what is returned (``self : object``,
    # ``X_new : ndarray``); numpydoc would have the type alone.
    "RT02": "a named return value",
}
# Methods, properties and exceptions are shown in their class's or their
# module's examples; classes and functions carry their own.
IGNORED_FOR_MEMBERS = {"EX01": "no Examples section"}
# Examples that need a running Dask cluster are in the user guide, not here.
NO_EXAMPLES = {
    "embedxfer.dask.check_workers",
    "embedxfer.dask.embed_to_parquet",
    "embedxfer.dask.local_cluster",
}


def public_names():
    """Import paths of every public class, function, and class member to validate."""
    names = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.ismodule(obj):
                continue
            if getattr(obj, "__module__", "").split(".")[0] != "embedxfer":
                continue
            path = f"{module_name}.{name}"
            names.append(path)
            if inspect.isclass(obj) and not issubclass(obj, BaseException):
                names.extend(f"{path}.{member}" for member in public_members(obj))
    return sorted(set(names))


def public_members(cls):
    """Public methods and properties that ``cls`` defines itself (not inherited ones)."""
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, (property, classmethod, staticmethod)) or inspect.isfunction(value):
            yield name


def is_member(path):
    parent = path.rsplit(".", 1)[0]
    module_name, _, name = parent.rpartition(".")
    if module_name not in PUBLIC_MODULES:
        return True
    obj = getattr(importlib.import_module(module_name), name, None)
    return inspect.isclass(obj)


def is_exception(path):
    module_name, _, name = path.rpartition(".")
    if module_name not in PUBLIC_MODULES:
        return False
    obj = getattr(importlib.import_module(module_name), name)
    return inspect.isclass(obj) and issubclass(obj, BaseException)


def docstring_errors(path):
    """numpydoc's errors for one import path, less the ignored checks."""
    ignored = set(IGNORED)
    if is_member(path) or is_exception(path) or path in NO_EXAMPLES:
        ignored |= set(IGNORED_FOR_MEMBERS)
    result = numpydoc_validate.validate(path)
    return [f"{code}: {message}" for code, message in result["errors"] if code not in ignored]


PUBLIC = public_names()


def test_the_public_api_is_collected():
    assert "embedxfer.WordVectorEmbedder" in PUBLIC
    assert "embedxfer.WordVectorEmbedder.fit" in PUBLIC
    assert "embedxfer.SentenceEmbedder.transform" in PUBLIC
    assert "embedxfer.dask.predict" in PUBLIC
    assert "embedxfer.datasets.load_sms_spam" in PUBLIC
    # Inherited scikit-learn methods are scikit-learn's to document.
    assert "embedxfer.WordVectorEmbedder.set_params" not in PUBLIC


@pytest.mark.parametrize("path", PUBLIC)
def test_docstring(path):
    errors = docstring_errors(path)
    assert not errors, f"{path}:\n" + "\n".join(errors)


def test_validation_catches_a_bad_docstring(monkeypatch):
    def undocumented(x):
        """returns things."""

    monkeypatch.setattr(embedxfer, "undocumented_for_test", undocumented, raising=False)
    errors = docstring_errors("embedxfer.undocumented_for_test")
    codes = {error.split(":")[0] for error in errors}
    assert {"GL08", "SS02", "PR01"} & codes


def test_every_public_name_is_in_the_api_reference():
    page = API_PAGE.read_text(encoding="utf-8")
    listed = set(re.findall(r"^   (\w+)$", page, flags=re.MULTILINE))
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            if inspect.ismodule(getattr(module, name)):
                assert f"automodule:: {module_name}.{name}" in page, name
            else:
                assert name in listed, f"{module_name}.{name} is missing from docs/api.md"
