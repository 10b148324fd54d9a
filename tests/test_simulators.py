"""The example models of :mod:`skcinn.simulators`: the application models of the cINN
paper and the benchmark tasks of simulation-based inference.

Every model is checked for shapes, dtype, prior support, seeding and vectorisation;
then each against a known property (a closed form, an invariant, or an independent
simulation). Monte-Carlo checks use fixed seeds and tolerances of four standard errors
(plus, for the Euler schemes, a bound on the discretisation bias), so that they are
deterministic and would fail for a real error, not by chance.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from skcinn._priors import as_prior
from skcinn.simulators import (
    SIR,
    SLCP,
    DiffusionDecisionModel,
    GaussianLinear,
    LeakyCompetingAccumulator,
    LevyFlightModel,
    TelegraphModel,
    TwoMoons,
)
from skcinn.simulators.levy_flight import symmetric_stable

# Models of data sets: factory of a model with the given set size, and the features.
SET_MODELS = {
    "sir": (lambda size: SIR(n_days=size), 1),
    "ddm": (lambda size: DiffusionDecisionModel(n_trials=size), 2),
    "ddm_2_conditions": (lambda size: DiffusionDecisionModel(n_trials=size, n_conditions=2), 3),
    "levy_flight": (lambda size: LevyFlightModel(n_trials=size), 2),
    "levy_flight_2_conditions": (lambda size: LevyFlightModel(n_trials=size, n_conditions=2), 3),
    "lca": (lambda size: LeakyCompetingAccumulator(n_trials=size), 2),
    "telegraph": (lambda size: TelegraphModel(n_cells=size), 1),
}
# Models of one flat observation: model and its dimension.
FLAT_MODELS = {
    "two_moons": (TwoMoons, 2),
    "slcp": (SLCP, 8),
    "gaussian_linear": (GaussianLinear, 10),
}
MODELS = {
    **{name: (lambda f=factory: f((4, 12))) for name, (factory, _) in SET_MODELS.items()},
    **{name: cls for name, (cls, _) in FLAT_MODELS.items()},
}
DT = 0.001
# Euler--Maruyama checks the boundaries only on the grid, which widens each of them by
# about 0.5826 * sqrt(dt) (Broadie, Glasserman & Kou, 1997).
SHIFT = 0.5826 * np.sqrt(DT)


def summary(X) -> np.ndarray:
    """One number per data set: the mean of all its values."""
    return np.array([np.mean(x) for x in list(X)])


def quantile_theta(model, q: float) -> np.ndarray:
    """The parameter vector of the prior's marginal ``q``-quantiles, shape (1, p)."""
    return np.array([[d.ppf(q) for d in model.prior.values()]])


def one_set(model, theta, seed: int = 0) -> np.ndarray:
    """The single data set of ``theta`` (one parameter vector)."""
    return model.simulate(np.atleast_2d(np.asarray(theta, dtype=float)),
                          np.random.default_rng(seed))[0]


# ------------------------------------------------------------------ shapes and dtypes


@pytest.mark.parametrize("name", SET_MODELS)
@pytest.mark.parametrize("size", [7, (3, 9)], ids=["fixed", "varying"])
def test_set_shapes(name, size):
    factory, n_features = SET_MODELS[name]
    model = factory(size)
    rng = np.random.default_rng(0)
    theta = model.sample_prior(6, rng)
    X = model.simulate(theta, rng)
    if isinstance(size, int):
        assert isinstance(X, np.ndarray) and X.dtype == np.float64
        assert X.shape == (6, 7, n_features)
    else:
        assert isinstance(X, list) and len(X) == 6
        for x in X:
            assert x.dtype == np.float64 and x.ndim == 2 and x.shape[1] == n_features
            assert 3 <= len(x) <= 9
        assert len({len(x) for x in X}) > 1
    assert all(np.isfinite(x).all() for x in list(X))
    single = model.simulate(theta[:1], rng)
    assert len(single) == 1 and np.shape(single[0])[1] == n_features


@pytest.mark.parametrize("name", FLAT_MODELS)
def test_flat_shapes(name):
    cls, dim = FLAT_MODELS[name]
    model = cls()
    rng = np.random.default_rng(0)
    X = model.simulate(model.sample_prior(5, rng), rng)
    assert isinstance(X, np.ndarray) and X.dtype == np.float64 and X.shape == (5, dim)
    assert model.simulate(model.sample_prior(1, rng), rng).shape == (1, dim)


# ---------------------------------------------------------------------------- priors


@pytest.mark.parametrize("name", MODELS)
def test_prior_draws_inside_support(name):
    """The prior dict names the parameters; sample_prior draws from it, inside bounds."""
    model = MODELS[name]()
    assert list(model.prior) == list(model.parameter_names)
    prior = as_prior(model.prior)
    theta = model.sample_prior(2000, np.random.default_rng(0))
    assert theta.shape == (2000, len(model.parameter_names)) and theta.dtype == np.float64
    assert np.all(theta >= prior.lower) and np.all(theta <= prior.upper)
    for column, dist in zip(theta.T, model.prior.values(), strict=True):
        assert stats.kstest(column, dist.cdf).pvalue > 1e-3
    bounded = np.isfinite(prior.lower) & np.isfinite(prior.upper)
    assert bounded.all() == (name != "gaussian_linear")


# ------------------------------------------------------------- seeding, vectorisation


@pytest.mark.parametrize("name", MODELS)
def test_seeding(name):
    model = MODELS[name]()
    theta = model.sample_prior(5, np.random.default_rng(1))

    def run(seed):
        return list(model.simulate(theta, np.random.default_rng(seed)))

    first, again, other = run(0), run(0), run(1)
    for x, y in zip(first, again, strict=True):
        np.testing.assert_array_equal(x, y)
    assert any(x.shape != z.shape or not np.array_equal(x, z)
               for x, z in zip(first, other, strict=True))


@pytest.mark.parametrize("name", MODELS)
def test_vectorisation(name):
    """Row i of a batch is distributed as a batch of one with parameters theta_i.

    Row i of one batched call and a batch of one share no random numbers, so they cannot
    be compared exactly; they are compared in distribution. A batch alternates two
    parameter vectors (the prior's marginal 20 % and 90 % quantiles); the summary (mean of the
    data set) of its even rows must match that of independent batch-of-one calls at the
    first, its odd rows those at the second (two-sample KS tests). That the two
    parameter vectors give clearly different summaries shows that the test would catch
    rows simulated with the wrong parameters.
    """
    model = MODELS[name]()
    low, high = quantile_theta(model, 0.2), quantile_theta(model, 0.9)
    reps = 60
    batch = summary(model.simulate(np.tile(np.vstack([low, high]), (reps, 1)),
                                   np.random.default_rng(0)))
    seeds = np.random.SeedSequence(1).spawn(2 * reps)
    singles = [
        summary([model.simulate(theta, np.random.default_rng(s))[0]
                 for s in seeds[k * reps:(k + 1) * reps]])
        for k, theta in enumerate([low, high])
    ]
    assert stats.ks_2samp(batch[0::2], singles[0]).pvalue > 1e-3
    assert stats.ks_2samp(batch[1::2], singles[1]).pvalue > 1e-3
    assert stats.ks_2samp(singles[0], singles[1]).pvalue < 1e-3


# ------------------------------------------------------------------------------- SIR


def test_sir_compartments_conserve_population():
    model = SIR(n_days=(50, 120), population=1000, initial_infected=5)
    rng = np.random.default_rng(0)
    theta = model.sample_prior(40, rng)
    X, states = model.simulate(theta, rng, return_states=True)
    for x, s in zip(X, states, strict=True):
        assert s.shape == (len(x) + 1, 3)
        np.testing.assert_array_equal(s.sum(axis=1), 1000)
        np.testing.assert_array_equal(s[0], [995, 5, 0])
        assert np.all(s >= 0) and np.all(np.diff(s[:, 0]) <= 0) and np.all(np.diff(s[:, 2]) >= 0)
    np.testing.assert_allclose(SIR.rates(theta)[:, 1], theta[:, 0] * theta[:, 1])


@pytest.mark.parametrize("dispersion", [None, 4.0])
def test_sir_reports_are_noisy_new_infections(dispersion):
    """Reports have mean C_t, variance C_t (Poisson) or C_t + C_t^2 / r."""
    model = SIR(n_days=200, dispersion=dispersion)
    rng = np.random.default_rng(0)
    X, states = model.simulate(np.tile([[0.6, 0.3]], (200, 1)), rng, return_states=True)
    cases = -np.diff(states[..., 0], axis=1)
    y, c = X[..., 0].ravel(), cases.ravel()
    assert np.all(y[c == 0] == 0)
    variance = c if dispersion is None else c + c**2 / dispersion
    z = (y - c).sum() / np.sqrt(variance.sum())
    assert abs(z) < 4
    excess = (y - c) ** 2 - variance  # mean zero if the variance is right
    assert abs(excess.mean()) < 4 * excess.std() / np.sqrt(len(excess))


# ------------------------------------------------------------------------------- DDM


def upper_probability(v, a, z):
    """P(upper boundary) of unit-noise Brownian motion with drift v from z*a in (0, a)."""
    return np.expm1(-2 * v * a * z) / np.expm1(-2 * v * a)


def mean_decision_time(v, a):
    """Mean exit time from (0, a), starting at a / 2."""
    return a / (2 * v) * np.tanh(v * a / 2)


@pytest.mark.parametrize("model_cls", [DiffusionDecisionModel, LevyFlightModel])
@pytest.mark.parametrize("v, a, z", [(1.0, 1.5, 0.5), (-0.5, 2.0, 0.5), (1.5, 1.0, 0.3)])
def test_ddm_choice_probability_and_mean_rt(model_cls, v, a, z):
    """Against the closed forms; the Lévy-flight model at alpha = 2 is the same model.

    Tolerance: four Monte-Carlo standard errors plus the discretisation bias, bounded by
    the change of the closed form when each boundary moves out by SHIFT (and, for the
    response time, one step).
    """
    model = model_cls(n_trials=4000, dt=DT)
    theta = [v, a, z, 0.0] + ([2.0] if model_cls is LevyFlightModel else [])
    x = one_set(model, theta)
    rt, choice = x[:, 0], x[:, 1]
    p = upper_probability(v, a, z)
    p_shifted = upper_probability(v, a + 2 * SHIFT, (z * a + SHIFT) / (a + 2 * SHIFT))
    assert abs(choice.mean() - p) < 4 * np.sqrt(p * (1 - p) / len(x)) + abs(p_shifted - p)
    if z == 0.5:
        mean = mean_decision_time(v, a)
        bias = abs(mean_decision_time(v, a + 2 * SHIFT) - mean) + DT
        assert abs(rt.mean() - mean) < 4 * rt.std() / np.sqrt(len(x)) + bias


def test_ddm_non_decision_time_and_deadline():
    model = DiffusionDecisionModel(n_trials=500, max_time=0.05)
    x = one_set(model, [0.0, 2.0, 0.7, 0.3])
    assert np.all(x[:, 0] >= 0.3 + DT - 1e-12) and np.all(x[:, 0] <= 0.35 + 1e-12)
    late = np.isclose(x[:, 0], 0.35)
    assert late.sum() > 100
    assert x[late, 1].mean() > 0.9  # start above the middle: nearer the upper boundary


def test_ddm_two_conditions_have_their_own_drift():
    model = DiffusionDecisionModel(n_trials=2000, n_conditions=2)
    assert model.parameter_names == ["v_0", "v_1", "a", "z", "t0"]
    x = one_set(model, [2.0, -2.0, 1.0, 0.5, 0.2])
    condition = x[:, 2]
    assert set(np.unique(condition)) == {0.0, 1.0}
    assert abs(condition.mean() - 0.5) < 4 * np.sqrt(0.25 / len(x))
    assert x[condition == 0, 1].mean() > 0.8 and x[condition == 1, 1].mean() < 0.2
    with pytest.raises(ValueError, match="n_conditions"):
        DiffusionDecisionModel(n_conditions=3)


# ----------------------------------------------------------------------- Lévy flight


@pytest.mark.parametrize("alpha", [1.0, 1.5, 2.0])
def test_symmetric_stable_matches_scipy(alpha):
    """Chambers--Mallows--Stuck draws follow scipy's levy_stable(alpha, 0) (S(2) = N(0, 2))."""
    rng = np.random.default_rng(0)
    draws = symmetric_stable(np.full(1, alpha), (20000,), rng)
    reference = stats.levy_stable.rvs(alpha, 0.0, size=20000, random_state=rng)
    assert stats.ks_2samp(draws, reference).pvalue > 1e-3
    if alpha == 2.0:
        assert stats.kstest(draws, stats.norm(0, np.sqrt(2)).cdf).pvalue > 1e-3


def test_levy_flight_heavy_tails_change_the_data():
    model = LevyFlightModel(n_trials=3000)
    gaussian, stable = (one_set(model, [1.0, 1.5, 0.5, 0.2, alpha]) for alpha in (2.0, 1.2))
    assert stats.ks_2samp(gaussian[:, 0], stable[:, 0]).pvalue < 1e-6


# ------------------------------------------------------------------------------- LCA


@pytest.mark.parametrize("inputs", [(2.0, 2.0), (2.5, 2.0), (2.0, 3.0)])
def test_lca_choice_follows_the_stronger_input(inputs):
    model = LeakyCompetingAccumulator(n_trials=3000)
    x = one_set(model, [*inputs, 1.0, 1.0, 1.0, 0.2])
    first = np.mean(x[:, 1] == 0)  # accumulator 1 won
    se = np.sqrt(0.25 / len(x))
    if inputs[0] == inputs[1]:
        assert abs(first - 0.5) < 4 * se
    else:
        assert (first - 0.5) * np.sign(inputs[0] - inputs[1]) > 4 * se
    assert np.all(x[:, 0] > 0.2) and set(np.unique(x[:, 1])) <= {0.0, 1.0}


def test_lca_rejects_unknown_bounds():
    with pytest.raises(ValueError, match="Unknown"):
        LeakyCompetingAccumulator(bounds={"leak": (0, 1)})


# ------------------------------------------------------------------------- telegraph


@pytest.mark.parametrize("theta", [(0.5, 2.0, 30.0), (3.0, 0.3, 10.0), (0.2, 5.0, 150.0)])
def test_telegraph_mean_and_fano_factor(theta):
    model = TelegraphModel(n_cells=40000)
    counts = one_set(model, theta)[:, 0]
    mean, fano = TelegraphModel.moments(np.array(theta))
    k_on, k_off, k_syn = theta
    assert np.isclose(mean[0], k_syn * k_on / (k_on + k_off))
    n, var = len(counts), counts.var(ddof=1)
    assert abs(counts.mean() - mean[0]) < 4 * np.sqrt(var / n)
    # Standard error of the sample variance, (mu_4 - sigma^4) / n, through var / mean.
    se_var = np.sqrt((np.mean((counts - counts.mean()) ** 4) - var**2) / n)
    assert abs(var / counts.mean() - fano[0]) < 4 * se_var / mean[0] + 0.02 * fano[0]


def test_telegraph_matches_a_gillespie_simulation():
    """The Beta--Poisson draws follow the stationary law of the switching process."""
    k_on, k_off, k_syn = 0.7, 1.3, 15.0
    rng = np.random.default_rng(0)
    cells, horizon = 3000, 12.0
    on = rng.random(cells) < k_on / (k_on + k_off)
    mrna, time = np.zeros(cells), np.zeros(cells)
    running = np.ones(cells, dtype=bool)
    while running.any():  # one reaction per running cell per pass
        rates = np.column_stack([np.where(on, k_off, k_on), k_syn * on, mrna])
        total = rates.sum(axis=1)
        time += np.where(running, rng.exponential(1 / total), 0.0)
        running &= time < horizon
        pick = (rng.random(cells) * total)[:, None] > np.cumsum(rates, axis=1)
        reaction = pick.sum(axis=1)
        on ^= running & (reaction == 0)
        mrna += running * ((reaction == 1) * 1.0 - (reaction == 2) * 1.0)
    draws = one_set(TelegraphModel(n_cells=20000), [k_on, k_off, k_syn])[:, 0]
    assert stats.ks_2samp(mrna, draws).pvalue > 1e-3
    assert stats.ks_2samp(mrna, rng.poisson(k_syn * k_on / (k_on + k_off), cells)).pvalue < 1e-6


# ------------------------------------------------------------------- benchmark tasks


def test_gaussian_linear_exact_posterior():
    """Against Bayes' rule written out: precision 1/0.1 + 1/0.1, mean x / 2."""
    model = GaussianLinear()
    rng = np.random.default_rng(0)
    X = model.simulate(model.sample_prior(50, rng), rng)
    mean, cov = model.posterior(X)
    precision = np.eye(10) / 0.1 + np.eye(10) / 0.1
    np.testing.assert_allclose(cov, np.broadcast_to(np.linalg.inv(precision), cov.shape))
    np.testing.assert_allclose(mean, np.linalg.solve(precision, (X / 0.1).T).T)
    np.testing.assert_allclose(mean, X / 2)
    assert model.sample_posterior(X, 7, rng).shape == (50, 7, 10)


def test_gaussian_linear_posterior_is_calibrated():
    """Over prior draws, (theta - mean) / sd is standard normal."""
    model = GaussianLinear(n_params=3, prior_var=0.5, noise_var=0.2)
    rng = np.random.default_rng(0)
    theta = model.sample_prior(4000, rng)
    mean, cov = model.posterior(model.simulate(theta, rng))
    z = (theta - mean) / np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
    assert stats.kstest(z.ravel(), "norm").pvalue > 1e-3


def test_two_moons_ring():
    """At theta = 0, x - (0.25, 0) has radius N(0.1, 0.01^2) and angle in (-pi/2, pi/2)."""
    model = TwoMoons()
    x = model.simulate(np.zeros((5000, 2)), np.random.default_rng(0))
    offset = x - [0.25, 0.0]
    radius = np.hypot(*offset.T)
    assert stats.kstest(radius, stats.norm(0.1, 0.01).cdf).pvalue > 1e-3
    assert np.all(offset[:, 0] > 0)
    assert stats.kstest(np.arctan2(offset[:, 1], offset[:, 0]),
                        stats.uniform(-np.pi / 2, np.pi).cdf).pvalue > 1e-3
    theta = np.random.default_rng(1).uniform(-1, 1, (5000, 2))
    shifted = model.simulate(theta, np.random.default_rng(0))
    shift = np.column_stack([-np.abs(theta.sum(axis=1)), theta[:, 1] - theta[:, 0]])
    np.testing.assert_allclose(shifted - x, shift / np.sqrt(2), atol=1e-12)


def test_slcp_four_draws_share_mean_and_covariance():
    theta = np.array([0.5, -1.0, 1.1, -0.9, 0.8])
    model = SLCP()
    x = model.simulate(np.tile(theta, (20000, 1)), np.random.default_rng(0))
    assert x.shape == (20000, 8)
    draws = x.reshape(-1, 4, 2)
    mean, cov = SLCP.moments(theta)
    s1, s2, rho = theta[2] ** 2, theta[3] ** 2, np.tanh(theta[4])
    np.testing.assert_allclose(cov[0], [[s1**2, rho * s1 * s2], [rho * s1 * s2, s2**2]])
    se = np.sqrt(np.diag(cov[0]) / len(x))
    for j in range(4):
        assert np.all(np.abs(draws[:, j].mean(axis=0) - theta[:2]) < 4 * se)
        np.testing.assert_allclose(np.cov(draws[:, j].T), cov[0], rtol=0.05, atol=0.02)
    between = np.corrcoef(draws[:, 0, 0], draws[:, 1, 0])[0, 1]
    assert abs(between) < 4 / np.sqrt(len(x))
