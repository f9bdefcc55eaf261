"""Sphinx configuration of the seglosses documentation (built from the docstrings; tests/test_docs.py builds it)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

project = "seglosses"
author = "the seglosses authors"
copyright = "the seglosses authors"  # noqa: A001 (Sphinx's name)

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax"]

# every reference must resolve (the docs test builds with -n -W): broken cross-references fail the build
nitpicky = True
# third-party types named in signatures and docstrings (no intersphinx: the build stays offline)
nitpick_ignore_regex = [
    ("py:(class|func|meth|obj|data|mod)", r"(torch|numpy|np|optuna|scipy|os|collections\.abc|typing|pathlib)\..*"),
    ("py:class", r"Tensor|ndarray|Module|ProcessGroup|Path|Callable|Sequence|Mapping|Iterator|Iterable"),
    ("py:class", r"NoneType|Any|Literal\[.*\]"),
]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options: dict[str, object] = {}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

html_theme = "alabaster"
html_static_path: list[str] = []
exclude_patterns = ["_build"]
