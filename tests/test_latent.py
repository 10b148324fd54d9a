"""The latent distributions: the Student-t's and the scale mixture's densities, their
draws from standard normal base values, and an estimator trained and sampled with them."""

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
    MIXTURE_WEIGHT_INIT,
    NormalLatent,
    ScaleMixtureLatent,
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


@pytest.mark.parametrize(("scale", "weight"), [(0.3, 0.05), (0.1, 0.5), (2.0, 0.9)])
@pytest.mark.parametrize("d", [1, 3])
def test_scale_mixture_log_prob_is_the_mixture_density(scale, weight, d):
    latent = ScaleMixtureLatent(scale, weight).double()
    s, w = latent.scales().detach().numpy(), latent.weights().detach().numpy()
    np.testing.assert_allclose(s, [1.0, scale], rtol=1e-6)  # set in float32
    np.testing.assert_allclose(w, [1 - weight, weight], rtol=1e-6)
    z = torch.from_numpy(np.random.default_rng(0).standard_t(3, size=(50, d)))
    expected = np.log(sum(
        w[k] * stats.multivariate_normal(np.zeros(d), s[k] ** 2 * np.eye(d)).pdf(z.numpy())
        for k in range(2)))
    np.testing.assert_allclose(latent.log_prob(z).detach().numpy(), expected, rtol=1e-10)


def test_scale_mixture_draws_pick_the_component_by_the_last_column():
    latent = ScaleMixtureLatent(0.1, 0.3)
    e = torch.linspace(-3, 3, 601)
    g = torch.ones(len(e), 2)
    z = latent.from_normal(torch.cat([g, e[:, None]], dim=1))
    assert z.shape == (len(e), 2)
    second = stats.norm.cdf(e.numpy()) < 0.3
    np.testing.assert_allclose(z[:, 0].numpy(), np.where(second, 0.1, 1.0), rtol=1e-6)
    assert torch.equal(z[:, 0], z[:, 1])  # one scale per draw, shared by its columns


def test_scale_mixture_draws_follow_the_mixture():
    latent = ScaleMixtureLatent(0.2, 0.4)
    base = torch.randn(200_000, 2, generator=torch.Generator().manual_seed(0))
    z = latent.from_normal(base)[:, 0].numpy()

    def cdf(x):
        return 0.6 * stats.norm.cdf(x) + 0.4 * stats.norm.cdf(x / 0.2)

    assert stats.kstest(z, cdf).pvalue > 0.01
    assert stats.kstest(z, stats.norm(scale=z.std()).cdf).pvalue < 1e-6  # not one normal


def test_normal_latent_is_the_identity_on_base_values():
    latent = make_latent("normal")
    assert isinstance(latent, NormalLatent) and latent.extra == 0
    z = torch.randn(5, 3)
    assert latent.from_normal(z) is z
    torch.testing.assert_close(latent.log_prob(z), standard_normal_log_prob(z))
    with pytest.raises(ValueError, match="latent must be one of"):
        make_latent("cauchy")


@pytest.mark.parametrize("kind", ["student_t", "scale_mixture"])
def test_draws_carry_the_density_log_prob_gives_them(kind):
    """sample() returns each draw's log density: the same as log_prob of the draw."""
    torch.manual_seed(0)
    flow = InvertibleNetwork(3, 2, n_blocks=2, hidden=(16,), latent=kind).double()
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


def test_mixture_scales_and_weights_are_trained():
    """Pairs from a sharp peak on a wide base pull the narrow component's weight up."""
    flow = InvertibleNetwork(2, 0, n_blocks=1, hidden=(8,), latent="scale_mixture")
    latent = flow.latent
    assert {id(latent.log_scales), id(latent.logits)} <= {id(p) for p in flow.parameters()}
    rng = np.random.default_rng(1)
    scale = np.where(rng.random((512, 1)) < 0.5, 1.0, 0.1)
    theta = torch.from_numpy(scale * rng.normal(size=(512, 2))).float()
    flow.log_prob(theta).mean().neg().backward()
    assert latent.logits.grad[1] < 0 < latent.logits.grad[0]  # the narrow weight goes up
    assert latent.log_scales.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def heavy_tailed():
    """x = theta + noise that is a wide or a narrow normal, half the time each: the
    posterior is a mixture of a sharp peak and a wide base."""
    rng = np.random.default_rng(0)
    theta = rng.uniform(-3, 3, size=(3000, 2))
    scale = np.where(rng.random((3000, 1)) < 0.5, 1.0, 0.1)
    return theta + scale * rng.normal(size=theta.shape), theta


def test_estimator_with_student_t_and_scale_mixture_latents(heavy_tailed):
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
    mixture = CINNPosteriorEstimator(latent="scale_mixture", **kwargs).fit(X, theta)
    assert mixture.latent_df_ is None
    weight = float(mixture.network_.flow.latent.weights()[1].detach())
    assert weight > MIXTURE_WEIGHT_INIT  # the data are half peak, half wide base
    draws = mixture.sample_posterior(X[:3], n_samples=200, random_state=1)
    assert draws.shape == (3, 200, 2) and np.isfinite(draws).all()
    np.testing.assert_array_equal(draws, mixture.sample_posterior(X[:3], 200, random_state=1))
    back = pickle.loads(pickle.dumps(mixture))
    np.testing.assert_array_equal(back.predict(X[:3]), mixture.predict(X[:3]))
    held_x, held_theta = X[-500:], theta[-500:]  # seen in training by all: a fit check
    normal_score = normal.log_posterior(held_x, held_theta).mean()
    assert est.log_posterior(held_x, held_theta).mean() > normal_score
    assert mixture.log_posterior(held_x, held_theta).mean() > normal_score


@pytest.mark.parametrize("kind", ["student_t", "scale_mixture"])
def test_heavy_tailed_latents_with_rejection_and_truncation(heavy_tailed, kind):
    X, theta = heavy_tailed
    for support in ("reject", "truncate"):
        est = CINNPosteriorEstimator(
            latent=kind, support=support, parameter_bounds=[(-3, 3), (-3, 3)],
            hidden_layer_sizes=(16,), n_coupling_blocks=1, max_iter=2, random_state=0,
        ).fit(X[:600], theta[:600])
        draws = est.sample_posterior(X[:2], n_samples=100, random_state=0)
        assert np.all(np.abs(draws) < 3)
        assert np.isfinite(est.log_posterior(X[:5], theta[:5])).all()
