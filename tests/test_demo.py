"""The README's main job: the demo command."""

import subprocess
import sys

from skcinn.demo import run


def test_demo_prints_posteriors_next_to_the_exact_ones(capsys):
    summary = run(["--n-simulations", "2000", "--max-iter", "8", "--n-test", "50"])
    out = capsys.readouterr().out
    assert "exact mean ± sd" in out and "skcinn mean ± sd" in out
    assert out.count(" w_0 ") == 5 and out.count(" w_1 ") == 5
    assert "|posterior mean - exact| / exact sd" in out
    # a short fit is not exact, but far better than ignoring the data
    assert summary["mean_error_in_sd"] < 1.0
    assert summary["draws_per_second"] > 0


def test_module_entry_point():
    done = subprocess.run(
        [sys.executable, "-m", "skcinn", "demo", "--model", "gaussian_mean",
         "--n-simulations", "500", "--max-iter", "2", "--n-test", "5"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "mu_0" in done.stdout and "draws per second" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "skcinn"], capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr


def test_demo_on_a_model_without_exact_posterior(capsys):
    summary = run(["--model", "ricker", "--n-simulations", "300", "--max-iter", "1",
                   "--n-test", "30", "--quiet"])
    out = capsys.readouterr().out
    assert "exact mean" not in out and "Calibration and recovery" in out
    assert set(summary["r2"]) == {"r", "sigma", "phi"}
    assert all(0 <= v <= 1 for v in summary["calibration_error"].values())
