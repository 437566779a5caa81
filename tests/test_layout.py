"""The package's layers run one way, and the command line sits on top of them."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "embedxfer"
# ``python -m embedxfer`` (embedxfer/__main__.py) is the command line's entry point.
LIBRARY_MODULES = sorted(
    p
    for p in PACKAGE.rglob("*.py")
    if "cli" not in p.relative_to(PACKAGE).parts and p != PACKAGE / "__main__.py"
)
CLI_MODULES = sorted((PACKAGE / "cli").glob("*.py"))


def imports(path):
    """``(module, name)`` for every ``from X import name`` in ``path``, X resolved."""
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            module = ".".join([*base, *(node.module or "").split(".")]).strip(".")
            found += [(module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
    return found


@pytest.mark.parametrize("path", LIBRARY_MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_library_never_imports_the_command_line(path):
    bad = [m for m, _ in imports(path) if m == "embedxfer.cli" or m.startswith("embedxfer.cli.")]
    assert not bad, f"{path.name} imports the command line: {bad}"


@pytest.mark.parametrize("path", CLI_MODULES, ids=lambda p: p.name)
def test_the_command_line_uses_no_private_name_from_outside_its_package(path):
    bad = [
        f"{module}.{name}"
        for module, name in imports(path)
        if module.startswith("embedxfer")
        and not module.startswith("embedxfer.cli")
        and name is not None
        and name.startswith("_")
        and not name.startswith("__")
    ]
    assert not bad, f"{path.name} imports private names: {bad}"


def test_the_command_line_is_a_package_of_small_modules():
    assert len(CLI_MODULES) > 10
    longest = max(len(p.read_text(encoding="utf-8").splitlines()) for p in CLI_MODULES)
    assert longest < 400


# What each part of the package may import from the others: shared machinery at
# the bottom, the text and image wings side by side over it, Dask and the command
# line on top. ``embedxfer.__version__`` may be read from anywhere.
MAY_IMPORT = {
    "exceptions": set(),
    "_core": {"exceptions"},
    "_cache": {"_core", "exceptions"},
    "_torch": {"_core", "exceptions"},
    "_clustering": {"_core", "exceptions"},
    "datasets": {"_core", "exceptions"},
    "text": {"_core", "_cache", "_torch", "exceptions"},
    "image": {"_core", "_cache", "_torch", "exceptions"},
}


def part_of(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "embedxfer" else None


def test_the_top_level_holds_only_packages_and_public_modules():
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert modules == ["__init__.py", "__main__.py", "dask.py", "exceptions.py"]
    packages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
    assert set(MAY_IMPORT) - {"exceptions"} <= set(packages)


@pytest.mark.parametrize(
    "path",
    [
        p
        for p in LIBRARY_MODULES
        if p.relative_to(PACKAGE).parts[0].removesuffix(".py") in MAY_IMPORT
    ],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_each_part_imports_only_the_parts_below_it(path):
    part = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    allowed = MAY_IMPORT[part] | {part}
    bad = sorted(
        f"{module}.{name}" if name else module
        for module, name in imports(path)
        if module.startswith("embedxfer")
        and (part_of(module) or name) not in allowed
        and (module, name) != ("embedxfer", "__version__")
    )
    assert not bad, f"{path.relative_to(PACKAGE)} imports from above its layer: {bad}"


def test_the_text_wing_exports_the_same_objects_as_the_package_without_importing_torch():
    import subprocess
    import sys

    code = (
        "import sys, embedxfer.text as t, embedxfer as e\n"
        "assert 'torch' not in sys.modules\n"
        "assert t.WordVectorEmbedder is e.WordVectorEmbedder\n"
        "assert sorted(t.__all__) == sorted(set(t.__all__))\n"
        "print(all(getattr(t, n) is getattr(e, n) for n in t.__all__))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
