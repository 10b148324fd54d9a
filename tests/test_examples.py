"""Every example runs end to end at its small budget."""

import os
import pathlib
import subprocess
import sys

import pytest

EXAMPLES = sorted((pathlib.Path(__file__).parent.parent / "examples").glob("*.py"))
# a line each example must print when it worked
EXPECTED = {"linear_regression.py": "loaded model draws the same samples: True"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(path):
    env = {**os.environ, "SKCINN_EXAMPLE_BUDGET": "small"}
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert EXPECTED[path.name] in done.stdout
