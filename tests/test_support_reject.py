"""``support="reject"``: the flow learns the parameters as they are; draws outside the
support are discarded and drawn again; densities are renormalised by the acceptance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.base import clone
from sklearn.utils._param_validation import InvalidParameterError

import skcinn
from skcinn import CINNPosteriorEstimator

NOISE = 0.3


def pairs(n: int, n_params: int, seed: int = 0):
    """theta ~ U(0, 1)^p and x = theta + N(0, 0.3^2): posteriors truncated at 0 and 1."""
    rng = np.random.default_rng(seed)
    theta = rng.uniform(0.0, 1.0, size=(n, n_params))
    return theta + NOISE * rng.normal(size=theta.shape), theta


@pytest.fixture(scope="module")
def fitted_1d():
    """One parameter: the exact posterior is N(x, 0.3^2) truncated to (0, 1)."""
    X, theta = pairs(4000, 1)
    return CINNPosteriorEstimator(
        support="reject", parameter_bounds=[(0, 1)], hidden_layer_sizes=(32, 32),
        max_iter=25, random_state=0, device="cpu",
    ).fit(X, theta)


@pytest.fixture(scope="module")
def fitted_2d():
    X, theta = pairs(600, 2)
    return CINNPosteriorEstimator(
        support="reject", parameter_bounds=[(0, 1), (0, 1)], hidden_layer_sizes=(16, 16),
        n_coupling_blocks=2, max_iter=5, random_state=0, device="cpu",
    ).fit(X, theta)


def test_draws_lie_inside_and_are_reproducible(fitted_2d):
    X = np.array([[-0.4, 0.5], [0.5, 1.3], [0.5, 0.5]])  # two posteriors cut by a bound
    draws = fitted_2d.sample_posterior(X, n_samples=3000, random_state=4)
    assert draws.shape == (3, 3000, 2)
    assert np.all((draws > 0) & (draws < 1))
    np.testing.assert_array_equal(draws, fitted_2d.sample_posterior(X, 3000, random_state=4))
    assert fitted_2d.support_ == "reject"
    # the flow itself is unbounded: without rejection, draws would leave the box
    lower, upper = fitted_2d._theta_transform.lower.numpy(), fitted_2d._theta_transform.upper
    assert np.all(np.isinf(lower)) and np.all(np.isinf(upper.numpy()))


def test_rejection_rounds_do_not_depend_on_the_number_of_threads(fitted_2d):
    """Draws and renormalised densities are the same whether the caller allows torch
    one thread or two (chunks of data sets then run on two threads)."""
    X = np.array([[-0.4, 0.5], [0.5, 1.3], [0.5, 0.5], [1.2, -0.2]] * 3)
    theta = np.full((len(X), 2), 0.3)

    def results():
        return (fitted_2d.sample_posterior(X, n_samples=3000, random_state=4),
                fitted_2d.log_posterior(X, theta))

    threads = torch.get_num_threads()
    one = results()
    torch.set_num_threads(2)
    try:
        two = results()
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(a, b)


def test_truncated_normal_recovered_and_density_normalised(fitted_1d):
    """Draws match the exact truncated normal near a bound, and exp(log_posterior)
    integrates to one over the support once divided by the acceptance rate."""
    grid = np.linspace(0.0005, 0.9995, 1000)
    for x in (0.05, 0.5, 0.95):
        exact = stats.truncnorm(-x / NOISE, (1 - x) / NOISE, loc=x, scale=NOISE)
        draws = fitted_1d.sample_posterior(np.array([[x]]), 4000, random_state=0)[0, :, 0]
        assert abs(draws.mean() - exact.mean()) < 0.1 * exact.std()  # measured <= 0.04
        assert abs(draws.std() / exact.std() - 1) < 0.05  # measured <= 0.011
        logp = fitted_1d.log_posterior(np.full((len(grid), 1), x), grid)
        mass = np.exp(logp).mean()  # the grid spans (0, 1): mean = integral
        assert abs(mass - 1) < 0.03, (x, mass)  # measured 1.004-1.009
        l1 = np.abs(np.exp(logp) - exact.pdf(grid)).mean()  # integral of |q - p|
        assert l1 < 0.12, (x, l1)  # measured 0.055-0.072 (with the map: 0.044-0.056)
    outside = fitted_1d.log_posterior(np.array([[0.5], [0.5]]), np.array([-0.1, 1.0]))
    assert np.all(outside == -np.inf)


def test_predict_does_not_depend_on_the_other_data_sets(fitted_2d):
    X = np.array([[-0.4, 0.5], [0.5, 1.3], [0.5, 0.5]])
    together = fitted_2d.predict(X)
    alone = np.vstack([fitted_2d.predict(X[i : i + 1]) for i in range(len(X))])
    np.testing.assert_allclose(together, alone, rtol=1e-6, atol=1e-6)
    assert np.all((together > 0) & (together < 1))


def test_hopeless_data_set_raises(fitted_2d):
    """Data far from every simulation: the flow puts no draw inside the box."""
    with pytest.raises(RuntimeError, match="Data set 1: only 0 of .* inside the parameters"):
        fitted_2d.sample_posterior(np.array([[0.5, 0.5], [60.0, 60.0]]), 100, random_state=0)


def test_reject_survives_clone_pickle_and_save(fitted_2d, tmp_path):
    assert clone(fitted_2d).get_params()["support"] == "reject"
    path = tmp_path / "reject.skcinn"
    skcinn.save(fitted_2d, path)
    loaded = skcinn.load(path)
    X = np.array([[-0.4, 0.5]])
    np.testing.assert_array_equal(fitted_2d.sample_posterior(X, 500, random_state=1),
                                  loaded.sample_posterior(X, 500, random_state=1))


def test_unknown_support_is_rejected():
    X, theta = pairs(100, 2)
    with pytest.raises(InvalidParameterError, match="support"):
        CINNPosteriorEstimator(support="clip", max_iter=1).fit(X, theta)
