"""Recovery of exact posteriors: the analytic example models, trained on the CPU.

Tolerances are ones a broken flow cannot meet: a posterior that ignores the data, is
shifted by a fraction of its width, or is 15 % too wide or narrow fails them.
"""

import numpy as np
import pytest
from scipy import stats

from skcinn import CINNPosteriorEstimator
from skcinn.simulators import GaussianMean, LinearRegression

MODELS = {"gaussian_mean": GaussianMean, "linear_regression": LinearRegression}


@pytest.fixture(scope="module", params=sorted(MODELS))
def fitted(request):
    model = MODELS[request.param]()
    est = CINNPosteriorEstimator(n_simulations=10_000, max_iter=60, random_state=0, device="cpu")
    est.fit(model.simulate, model.prior)
    return model, est


def _held_out(model, n, seed):
    rng = np.random.default_rng(seed)
    theta = model.sample_prior(n, rng)
    return theta, model.simulate(theta, rng)


@pytest.mark.slow
def test_posterior_moments_match_the_exact_ones(fitted):
    model, est = fitted
    _, X = _held_out(model, 20, seed=1)
    draws = est.sample_posterior(X, n_samples=4000, random_state=0)
    mean, cov = model.posterior(X)
    sd = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
    assert np.median(np.abs(draws.mean(axis=1) - mean) / sd) < 0.15
    assert np.median(np.abs(draws.std(axis=1) / sd - 1)) < 0.15
    # the data matter: posteriors are much narrower than the prior (sd 1)
    assert np.median(draws.std(axis=1)) < 0.5


@pytest.mark.slow
def test_predict_and_log_posterior_match_the_exact_ones(fitted):
    model, est = fitted
    theta, X = _held_out(model, 200, seed=2)
    mean, cov = model.posterior(X)
    pred, std = est.predict(X, return_std=True)
    sd = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
    assert np.median(np.abs(pred - mean) / sd) < 0.15
    assert np.median(np.abs(std / sd - 1)) < 0.15
    exact = np.array([
        stats.multivariate_normal(m, c).logpdf(t)
        for m, c, t in zip(mean, cov, theta, strict=True)
    ])
    # mean log density within 0.1 nats of the exact posterior's (the gap is the KL)
    assert abs(est.score(X, theta) - exact.mean()) < 0.1


@pytest.mark.slow
def test_simulation_based_calibration(fitted):
    model, est = fitted
    theta, X = _held_out(model, 300, seed=3)
    draws = est.sample_posterior(X, n_samples=99, random_state=0)
    ranks = (draws < theta[:, None, :]).sum(axis=1)  # 0..99, uniform if calibrated
    for j in range(theta.shape[1]):
        counts = np.bincount(ranks[:, j] // 10, minlength=10)
        assert stats.chisquare(counts).pvalue > 0.01, counts
    # a deliberately shifted posterior is rejected by the same test
    shifted = ((draws + 0.5 * draws.std(axis=1, keepdims=True)) < theta[:, None, :]).sum(axis=1)
    assert stats.chisquare(np.bincount(shifted[:, 0] // 10, minlength=10)).pvalue < 0.01
