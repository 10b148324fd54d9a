"""The documentation builds with warnings as errors, documents the public API, and the
code on its user-guide pages runs.

The build works on a copy of ``docs/`` in a temporary folder (nothing is written into
the working tree), as ``sphinx-build -W --keep-going -b html docs docs/_build/html``
does; the example gallery is rendered without running the examples. Code blocks marked
``:class: norun`` (a cluster, a GPU, a second process) are not run.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
GENERATED = ("_build", "generated", "auto_examples", "sg_execution_times.rst")
GUIDE = sorted(p.stem for p in (DOCS / "user_guide").glob("*.rst") if p.stem != "index")


@pytest.fixture(scope="module")
def html(tmp_path_factory):
    """The built site (the build must succeed with -W)."""
    pytest.importorskip("sphinx")
    tmp = tmp_path_factory.mktemp("docs")
    source = tmp / "docs"
    shutil.copytree(DOCS, source, ignore=shutil.ignore_patterns(*GENERATED))
    env = {**os.environ, "SKCINN_DOCS_ROOT": str(ROOT), "MPLBACKEND": "Agg"}
    env.pop("SKCINN_DOCS_RUN_EXAMPLES", None)
    out = tmp / "html"
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp / "doctrees"), str(source), str(out)],
        capture_output=True, text=True, env=env, cwd=tmp, timeout=600,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    return out


def test_estimator_api_page_documents_sample_posterior(html):
    page = html / "generated" / "skcinn.CINNPosteriorEstimator.html"
    assert page.exists()
    text = page.read_text(encoding="utf-8")
    assert 'id="skcinn.CINNPosteriorEstimator.sample_posterior"' in text
    for method in ["fit", "partial_fit", "predict", "score", "check_calibration"]:
        assert f'id="skcinn.CINNPosteriorEstimator.{method}"' in text, method


@pytest.mark.parametrize("name", [
    "skcinn.save", "skcinn.load", "skcinn.simulate", "skcinn.sample_posterior",
    "skcinn.diagnostics", "skcinn.metrics", "skcinn.misspecification", "skcinn.predictive",
    "skcinn.plotting", "skcinn.simulation", "skcinn.simulators",
])
def test_every_public_name_has_a_page(html, name):
    assert (html / "generated" / f"{name}.html").exists()


def test_user_guide_and_gallery_are_built(html):
    pages = ["index", "getting_started", "api", "auto_examples/index"]
    for page in pages + [f"user_guide/{name}" for name in GUIDE]:
        assert (html / f"{page}.html").exists(), page


def code_blocks(path: pathlib.Path) -> list[str]:
    """The ``.. code-block:: python`` blocks of a page, except those marked norun."""
    lines, blocks, i = path.read_text(encoding="utf-8").splitlines(), [], 0
    while i < len(lines):
        match = re.match(r"^(\s*)\.\. code-block:: python\s*$", lines[i])
        i += 1
        if not match:
            continue
        indent, options, body = len(match.group(1)), [], []
        while i < len(lines) and re.match(r"^\s+:[\w-]+:", lines[i]):
            options.append(lines[i])
            i += 1
        while i < len(lines) and (not lines[i].strip()
                                  or len(lines[i]) - len(lines[i].lstrip()) > indent):
            body.append(lines[i])
            i += 1
        if not any("norun" in option for option in options):
            blocks.append(textwrap.dedent("\n".join(body)))
    return blocks


@pytest.fixture(scope="module")
def guide_runs(tmp_path_factory):
    """Each page's code, run top to bottom in a fresh process; pages run side by side."""
    tmp = tmp_path_factory.mktemp("guide")
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)}

    def run(page):
        folder = tmp / page
        folder.mkdir()
        script = folder / f"page_{page}.py"  # not the name of a module it imports
        script.write_text("\n\n".join(code_blocks(DOCS / "user_guide" / f"{page}.rst")),
                          encoding="utf-8")
        return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                              env=env, cwd=folder, timeout=300)

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        return dict(zip(GUIDE, pool.map(run, GUIDE), strict=True))


@pytest.mark.parametrize("page", GUIDE)
def test_user_guide_code_runs(guide_runs, page):
    done = guide_runs[page]
    assert done.returncode == 0, done.stderr[-3000:]
