"""The estimator inside scikit-learn: Pipeline, search, cross-validation, pandas."""

import numpy as np
import pandas as pd
import pytest
import sklearn
from scipy import stats
from sklearn.base import clone
from sklearn.model_selection import (
    GridSearchCV,
    KFold,
    RandomizedSearchCV,
    cross_val_score,
)
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from skcinn import CINNPosteriorEstimator
from skcinn.simulators import GaussianMean

TINY = dict(
    hidden_layer_sizes=(16, 16), summary_hidden_sizes=(16,), summary_dim=4,
    n_coupling_blocks=2, max_iter=4, random_state=0, device="cpu",
)


@pytest.fixture(scope="module")
def bank():
    """Gaussian mean model, 10 observations per set: X (n, 10, 2), theta (n, 2)."""
    model = GaussianMean(n_obs=10)
    rng = np.random.default_rng(0)
    theta = model.sample_prior(900, rng)
    return model.simulate(theta, rng), theta


def _summary_statistics(X):
    return np.concatenate([X.mean(axis=1), X.std(axis=1)], axis=1)


def test_pipeline_with_summary_statistics(bank):
    X, theta = bank
    pipe = make_pipeline(
        FunctionTransformer(_summary_statistics), StandardScaler(), CINNPosteriorEstimator(**TINY)
    ).fit(X, theta)
    mean, std = pipe.predict(X[:5], return_std=True)
    assert mean.shape == std.shape == (5, 2) and np.all(std > 0)
    assert np.isfinite(pipe.score(X[:50], theta[:50]))
    # the documented way to draw through a pipeline
    draws = pipe[-1].sample_posterior(pipe[:-1].transform(X[:3]), n_samples=20, random_state=0)
    assert draws.shape == (3, 20, 2)
    # the statistics are informative: predictions track the truth
    assert np.corrcoef(pipe.predict(X)[:, 0], theta[:, 0])[0, 1] > 0.8


def test_predict_request_routes_return_std(bank):
    X, theta = bank
    flat = _summary_statistics(X)
    with sklearn.config_context(enable_metadata_routing=True):
        est = CINNPosteriorEstimator(**TINY).set_predict_request(return_std=True)
        pipe = Pipeline([("scale", StandardScaler()), ("posterior", est)]).fit(flat, theta)
        mean, std = pipe.predict(flat[:4], return_std=True)
    assert mean.shape == std.shape == (4, 2)


def test_grid_search_prefers_the_better_posterior(bank):
    X, theta = bank
    search = GridSearchCV(
        CINNPosteriorEstimator(**{**TINY, "batch_size": 32}),
        {"max_iter": [1, 25], "hidden_layer_sizes": [(4,), (16, 16)]},
        cv=KFold(3), error_score="raise",
    ).fit(X[:600], theta[:600])
    scores = search.cv_results_["mean_test_score"]
    assert search.best_params_ == search.cv_results_["params"][int(np.argmax(scores))]
    assert search.best_params_["max_iter"] == 25
    # the choice holds on data the search never saw
    best = search.best_estimator_
    worst = clone(best).set_params(**search.cv_results_["params"][int(np.argmin(scores))])
    worst.fit(X[:600], theta[:600])
    assert best.score(X[600:], theta[600:]) > worst.score(X[600:], theta[600:]) + 0.2
    assert best.sample_posterior(X[600:603], n_samples=10).shape == (3, 10, 2)


def test_randomized_search_with_distributions_in_two_processes(bank):
    X, theta = bank
    search = RandomizedSearchCV(
        CINNPosteriorEstimator(**TINY),
        {"learning_rate_init": stats.loguniform(1e-3, 1e-2), "summary_dim": [2, 4]},
        n_iter=2, cv=2, n_jobs=2, random_state=0, error_score="raise",
    ).fit(X[:400], theta[:400])
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    assert 1e-3 <= search.best_params_["learning_rate_init"] <= 1e-2


def test_cross_val_score_same_in_one_and_two_processes(bank):
    X, theta = bank
    est = CINNPosteriorEstimator(**TINY)
    one = cross_val_score(est, X[:400], theta[:400], cv=3, n_jobs=1, error_score="raise")
    two = cross_val_score(est, X[:400], theta[:400], cv=3, n_jobs=2, error_score="raise")
    assert np.all(np.isfinite(one))
    np.testing.assert_allclose(one, two, rtol=1e-6)


def test_cross_val_score_on_ragged_data_sets():
    model = GaussianMean(n_obs=(3, 12))
    rng = np.random.default_rng(1)
    theta = model.sample_prior(300, rng)
    X = model.simulate(theta, rng)
    assert isinstance(X, list)
    scores = cross_val_score(CINNPosteriorEstimator(**TINY), X, theta, cv=3, error_score="raise")
    assert scores.shape == (3,) and np.all(np.isfinite(scores))


def test_clone_is_an_unfitted_twin(bank):
    X, theta = bank
    est = CINNPosteriorEstimator(**TINY).fit(X[:200], theta[:200])
    twin = clone(est)
    assert twin.get_params() == est.get_params()
    assert not hasattr(twin, "network_") and not hasattr(twin, "n_params_")


def test_dataframes_name_features_and_parameters():
    rng = np.random.default_rng(2)
    theta = pd.DataFrame(rng.normal(size=(300, 2)), columns=["growth", "noise"])
    X = pd.DataFrame(theta.to_numpy() + rng.normal(size=(300, 2)), columns=["x1", "x2"])
    est = CINNPosteriorEstimator(**TINY).fit(X, theta)
    assert list(est.feature_names_in_) == ["x1", "x2"]
    assert list(est.parameter_names_) == ["growth", "noise"]
    with pytest.raises(ValueError, match="feature names should match"):
        est.predict(X.rename(columns={"x1": "other"}))
    frame = est.sample_posterior(X[:3], n_samples=5, random_state=0, as_frame=True)
    assert list(frame.columns) == ["dataset", "draw", "growth", "noise"]
    assert len(frame) == 15 and frame["dataset"].tolist() == [0] * 5 + [1] * 5 + [2] * 5
    draws = est.sample_posterior(X[:3], n_samples=5, random_state=0)
    np.testing.assert_array_equal(frame[["growth", "noise"]].to_numpy(), draws.reshape(15, 2))


def test_dict_prior_names_parameters():
    prior = {"rate": stats.uniform(0, 2), "shift": stats.norm()}

    def simulator(theta, rng):
        return theta + 0.1 * rng.normal(size=theta.shape)

    est = CINNPosteriorEstimator(**TINY, n_simulations=300).fit(simulator, prior)
    assert list(est.parameter_names_) == ["rate", "shift"]


def test_posterior_summary_matches_the_draws(bank):
    X, theta = bank
    est = CINNPosteriorEstimator(**TINY).fit(X[:300], theta[:300])
    summary = est.posterior_summary(X[:4], quantiles=(0.1, 0.9), n_samples=400, random_state=5)
    draws = est.sample_posterior(X[:4], n_samples=400, random_state=5)
    assert list(summary.columns) == ["mean", "std", "q0.1", "q0.9"]
    assert summary.index.names == ["dataset", "parameter"] and len(summary) == 8
    np.testing.assert_allclose(summary.loc[(2, "theta_1"), "mean"], draws[2, :, 1].mean())
    np.testing.assert_allclose(
        summary.loc[(3, "theta_0"), "q0.9"], np.quantile(draws[3, :, 0], 0.9)
    )
    assert np.all(summary["q0.1"] < summary["q0.9"])
    with pytest.raises(ValueError, match="quantiles must lie in"):
        est.posterior_summary(X[:4], quantiles=(1.5,))
