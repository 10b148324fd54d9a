"""Every example runs end to end at its small budget and writes its figures."""

import os
import pathlib
import subprocess
import sys

import pytest

EXAMPLES = sorted((pathlib.Path(__file__).parent.parent / "examples").glob("*.py"))
HEADER = "Recovery and calibration on 100 held-out data sets:"
# a line each example must print when it worked
EXPECTED = {
    "linear_regression.py": "loaded model draws the same samples: True",
    "ricker.py": HEADER,
    "sir.py": HEADER,
    "levy_flight.py": HEADER,
    "gene_expression.py": HEADER,
}
FIGURES = ("recovery", "sbc_ecdf", "pairs")  # every example saves <name>_<figure>.png


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(path, tmp_path):
    env = {**os.environ, "SKCINN_EXAMPLE_BUDGET": "small",
           "SKCINN_EXAMPLE_OUTPUT": str(tmp_path / "figures")}
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                          env=env, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert EXPECTED[path.name] in done.stdout
    for figure in FIGURES:
        png = tmp_path / "figures" / f"{path.stem}_{figure}.png"
        assert png.is_file() and png.stat().st_size > 0, f"{png.name} was not written"
