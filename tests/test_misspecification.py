"""Misspecification and posterior predictive checks: the MMD estimate matches its
definition and is unbiased; the MMD test keeps its level on data from the model and
rejects data from a different model (heavy-tailed or wider noise); posterior predictive
p-values are unremarkable for the model's own data and extreme for a variance nine
times the model's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from skcinn import CINNPosteriorEstimator
from skcinn.misspecification import (
    MisspecificationResult,
    median_bandwidths,
    misspecification_test,
    mmd,
    summarize,
)
from skcinn.predictive import posterior_predictive
from skcinn.simulators import GaussianMean

TINY = dict(
    hidden_layer_sizes=(16, 16), summary_hidden_sizes=(16,), summary_dim=4,
    n_coupling_blocks=2, max_iter=10, n_simulations=2000, learning_rate_init=1e-2,
    random_state=0, device="cpu",
)
MODEL = GaussianMean(n_params=2, n_obs=(10, 30))


class IdentitySummary:
    """A stand-in estimator whose learned summary is the flat data itself."""

    def summarize(self, X):
        return np.asarray(X, dtype=np.float64)


class ExactPosterior:
    """A stand-in estimator drawing from the exact posterior of a GaussianMean model."""

    def __init__(self, model: GaussianMean) -> None:
        self.model = model

    def fit(self, X, y=None):
        return self

    def sample_posterior(self, X, n_samples=1000, random_state=None):
        return self.model.sample_posterior(X, n_samples, np.random.default_rng(random_state))


def flat_prior(n, rng):
    return rng.normal(size=(n, 1))


def flat_simulator(theta, rng):
    return theta + rng.normal(size=(len(theta), 3))


def naive_mmd(a, b, bandwidths):
    """Unbiased MMD² by its definition, with explicit loops."""
    def k(x, y):
        return np.mean([np.exp(-np.sum((x - y) ** 2) / (2 * h**2)) for h in bandwidths])

    m, n = len(a), len(b)
    aa = sum(k(a[i], a[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    bb = sum(k(b[i], b[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    ab = sum(k(x, y) for x in a for y in b) / (m * n)
    return aa + bb - 2 * ab


def heavy_tailed(theta, rng):
    """GaussianMean data with Student-t noise with one degree of freedom (Cauchy)."""
    sizes = MODEL.sizes(len(theta), rng)
    return [t + rng.standard_t(1, size=(k, 2)) for t, k in zip(theta, sizes, strict=True)]


def wide(theta, rng):
    """GaussianMean data with noise five times wider."""
    sizes = MODEL.sizes(len(theta), rng)
    return [t + 5.0 * rng.normal(size=(k, 2)) for t, k in zip(theta, sizes, strict=True)]


@pytest.fixture(scope="module")
def estimator():
    return CINNPosteriorEstimator(**TINY).fit(MODEL.simulate, MODEL.prior)


# ---------------------------------------------------------------------------- MMD


def test_mmd_matches_its_definition():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 3)), rng.normal(1.0, 1.0, size=(5, 3))
    bandwidths = [0.5, 2.0]
    assert mmd(a, b, bandwidths) == pytest.approx(naive_mmd(a, b, bandwidths), rel=1e-10)
    assert mmd(a, b, bandwidths) == pytest.approx(mmd(b, a, bandwidths), rel=1e-10)
    # default bandwidths: the median heuristic of the pooled samples
    pooled = median_bandwidths(np.concatenate([a, b]))
    assert mmd(a, b) == pytest.approx(naive_mmd(a, b, pooled), rel=1e-10)


def test_mmd_of_a_single_point_uses_the_biased_within_term():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(1, 2)), rng.normal(size=(6, 2))
    k_ab = np.exp(-((a - b) ** 2).sum(axis=1) / 2).mean()
    expected = 1.0 + _within_mean(b) - 2 * k_ab  # k(a, a) = 1 in place of the a-a mean
    assert mmd(a, b, [1.0]) == pytest.approx(expected, rel=1e-10)


def _within_mean(b):
    sq = ((b[:, None] - b[None]) ** 2).sum(-1)
    kernel = np.exp(-sq / 2)
    return (kernel.sum() - len(b)) / (len(b) * (len(b) - 1))


def test_mmd_is_unbiased_and_detects_a_shift():
    rng = np.random.default_rng(2)
    same = [mmd(rng.normal(size=(20, 2)), rng.normal(size=(30, 2))) for _ in range(300)]
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(len(same))
    assert min(same) < 0  # unbiased: negative values occur
    shifted = mmd(rng.normal(size=(20, 2)), rng.normal(1.0, 1.0, size=(30, 2)))
    assert shifted > np.quantile(same, 0.99)


def test_median_bandwidths():
    points = np.array([[0.0], [1.0], [3.0]])  # distances 1, 2, 3: median 2
    np.testing.assert_allclose(median_bandwidths(points), 2 * np.array([0.25, 0.5, 1, 2, 4]))
    np.testing.assert_allclose(median_bandwidths(np.zeros((4, 2)), [1.0]), [1.0])


@pytest.mark.parametrize("a, b, bandwidths, match", [
    (np.zeros((3, 2)), np.zeros((3, 3)), None, "dimensions"),
    (np.zeros((0, 2)), np.zeros((3, 2)), None, "at least one point"),
    (np.zeros((3, 2)), np.ones((3, 2)), [1.0, -1.0], "positive"),
])
def test_mmd_rejects_bad_input(a, b, bandwidths, match):
    with pytest.raises(ValueError, match=match):
        mmd(a, b, bandwidths)


# ------------------------------------------------------------ misspecification test


def test_identical_distributions_keep_the_level():
    rng = np.random.default_rng(3)
    p_values = []
    for seed in range(200):
        X_obs = flat_simulator(flat_prior(10, rng), rng)
        result = misspecification_test(IdentitySummary(), X_obs, flat_simulator, flat_prior,
                                       n_reference=100, n_null=50, random_state=seed)
        p_values.append(result.p_value)
    p_values = np.array(p_values)
    assert np.mean(p_values < 0.05) < 0.08  # exact level: P(p <= 2/51) = 0.039
    assert stats.kstest(p_values, "uniform").pvalue > 0.001


def test_result_fields_and_frame():
    rng = np.random.default_rng(4)
    X_obs = flat_simulator(flat_prior(5, rng), rng)
    result = misspecification_test(IdentitySummary(), X_obs, flat_simulator, flat_prior,
                                   n_reference=50, n_null=30, random_state=0)
    assert isinstance(result, MisspecificationResult)
    assert result.null_mmd2.shape == (30,) and result.bandwidths.shape == (5,)
    assert (result.n_observed, result.n_reference, result.alpha) == (5, 50, 0.05)
    assert result.p_value >= 1 / 31 and result.misspecified == (result.p_value < 0.05)
    frame = result.to_frame()
    assert frame.shape == (1, 6) and frame["mmd2"].iloc[0] == result.mmd2
    again = misspecification_test(IdentitySummary(), X_obs, flat_simulator, flat_prior,
                                  n_reference=50, n_null=30, random_state=0)
    assert again.mmd2 == result.mmd2 and again.p_value == result.p_value


def test_invalid_arguments():
    X = np.zeros((3, 3))
    with pytest.raises(ValueError, match="alpha"):
        misspecification_test(IdentitySummary(), X, flat_simulator, flat_prior, alpha=1.5)
    with pytest.raises(ValueError, match="n_null"):
        misspecification_test(IdentitySummary(), X, flat_simulator, flat_prior, n_null=0)
    with pytest.raises(TypeError, match="has no summarize"):
        summarize(object(), X)


def test_data_from_the_model_are_not_flagged(estimator):
    rng = np.random.default_rng(5)
    X_obs = MODEL.simulate(MODEL.sample_prior(20, rng), rng)
    result = misspecification_test(estimator, X_obs, MODEL.simulate, MODEL.prior,
                                   random_state=0)
    assert result.p_value > 0.05 and not result.misspecified


@pytest.mark.parametrize("simulator", [heavy_tailed, wide])
def test_data_from_another_model_are_flagged(estimator, simulator):
    rng = np.random.default_rng(6)
    X_obs = simulator(MODEL.sample_prior(20, rng), rng)
    result = misspecification_test(estimator, X_obs, MODEL.simulate, MODEL.prior,
                                   random_state=0)
    assert result.p_value < 0.05 and result.misspecified
    assert result.mmd2 > result.null_mmd2.max()


def test_pipelines_are_summarized_through_their_transformers(estimator):
    rng = np.random.default_rng(7)
    X_obs = MODEL.simulate(MODEL.sample_prior(10, rng), rng)
    pipe = Pipeline([("identity", FunctionTransformer()), ("cinn", estimator)])
    np.testing.assert_array_equal(summarize(pipe, X_obs), estimator.summarize(X_obs))
    direct = misspecification_test(estimator, X_obs, MODEL.simulate, MODEL.prior,
                                   n_reference=200, n_null=50, random_state=1)
    piped = misspecification_test(pipe, X_obs, MODEL.simulate, MODEL.prior,
                                  n_reference=200, n_null=50, random_state=1)
    assert piped.mmd2 == direct.mmd2 and piped.p_value == direct.p_value


# ------------------------------------------------------ posterior predictive checks

PPC_MODEL = GaussianMean(n_params=1, n_obs=20)
STATISTICS = {"mean": np.mean, "variance": lambda x: np.var(x, ddof=1)}


def test_predictive_table_structure():
    rng = np.random.default_rng(8)
    X_obs = PPC_MODEL.simulate(PPC_MODEL.sample_prior(4, rng), rng)
    table = posterior_predictive(ExactPosterior(PPC_MODEL), X_obs, PPC_MODEL.simulate,
                                 STATISTICS, n_samples=50, random_state=0)
    assert list(table.columns) == ["observed", "mean", "sd", "p_value", "p_value_two_sided"]
    assert table.index.names == ["dataset", "statistic"] and len(table) == 8
    np.testing.assert_allclose(table.xs("mean", level="statistic")["observed"],
                               X_obs.mean(axis=(1, 2)))
    assert (table["sd"] > 0).all()
    assert table[["p_value", "p_value_two_sided"]].stack().between(0, 1).all()
    again = posterior_predictive(ExactPosterior(PPC_MODEL), X_obs, PPC_MODEL.simulate,
                                 STATISTICS, n_samples=50, random_state=0)
    pd.testing.assert_frame_equal(table, again)


def test_predictive_p_values_of_the_model_are_not_extreme():
    rng = np.random.default_rng(9)
    X_obs = PPC_MODEL.simulate(PPC_MODEL.sample_prior(200, rng), rng)
    table = posterior_predictive(ExactPosterior(PPC_MODEL), X_obs, PPC_MODEL.simulate,
                                 STATISTICS, n_samples=100, random_state=1)
    mean = table.xs("mean", level="statistic")
    assert abs(mean["p_value"].mean() - 0.5) < 0.05
    assert (mean["p_value_two_sided"] < 0.05).mean() <= 0.02
    variance = table.xs("variance", level="statistic")
    assert (variance["p_value_two_sided"] < 0.05).mean() < 0.12
    assert abs(variance["p_value"].mean() - 0.5) < 0.08


def test_predictive_p_values_flag_a_wrong_variance():
    rng = np.random.default_rng(10)
    wrong = GaussianMean(n_params=1, n_obs=20, noise_std=3.0)  # variance x 9
    X_obs = wrong.simulate(wrong.sample_prior(100, rng), rng)
    pipe = Pipeline([("identity", FunctionTransformer()),
                     ("exact", ExactPosterior(PPC_MODEL))])
    table = posterior_predictive(pipe, X_obs, PPC_MODEL.simulate, STATISTICS,
                                 n_samples=100, random_state=2)
    variance = table.xs("variance", level="statistic")
    assert (variance["p_value"] < 0.05).mean() > 0.95
    assert (variance["observed"] > variance["mean"] + 2 * variance["sd"]).mean() > 0.9


def test_predictive_input_checks():
    X = np.zeros((2, 5, 1))
    exact = ExactPosterior(PPC_MODEL)
    with pytest.raises(TypeError, match="statistics"):
        posterior_predictive(exact, X, PPC_MODEL.simulate, np.mean)
    with pytest.raises(ValueError, match="single float"):
        posterior_predictive(exact, X, PPC_MODEL.simulate, {"all": lambda x: x})
    with pytest.raises(ValueError, match="n_samples"):
        posterior_predictive(exact, X, PPC_MODEL.simulate, STATISTICS, n_samples=1)
