"""Sphinx configuration of the skcinn documentation.

Build (warnings are errors, as in CI)::

    pip install -e ".[docs]"
    sphinx-build -W --keep-going -b html docs docs/_build/html

The example gallery is rendered from ``examples/`` without running the scripts. Set
``SKCINN_DOCS_RUN_EXAMPLES=1`` to execute them (and show their output); set
``SKCINN_EXAMPLE_BUDGET=small`` as well for a quick run.
"""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path

# The repository; tests/test_docs.py builds a copy of docs/ elsewhere and sets this.
ROOT = Path(os.environ.get("SKCINN_DOCS_ROOT") or Path(__file__).resolve().parent.parent)
sys.path.insert(0, str(ROOT))  # document the working tree, also without an install

import skcinn  # noqa: E402

project = "skcinn"
author = "skcinn developers"
copyright = "skcinn developers"
version = release = skcinn.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
root_doc = "index"
default_role = "py:obj"  # `name` links to the API, as in numpydoc-style docstrings
nitpicky = False

html_theme = "alabaster"
html_title = f"skcinn {release}"
html_theme_options = {
    "description": "Amortized likelihood-free Bayesian inference as a scikit-learn estimator",
    "fixed_sidebar": True,
}
html_static_path: list[str] = []

# ------------------------------------------------------------------ autodoc, autosummary

autosummary_generate = True
autosummary_imported_members = False
autosummary_ignore_module_all = False  # a module's __all__ is its public API
autodoc_typehints = "none"  # the numpydoc sections give the types
autodoc_member_order = "bysource"


def _skip_foreign_members(app, what, name, obj, skip, options):
    """Leave out members that classes inherit from scikit-learn (and ``object``).

    Classes are documented with their inherited members, so that a model class shows
    the methods of its skcinn base class. Methods that come from scikit-learn's
    ``BaseEstimator`` (``get_params``, ``set_params``, the metadata-routing
    ``set_*_request`` methods generated per class) are documented by scikit-learn.
    """
    if name == "get_metadata_routing" or (name.startswith("set_") and name.endswith("_request")):
        return True
    target = getattr(obj, "fget", obj)
    if inspect.isroutine(target):
        module = getattr(target, "__module__", None) or ""
        if not module.startswith("skcinn"):
            return True
    return None


# ------------------------------------------------------------------------------ numpydoc

numpydoc_show_class_members = False  # the class template lists methods itself
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_attributes_as_param_list = True

# Every documented object is validated; a failed check is a warning, hence an error with
# ``-W``. The checks left out concern what a docstring must contain at least, not
# mistakes:
#
# - ES01 (no extended summary), SA01 (no See Also section), EX01 (no Examples section):
#   short helpers are documented by their summary and parameters; examples live in the
#   user guide and the gallery.
# - GL02 (closing quotes on the line after the text): module attributes are documented
#   by ``#:`` comments, which have no quotes, and numpydoc flags every one of them.
numpydoc_validation_checks = {"all", "ES01", "SA01", "EX01", "GL02"}
# Where numpydoc misreads a legitimate pattern, one check is switched off for docstrings
# matching a pattern (numpydoc_validation_overrides: check -> regexes on the docstring):
numpydoc_validation_overrides = {
    # The fields of a dataclass are its constructor's parameters; the dataclasses below
    # document them once, as Attributes, which numpydoc does not connect to __init__.
    "PR01": [r"^A prior in skcinn's normal form\.", r"^Outcome of :func:`misspecification_test`\."],
    # A summary may start with a name that is written in lower case ("mRNA counts ...").
    "SS02": [r"^mRNA "],
    # SS05 wants an infinitive, not a verb in the third person, and judges by a final
    # "s": noun-phrase summaries of functions that return a figure or a table are
    # flagged wrongly.
    "SS05": [r"^Simultaneous confidence bands ", r"^Histograms of the SBC ranks"],
}

# ------------------------------------------------------------------------ sphinx-gallery

RUN_EXAMPLES = os.environ.get("SKCINN_DOCS_RUN_EXAMPLES", "") not in ("", "0", "false")
if RUN_EXAMPLES:  # the examples also write their figures to files: keep them in _build
    os.environ.setdefault("SKCINN_EXAMPLE_OUTPUT",
                          str(Path(__file__).resolve().parent / "_build" / "example_figures"))

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    # Executing the examples trains networks for minutes: off unless asked for.
    "plot_gallery": RUN_EXAMPLES,
    "filename_pattern": r"\.py$",  # every example is run when running is switched on
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "write_computation_times": False,
}


def setup(app):
    app.connect("autodoc-skip-member", _skip_foreign_members)
