"""Simulation banks larger than memory: numpy.memmap X is read batch by batch."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from skcinn import CINNPosteriorEstimator
from skcinn.simulators import GaussianMean

TINY = dict(
    hidden_layer_sizes=(16, 16), summary_hidden_sizes=(16,), summary_dim=4,
    n_coupling_blocks=2, max_iter=3, random_state=0, device="cpu",
)


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    model = GaussianMean(n_obs=12)
    rng = np.random.default_rng(0)
    theta = model.sample_prior(600, rng)
    path = tmp_path_factory.mktemp("bank") / "X.npy"
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(600, 12, 2))
    X[:] = model.simulate(theta, rng)
    X.flush()
    return np.load(path, mmap_mode="r"), theta


def test_memmap_bank_trains_like_the_same_bank_in_memory(bank):
    X, theta = bank
    streamed = CINNPosteriorEstimator(**TINY).fit(X, theta)
    in_memory = CINNPosteriorEstimator(**TINY).fit(np.asarray(X), theta)
    # float32 in memory is summed in float32, the bank on disk in float64
    np.testing.assert_allclose(streamed._x_mean, in_memory._x_mean, atol=1e-6)
    np.testing.assert_allclose(streamed._x_std, in_memory._x_std, rtol=1e-5)
    np.testing.assert_allclose(streamed.loss_curve_, in_memory.loss_curve_, rtol=1e-4)
    # inference reads a bank on disk too, with the same result as from memory
    np.testing.assert_allclose(streamed.predict(X[:50]), streamed.predict(np.asarray(X[:50])),
                               rtol=1e-5, atol=1e-6)


def test_memmap_with_nan_is_refused(tmp_path):
    path = tmp_path / "bad.npy"
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(50, 4, 2))
    X[:] = 0.0
    X[7, 1, 0] = np.nan
    X.flush()
    with pytest.raises(ValueError, match="NaN or inf in 1 of 50 data sets .first at index 7"):
        CINNPosteriorEstimator(**TINY).fit(np.load(path, mmap_mode="r"), np.zeros((50, 2)))


@pytest.mark.slow
def test_memory_stays_well_below_the_size_of_the_bank(tmp_path):
    """A 400 MB bank trains in a process that grows by far less than 400 MB."""
    script = textwrap.dedent(f"""
        import resource, numpy as np, torch
        from skcinn import CINNPosteriorEstimator
        torch.set_num_threads(1)
        n, size = 20_000, (100, 50)
        X = np.lib.format.open_memmap({str(tmp_path / "big.npy")!r}, mode="w+",
                                       dtype=np.float32, shape=(n, *size))
        rng = np.random.default_rng(0)
        theta = rng.normal(size=(n, 2))
        for s in range(0, n, 1000):  # write the bank in pieces, then drop the mapping
            X[s:s + 1000] = theta[s:s + 1000, None, :1] + rng.normal(size=(1000, *size))
        X.flush(); del X
        X = np.load({str(tmp_path / "big.npy")!r}, mmap_mode="r")
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        est = CINNPosteriorEstimator(hidden_layer_sizes=(16,), summary_hidden_sizes=(16,),
                                     summary_dim=4, n_coupling_blocks=2, max_iter=1,
                                     batch_size=256, random_state=0).fit(X, theta)
        est.predict(X[:100])
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print((after - before) / 1024, X.nbytes / 2**20)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    grown_mb, bank_mb = map(float, done.stdout.split())
    assert bank_mb > 350
    assert grown_mb < 0.25 * bank_mb, (grown_mb, bank_mb)
