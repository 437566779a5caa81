"""Sphinx configuration: numpydoc API reference, MyST Markdown pages, sphinx-gallery examples.

Build (offline, warnings as errors), from the project's root::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The gallery shows the examples' code without running them (``plot_gallery``
is off): each example trains models for a minute or more, which would make
the build slow. ``-D plot_gallery=1`` runs them and adds their output.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import embedxfer  # noqa: E402

project = "embedxfer"
author = "The embedxfer developers"
copyright = "The embedxfer developers"
version = release = embedxfer.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py"]
templates_path = ["_templates"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
# Lazy public names (the torch estimators) import on first access: autodoc
# reaches them through ``embedxfer.<name>`` like a user does.
autodoc_typehints = "none"
numpydoc_show_class_members = False
toc_object_entries_show_parents = "hide"
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "plot_gallery": os.environ.get("EMBEDXFER_DOCS_RUN_EXAMPLES", "False"),
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
}

html_theme = "pydata_sphinx_theme"
html_title = f"embedxfer {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_show_sourcelink = False


def skip_metadata_request_methods(app, what, name, obj, skip, options):
    """Leave out scikit-learn's generated ``set_*_request`` methods (metadata routing).

    scikit-learn writes them on every estimator; their docstrings refer to
    scikit-learn's own glossary, which this site does not have.
    """
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return skip


def setup(app):
    app.connect("autodoc-skip-member", skip_metadata_request_methods)
