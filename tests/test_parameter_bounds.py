"""``parameter_bounds``: a support for training pairs, which carry none, and a narrower
one than the prior's; draws inside, densities zero outside, clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.base import clone

import skcinn
from skcinn import CINNPosteriorEstimator

TINY = dict(hidden_layer_sizes=(16, 16), n_coupling_blocks=2, max_iter=3, random_state=0,
            device="cpu")


def uniform_pairs(n: int = 400, seed: int = 0, noise: float = 0.3):
    """theta ~ U(0, 1)^2 and flat X = theta + noise: posteriors pile up at the bounds."""
    rng = np.random.default_rng(seed)
    theta = rng.uniform(0.0, 1.0, size=(n, 2))
    return theta + noise * rng.normal(size=theta.shape), theta


def test_pairs_with_bounds_give_draws_inside():
    X, theta = uniform_pairs()
    est = CINNPosteriorEstimator(**TINY, parameter_bounds=[(0, 1), (0, None)]).fit(X, theta)
    # data far outside the bounds push the posterior against them
    X_new = np.array([[-3.0, -3.0], [4.0, 4.0], [0.5, 0.5]])
    draws = est.sample_posterior(X_new, n_samples=3000, random_state=0)
    assert np.all(np.isfinite(draws))
    assert np.all((draws[..., 0] > 0) & (draws[..., 0] < 1))
    assert np.all(draws[..., 1] > 0)
    logp = est.log_posterior(X_new[[0, 0, 0]], np.array([[0.5, 0.5], [1.2, 0.5], [0.5, -0.1]]))
    assert np.isfinite(logp[0])
    assert np.all(logp[1:] == -np.inf)


def test_without_bounds_draws_leave_the_support():
    """What the bounds are for: the same fit without them puts mass outside (0, 1)."""
    X, theta = uniform_pairs()
    est = CINNPosteriorEstimator(**TINY).fit(X, theta)
    draws = est.sample_posterior(np.array([[-3.0, -3.0]]), n_samples=3000, random_state=0)
    assert np.mean(draws < 0) > 0.05


def test_bounded_posterior_matches_truncated_normal():
    """theta ~ U(0, 1), x_i ~ N(theta, 0.5), 20 observations: the posterior is a normal
    truncated to (0, 1); its mean and sd are recovered near a bound."""
    rng = np.random.default_rng(1)
    n, n_obs, noise = 6000, 20, 0.5
    theta = rng.uniform(0, 1, size=(n, 1))
    sets = theta[:, None, :] + noise * rng.normal(size=(n, n_obs, 1))
    est = CINNPosteriorEstimator(
        parameter_bounds=[(0, 1)], max_iter=30, n_iter_no_change=30, hidden_layer_sizes=(32, 32),
        summary_dim=8, summary_hidden_sizes=(32, 32), random_state=0, device="cpu",
    ).fit(sets, theta)
    checks = []
    for true in (0.03, 0.1, 0.5, 0.95):
        x = true + noise * np.random.default_rng(7).normal(size=(1, n_obs, 1))
        sd = noise / np.sqrt(n_obs)
        exact = stats.truncnorm((0 - x.mean()) / sd, (1 - x.mean()) / sd, loc=x.mean(), scale=sd)
        draws = est.sample_posterior(x, n_samples=4000, random_state=0)[0, :, 0]
        assert draws.min() > 0 and draws.max() < 1
        checks.append((abs(draws.mean() - exact.mean()) / exact.std(),
                       abs(draws.std() / exact.std() - 1)))
    errors = np.array(checks)
    assert np.median(errors[:, 0]) < 0.2, errors
    assert np.median(errors[:, 1]) < 0.1, errors


def test_bounds_by_name_with_dataframe_y():
    X, theta = uniform_pairs()
    y = pd.DataFrame(theta, columns=["a", "b"])
    est = CINNPosteriorEstimator(**TINY, parameter_bounds={"b": (0, 1)}).fit(X, y)
    draws = est.sample_posterior(np.array([[5.0, 5.0]]), n_samples=2000, random_state=0)
    assert np.all((draws[..., 1] > 0) & (draws[..., 1] < 1))
    assert np.any(draws[..., 0] > 1)  # a stays unbounded


def test_bounds_narrow_the_prior_support():
    """A normal prior has no bounds; parameter_bounds adds a lower one."""
    def simulator(theta, rng):
        return theta + 0.3 * rng.normal(size=theta.shape)

    prior = {"m": stats.uniform(-1, 2), "s": stats.uniform(0.1, 2.0)}
    est = CINNPosteriorEstimator(**TINY, n_simulations=400, parameter_bounds={"m": (-2, 0.5)})
    with pytest.raises(ValueError, match="outside the support.*m="):
        est.fit(simulator, prior)  # U(-1, 1) reaches beyond 0.5
    est.set_params(parameter_bounds={"m": (-2, 2), "s": (None, 5)}).fit(simulator, prior)
    lower, upper = est._theta_transform.lower.numpy(), est._theta_transform.upper.numpy()
    np.testing.assert_allclose(lower, [-1, 0.1])  # the prior's bounds are the narrower ones
    np.testing.assert_allclose(upper, [1, 2.1])


@pytest.mark.parametrize("bounds, message", [
    ([(0, 1)], "one \\(low, high\\) pair per parameter \\(2\\)"),
    ([(0, 1), (0, 1, 2)], "one \\(low, high\\) pair per parameter"),
    ([(0, 1), ("x", 1)], "one \\(low, high\\) pair per parameter"),
    ({"c": (0, 1)}, "names \\['c'\\], which are not parameters"),
    ([(1, 0), (0, 1)], "leave theta_0 no room"),
    ([(0, 1), (0.5, 1)], "outside the support; the first: theta_1="),
])
def test_bad_bounds(bounds, message):
    X, theta = uniform_pairs()
    est = CINNPosteriorEstimator(**TINY, parameter_bounds=bounds)
    with pytest.raises(ValueError, match=message):
        est.fit(X, theta)
    assert not hasattr(est, "network_")


def test_continued_training_checks_the_fitted_bounds():
    X, theta = uniform_pairs()
    est = CINNPosteriorEstimator(**{**TINY, "max_iter": 1}, parameter_bounds=[(0, 1), (0, 1)])
    est.partial_fit(X, theta)
    with pytest.raises(ValueError, match="outside the support"):
        est.partial_fit(X, theta + 1)
    est.set_params(warm_start=True).fit(X, theta)
    with pytest.raises(ValueError, match="outside the support"):
        est.fit(X, theta - 1)


def test_bounds_survive_clone_pickle_and_save(tmp_path):
    X, theta = uniform_pairs()
    est = CINNPosteriorEstimator(**TINY, parameter_bounds=[(0, 1), [0, None]]).fit(X, theta)
    assert clone(est).get_params()["parameter_bounds"] == [(0, 1), [0, None]]
    path = tmp_path / "bounded.skcinn"
    skcinn.save(est, path)
    loaded = skcinn.load(path)
    x = np.array([[4.0, -4.0]])
    np.testing.assert_array_equal(est.sample_posterior(x, 200, random_state=3),
                                  loaded.sample_posterior(x, 200, random_state=3))


def test_interval_map_sends_a_uniform_prior_to_a_standard_normal():
    """The probit map: the image of U(a, b) is N(0, 1), the flow's base, tails included;
    and the map inverts exactly with the log-determinant of its Jacobian."""
    import torch

    from skcinn.transforms import _support_inverse, _support_map

    rng = np.random.default_rng(0)
    theta = torch.tensor(rng.uniform(-3.0, 5.0, size=(20_000, 1)))
    lower, upper = torch.tensor([-3.0], dtype=torch.float64), torch.tensor([5.0],
                                                                           dtype=torch.float64)
    y, ladj = _support_map(theta, lower, upper)
    assert stats.kstest(y[:, 0].numpy(), "norm").pvalue > 0.01
    assert abs(np.mean(np.abs(y.numpy()) > 3) - 2 * stats.norm.sf(3)) < 1e-3
    np.testing.assert_allclose(_support_inverse(y, lower, upper).numpy(), theta.numpy(),
                               atol=1e-12)
    # the density of the image is the uniform's density divided by |dy/dtheta|
    np.testing.assert_allclose(stats.norm.logpdf(y[:, 0].numpy()),
                               -np.log(8.0) - ladj.numpy(), atol=1e-9)


def test_bounds_given_as_an_array_can_be_saved(tmp_path):
    """A numeric array of bounds is stored as nested lists; the loaded estimator samples
    exactly as the saved one."""
    X, theta = uniform_pairs()
    bounds = np.array([[0.0, 1.0], [0.0, 1.0]])
    est = CINNPosteriorEstimator(**TINY, parameter_bounds=bounds).fit(X, theta)
    path = tmp_path / "array_bounds.skcinn"
    skcinn.save(est, path)
    loaded = skcinn.load(path)
    assert loaded.get_params()["parameter_bounds"] == [[0.0, 1.0], [0.0, 1.0]]
    x = np.array([[0.5, 0.5]])
    np.testing.assert_array_equal(est.sample_posterior(x, 100, random_state=1),
                                  loaded.sample_posterior(x, 100, random_state=1))
