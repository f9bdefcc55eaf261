"""The documentation under docs/ builds from the docstrings with no warning and no broken cross-reference."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx")

DOCS = Path(__file__).resolve().parents[1] / "docs"
# nitpicky (-n): every reference must resolve; -W: any warning fails the build; --keep-going: report all of them
FLAGS = ["-W", "--keep-going", "-n", "-b", "html", "-q"]


def _build(src: Path, out: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "sphinx", *FLAGS, "-d", str(out / ".doctrees"), str(src), str(out / "html")]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    # one build of docs/ shared by the tests below (a build takes ~15 s)
    out = tmp_path_factory.mktemp("docs")
    return _build(DOCS, out), out / "html"


def test_docs_build_without_warnings(built):
    done, html = built
    assert done.returncode == 0, done.stdout + done.stderr
    for page in ("index", "contract", "api/losses", "api/functional", "api/metrics", "api/surface", "api/cli"):
        assert (html / f"{page}.html").is_file(), page
    functional = (html / "api" / "functional.html").read_text(encoding="utf-8")
    for name in ("dice_loss", "focal_tversky_loss", "unified_focal_loss", "lovasz_loss", "cross_entropy_loss"):
        assert f'id="seglosses.functional.{name}"' in functional, name


# objects whose docstrings once held broken references (so they were left off their pages); each must be on its
# page again (Sphinx writes the id only for a documented object)
AUTODOC_IDS = [
    ("api/functional", "seglosses.functional.boundary_loss"),
    ("api/functional", "seglosses.functional.cldice_loss"),
    ("api/functional", "seglosses.functional.lovasz_loss"),
    ("api/functional", "seglosses.functional.topology.soft_skeleton"),
    ("api/losses", "seglosses.registry.check_search_spaces"),
    ("api/cli", "seglosses.compare"),
    ("api/cli", "seglosses.cli.compare.DEFAULT_LOSSES"),
    ("api/cli", "seglosses.cli.results.ResultsTable"),
    ("api/cli", "seglosses.cli.results.Recommendation"),
    ("api/cli", "seglosses.cli.results.BOOTSTRAP_RESAMPLES"),
]


@pytest.mark.parametrize(("page", "target"), AUTODOC_IDS)
def test_object_documented(built, page, target):
    done, html = built
    assert done.returncode == 0, done.stdout + done.stderr
    assert f'id="{target}"' in (html / f"{page}.html").read_text(encoding="utf-8"), target


def test_docs_build_fails_on_a_broken_reference(tmp_path):
    # the same configuration on one page that names a function that does not exist
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(DOCS / "conf.py", src / "conf.py")
    (src / "index.rst").write_text("Broken\n======\n\nSee :func:`seglosses.functional.no_such_loss`.\n")
    done = _build(src, tmp_path)
    assert done.returncode != 0
    assert "reference target not found: seglosses.functional.no_such_loss" in done.stdout + done.stderr
