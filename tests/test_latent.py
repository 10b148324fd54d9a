"""The latent distributions: the Student-t's density, its draws from standard normal
base values, and an estimator trained and sampled with it."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from scipy import stats

from skcinn import CINNPosteriorEstimator
from skcinn.networks.coupling import InvertibleNetwork
from skcinn.networks.latent import (
    DF_INIT,
    NormalLatent,
    StudentTLatent,
    make_latent,
    standard_normal_log_prob,
)
from skcinn.networks.posterior import PosteriorNetwork


@pytest.mark.parametrize("df", [2.5, 7.0, 60.0])
@pytest.mark.parametrize("d", [1, 3])
def test_student_t_log_prob_is_the_multivariate_t_density(df, d):
    latent = StudentTLatent(df=df).double()
    nu = float(latent.df().detach())
    assert nu == pytest.approx(df, rel=1e-6)
    z = torch.from_numpy(np.random.default_rng(0).standard_t(3, size=(50, d)))
    expected = stats.multivariate_t(loc=np.zeros(d), shape=np.eye(d), df=nu).logpdf(z.numpy())
    np.testing.assert_allclose(latent.log_prob(z).detach().numpy(), expected, rtol=1e-10)


@pytest.mark.parametrize("df", [2.5, 7.0, 60.0])
def test_student_t_draws_map_the_last_column_through_chi_square_quantiles(df):
    """z = g * sqrt(nu / w), w the chi-square quantile at Phi(e) of the extra column e:
    exact up to the tabulation's interpolation (relative 1e-5), in both tails."""
    latent = StudentTLatent(df=df)
    e = torch.linspace(-8.5, 8.5, 1001, dtype=torch.float64)
    g = torch.ones(len(e), 2, dtype=torch.float64)
    z = latent.from_normal(torch.cat([g, e[:, None]], dim=1))
    assert z.shape == (len(e), 2)
    nu = float(latent.df().detach())
    w = np.where(e < 0, stats.chi2.ppf(stats.norm.cdf(e), nu),
                 stats.chi2.isf(stats.norm.sf(e), nu))
    np.testing.assert_allclose(z[:, 0].numpy(), np.sqrt(nu / w), rtol=1e-5)
    assert torch.equal(z[:, 0], z[:, 1])  # one radius per draw, shared by its columns


def test_student_t_draws_follow_the_t_distribution():
    latent = StudentTLatent(df=4.0)
    base = torch.randn(200_000, 2, generator=torch.Generator().manual_seed(0))
    z = latent.from_normal(base)[:, 0].numpy()
    assert stats.kstest(z, stats.t(df=float(latent.df().detach())).cdf).pvalue > 0.01
    assert stats.kstest(z, stats.norm.cdf).pvalue < 1e-6  # heavier tails than a normal


def test_normal_latent_is_the_identity_on_base_values():
    latent = make_latent("normal")
    assert isinstance(latent, NormalLatent) and latent.extra == 0
    z = torch.randn(5, 3)
    assert latent.from_normal(z) is z
    torch.testing.assert_close(latent.log_prob(z), standard_normal_log_prob(z))
    with pytest.raises(ValueError, match="latent must be one of"):
        make_latent("cauchy")


def test_draws_carry_the_density_log_prob_gives_them():
    """sample() returns each draw's log density: the same as log_prob of the draw."""
    torch.manual_seed(0)
    flow = InvertibleNetwork(3, 2, n_blocks=2, hidden=(16,), latent="student_t").double()
    net = PosteriorNetwork(flow)
    assert flow.latent_width() == 4
    z = torch.randn(4, 6, 4, dtype=torch.float64)
    c = torch.randn(4, 2, dtype=torch.float64)
    theta, log_q = net.sample(z, c)
    assert theta.shape == (4, 6, 3)
    expected = flow.log_prob(theta.reshape(-1, 3), c.repeat_interleave(6, 0)).reshape(4, 6)
    torch.testing.assert_close(log_q, expected, atol=1e-8, rtol=0)
    torch.testing.assert_close(net.draw(z, c), theta)


def test_degrees_of_freedom_are_trained():
    """The log-df is a parameter: it receives a gradient and moves under training."""
    flow = InvertibleNetwork(2, 0, n_blocks=1, hidden=(8,), latent="student_t")
    assert any(p is flow.latent.log_df for p in flow.parameters())
    theta = torch.from_numpy(np.random.default_rng(1).standard_cauchy((256, 2))).float()
    flow.log_prob(theta).mean().neg().backward()
    assert flow.latent.log_df.grad is not None and flow.latent.log_df.grad > 0  # df down


@pytest.fixture(scope="module")
def heavy_tailed():
    """x = theta + noise that is a wide or a narrow normal, half the time each: the
    posterior is a mixture of a sharp peak and a wide base."""
    rng = np.random.default_rng(0)
    theta = rng.uniform(-3, 3, size=(3000, 2))
    scale = np.where(rng.random((3000, 1)) < 0.5, 1.0, 0.1)
    return theta + scale * rng.normal(size=theta.shape), theta


def test_estimator_with_student_t_latent(heavy_tailed):
    X, theta = heavy_tailed
    kwargs = {"hidden_layer_sizes": (32, 32), "n_coupling_blocks": 2, "max_iter": 15,
              "random_state": 0}
    est = CINNPosteriorEstimator(latent="student_t", **kwargs).fit(X, theta)
    df = est.latent_df_
    assert isinstance(df, float) and 2.0 < df < DF_INIT  # heavier tails than it started with
    draws = est.sample_posterior(X[:3], n_samples=200, random_state=1)
    assert draws.shape == (3, 200, 2) and np.isfinite(draws).all()
    np.testing.assert_array_equal(draws, est.sample_posterior(X[:3], 200, random_state=1))
    mean, std = est.predict(X[:3], return_std=True)
    assert mean.shape == std.shape == (3, 2)
    back = pickle.loads(pickle.dumps(est))
    assert back.latent_df_ == df
    np.testing.assert_array_equal(back.predict(X[:3]), est.predict(X[:3]))

    normal = CINNPosteriorEstimator(**kwargs).fit(X, theta)
    assert normal.latent_df_ is None
    held_x, held_theta = X[-500:], theta[-500:]  # seen in training by both: a fit check
    assert est.log_posterior(held_x, held_theta).mean() > (
        normal.log_posterior(held_x, held_theta).mean())


def test_student_t_latent_with_rejection_and_truncation(heavy_tailed):
    X, theta = heavy_tailed
    for support in ("reject", "truncate"):
        est = CINNPosteriorEstimator(
            latent="student_t", support=support, parameter_bounds=[(-3, 3), (-3, 3)],
            hidden_layer_sizes=(16,), n_coupling_blocks=1, max_iter=2, random_state=0,
        ).fit(X[:600], theta[:600])
        draws = est.sample_posterior(X[:2], n_samples=100, random_state=0)
        assert np.all(np.abs(draws) < 3)
        assert np.isfinite(est.log_posterior(X[:5], theta[:5])).all()
