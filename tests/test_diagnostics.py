"""Diagnostics and scorers: exact posteriors of the analytic models pass, deliberately
wrong ones (too narrow, too wide, shifted) fail; the ECDF bands have their coverage;
the scorers work in cross-validation, on pipelines, and are deterministic.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import cross_validate
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

import skcinn
from skcinn import CINNPosteriorEstimator
from skcinn.diagnostics import (
    calibration_error,
    calibration_report,
    contraction,
    coverage,
    ecdf_bands,
    ecdf_difference,
    recovery,
    sbc,
    sbc_ranks,
    simulate_and_sample,
    z_scores,
)
from skcinn.metrics import SCORERS, log_posterior_density, sample_posterior
from skcinn.simulators import GaussianMean

N_SETS, N_DRAWS = 500, 400
TINY = dict(
    hidden_layer_sizes=(16, 16), summary_hidden_sizes=(16,), summary_dim=4,
    n_coupling_blocks=2, max_iter=5, learning_rate_init=1e-2, random_state=0, device="cpu",
)  # five epochs at 2e-3 barely move the posterior away from the prior


@pytest.fixture(scope="module")
def exact():
    """Truth, exact posterior draws, exact means and covariances of 500 data sets."""
    rng = np.random.default_rng(1)
    model = GaussianMean(n_params=2, prior_std=1.0, n_obs=(2, 10))
    theta = model.sample_prior(N_SETS, rng)
    X = model.simulate(theta, rng)
    mean, cov = model.posterior(X)
    draws = model.sample_posterior(X, N_DRAWS, rng)
    return {"theta": theta, "draws": draws, "mean": mean, "cov": cov, "model": model}


def wrong(exact, kind: str) -> np.ndarray:
    """Exact draws made too narrow, too wide or shifted by one posterior sd."""
    draws, mean = exact["draws"], exact["mean"][:, None, :]
    if kind == "narrow":
        return mean + 0.5 * (draws - mean)
    if kind == "wide":
        return mean + 2.0 * (draws - mean)
    sd = np.sqrt(np.diagonal(exact["cov"], axis1=1, axis2=2))
    return draws + sd[:, None, :]


# ------------------------------------------------------------------- exact posterior

def test_sbc_does_not_reject_exact_posterior(exact):
    table = sbc(exact["draws"], exact["theta"], parameter_names=["a", "b"], random_state=0)
    assert list(table.index) == ["a", "b"]
    assert list(table.columns) == ["chi2_pvalue", "ks_pvalue", "ecdf_outside_band", "rejected"]
    assert (table[["chi2_pvalue", "ks_pvalue"]] > 0.01).all().all()
    assert (table["ecdf_outside_band"] == 0).all()
    assert not table["rejected"].any()


def test_ranks_are_counts_with_random_ties():
    draws = np.array([[[0.0], [1.0], [1.0], [2.0]]])
    ranks = np.concatenate([sbc_ranks(draws, [[1.0]], random_state=s) for s in range(200)])
    assert set(np.unique(ranks)) == {1, 2, 3}
    assert sbc_ranks(draws, [[5.0]])[0, 0] == 4 and sbc_ranks(draws, [[-1.0]])[0, 0] == 0


def test_coverage_and_calibration_error_of_exact_posterior(exact):
    table = coverage(exact["draws"], exact["theta"])
    assert table.shape == (19, 2) and table.index.name == "level"
    assert np.all(np.abs(table.to_numpy() - table.index.to_numpy()[:, None]) < 0.06)
    errors = calibration_error(exact["draws"], exact["theta"])
    assert (errors["calibration_error"] < 0.05).all()
    assert (errors["max_calibration_error"] >= errors["calibration_error"]).all()


def test_recovery_matches_exact_posterior_means(exact):
    theta, mean = exact["theta"], exact["mean"]
    table = recovery(exact["draws"], theta)
    r2 = 1 - ((mean - theta) ** 2).sum(0) / ((theta - theta.mean(0)) ** 2).sum(0)
    np.testing.assert_allclose(table["r2"], r2, atol=5e-3)
    rmse = np.sqrt(((mean - theta) ** 2).mean(0))
    np.testing.assert_allclose(table["nrmse"], rmse / np.ptp(theta, axis=0), rtol=0.02)
    np.testing.assert_allclose(table["rmse"], rmse, rtol=0.02)
    assert np.all(np.abs(table["z_mean"]) < 0.15) and np.all(np.abs(table["z_std"] - 1) < 0.1)
    assert z_scores(exact["draws"], theta).shape == theta.shape


def test_contraction_matches_exact_variances(exact):
    exact_var = np.diagonal(exact["cov"], axis1=1, axis2=2)
    table = contraction(exact["draws"], [1.0, 1.0])
    np.testing.assert_allclose(table["contraction"], 1 - exact_var.mean(0), atol=1e-2)


# ------------------------------------------------------------------ wrong posteriors

@pytest.mark.parametrize("kind", ["narrow", "wide", "shifted"])
def test_wrong_posteriors_are_detected(exact, kind):
    draws = wrong(exact, kind)
    assert sbc(draws, exact["theta"], random_state=0)["rejected"].all()
    errors = calibration_error(draws, exact["theta"])
    assert (errors["calibration_error"] > 0.1).all()
    if kind != "shifted":
        sign = -1 if kind == "narrow" else 1
        assert (sign * errors["signed_calibration_error"] > 0.1).all()


# ------------------------------------------------------------------------- ECDF bands

def test_ecdf_bands_have_simultaneous_coverage():
    n = 100
    z, lower, upper = ecdf_bands(n, n_points=50, confidence=0.95, n_sim=4000, random_state=0)
    u = np.random.default_rng(123).random((4000, n))
    ecdf = (u[:, :, None] <= z).mean(axis=1) - z
    inside = np.all((ecdf >= lower) & (ecdf <= upper), axis=1).mean()
    assert 0.93 <= inside <= 0.97


def test_ecdf_bands_widen_for_fewer_datasets():
    widths = []
    for n in (50, 200, 1000):
        z, lower, upper = ecdf_bands(n, n_points=20, random_state=0)
        assert np.all(lower < 0) and np.all(upper > 0) and len(z) == 19
        widths.append(np.mean(upper - lower))
    assert widths[0] > widths[1] > widths[2]


def test_ecdf_difference_of_uniform_ranks_is_small():
    ranks = np.random.default_rng(0).integers(0, 100, size=(2000, 3))
    diff = ecdf_difference(ranks, 99, parameter_names=list("abc"))
    assert diff.shape == (99, 3) and list(diff.columns) == list("abc")
    assert np.abs(diff.to_numpy()).max() < 0.05


# ------------------------------------------------------------------ estimator level

@pytest.fixture(scope="module")
def fitted():
    """A tiny estimator trained on 2000 Gaussian-mean data sets, and its training data."""
    rng = np.random.default_rng(0)
    model = GaussianMean(n_obs=(5, 20))
    theta = model.sample_prior(2000, rng)
    X = model.simulate(theta, rng)
    return CINNPosteriorEstimator(**TINY).fit(X, theta), X, theta, model


def test_cross_validate_with_scorers(fitted):
    est, X, theta, _ = fitted
    scores = cross_validate(est, X, theta, cv=3, scoring=SCORERS, error_score="raise")
    for name in SCORERS:
        assert np.all(np.isfinite(scores[f"test_{name}"])), name
    assert np.all(scores["test_neg_calibration_error"] <= 0)
    assert np.all(scores["test_neg_posterior_nrmse"] <= 0)
    assert np.all((scores["test_posterior_contraction"] > 0)
                  & (scores["test_posterior_contraction"] <= 1))


def test_scorers_are_deterministic(fitted):
    est, X, theta, _ = fitted
    for scorer in SCORERS.values():
        assert scorer(est, X[:200], theta[:200]) == scorer(est, X[:200], theta[:200])


def test_scorers_and_sampling_through_a_pipeline():
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(1500, 2))
    X = theta + 0.3 * rng.normal(size=(1500, 2))
    pipe = Pipeline([("scale", FunctionTransformer(lambda x: 3.0 * x)),
                     ("posterior", CINNPosteriorEstimator(**TINY))]).fit(X, theta)
    direct = pipe[-1].sample_posterior(pipe[:-1].transform(X[:50]), 100, random_state=3)
    np.testing.assert_array_equal(skcinn.sample_posterior(pipe, X[:50], 100, 3), direct)
    for name, scorer in SCORERS.items():
        value = scorer(pipe, X[:300], theta[:300])
        assert np.isfinite(value) and value == scorer(pipe, X[:300], theta[:300]), name
    assert log_posterior_density(pipe, X[:300], theta[:300]) == pipe.score(X[:300], theta[:300])
    assert sample_posterior(pipe[-1], pipe[:-1].transform(X[:5]), 10, 0).shape == (5, 10, 2)


def test_calibration_report_from_simulator_and_from_pairs(fitted):
    est, _, _, model = fitted
    report = calibration_report(est, simulator=model.simulate, prior=model.prior,
                                n_datasets=100, n_samples=100, random_state=0)
    assert list(report.index) == list(est.parameter_names_)
    for column in ("chi2_pvalue", "ks_pvalue", "calibration_error", "coverage_error_50",
                   "coverage_error_90", "r2", "nrmse", "contraction", "z_mean"):
        assert np.all(np.isfinite(report[column].astype(float))), column
    X, theta, draws = simulate_and_sample(est, model.simulate, model.prior, 50, 20, 1)
    assert draws.shape == (50, 20, 2) and theta.shape == (50, 2)
    again = calibration_report(est, X, theta, n_samples=100, random_state=0)
    assert isinstance(again, pd.DataFrame) and again.shape == report.shape
    with pytest.raises(ValueError, match="either X and theta"):
        calibration_report(est, X, theta, simulator=model.simulate, prior=model.prior)


def test_check_calibration_from_a_simulator_and_from_pairs():
    model = GaussianMean(n_obs=10)
    est = CINNPosteriorEstimator(
        hidden_layer_sizes=(16, 16), summary_hidden_sizes=(16,), summary_dim=4,
        n_coupling_blocks=2, max_iter=10, n_simulations=2000, learning_rate_init=1e-2,
        random_state=0, device="cpu",
    ).fit(model.simulate, model.prior)
    report = est.check_calibration(model.simulate, model.prior, n_datasets=150,
                                   n_samples=200, random_state=0)
    assert list(report.index) == ["mu_0", "mu_1"]
    assert {"chi2_pvalue", "calibration_error", "r2", "contraction"} <= set(report.columns)
    assert (report["r2"] > 0.7).all() and (report["contraction"] > 0.7).all()
    assert (report["calibration_error"] < 0.1).all()
    rng = np.random.default_rng(5)
    theta = model.sample_prior(150, rng)
    again = est.check_calibration(model.simulate(theta, rng), theta, n_samples=200,
                                  random_state=0)
    assert again.shape == report.shape and (again["r2"] > 0.7).all()
    with pytest.raises(NotFittedError):
        CINNPosteriorEstimator().check_calibration(model.simulate, model.prior)
