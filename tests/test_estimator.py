"""The scikit-learn estimator: input forms, shapes, reproducibility, persistence,
bounded priors, a bimodal posterior, error handling and warm starts.

Every network here is tiny and trained for a few epochs, except where a test needs a
posterior that was actually learned (the densities and the bimodal posterior).
"""

from __future__ import annotations

import pickle
import re
import threading
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from scipy.integrate import trapezoid
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from skcinn import CINNPosteriorEstimator
from skcinn.simulators import GaussianMean

TINY = dict(
    hidden_layer_sizes=(16, 16),
    summary_hidden_sizes=(16,),
    summary_dim=4,
    n_coupling_blocks=2,
    max_iter=3,
    n_simulations=300,
    random_state=0,
    device="cpu",
)
N = 300
FITTED_ATTRIBUTES = (
    "n_params_", "parameter_names_", "n_features_in_", "input_rank_", "summary_network_",
    "coupling_", "device_", "loss_curve_", "validation_scores_", "best_validation_score_",
    "n_iter_", "n_simulations_", "n_failed_simulations_",
)


def tiny(**kwargs) -> CINNPosteriorEstimator:
    """A small, fast, seeded estimator on the CPU."""
    return CINNPosteriorEstimator(**{**TINY, **kwargs})


def flat_data(n: int = N, n_params: int = 2, seed: int = 0):
    """theta (n, n_params) and flat X = theta + noise (n, n_params)."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=(n, n_params))
    return theta + 0.5 * rng.normal(size=theta.shape), theta


def noisy_copy(theta, rng):
    """A simulator with flat features: theta plus a little noise."""
    theta = np.asarray(theta, dtype=float)
    return theta + 0.3 * rng.normal(size=theta.shape)


def set_data(n: int = N, n_obs=6, seed: int = 0):
    """Gaussian-mean data sets: an array (n, n_obs, 2) or a list of different sizes."""
    rng = np.random.default_rng(seed)
    model = GaussianMean(n_obs=n_obs)
    theta = model.sample_prior(n, rng)
    return model.simulate(theta, rng), theta


def state(est: CINNPosteriorEstimator, X) -> dict:
    """What must not change when a call on a fitted estimator raises."""
    return {
        "predict": est.predict(X),
        "n_features_in_": est.n_features_in_,
        "keys": sorted(est.__dict__),
        "loss_curve_": list(est.loss_curve_),
        "n_params_": est.n_params_,
        "input_rank_": est.input_rank_,
    }


def assert_same_state(before: dict, after: dict) -> None:
    np.testing.assert_array_equal(after["predict"], before["predict"])
    for key in ("n_features_in_", "keys", "loss_curve_", "n_params_", "input_rank_"):
        assert after[key] == before[key], key


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def flat():
    return flat_data()


@pytest.fixture(scope="module")
def est_flat(flat):
    X, theta = flat
    return tiny().fit(X, theta)


@pytest.fixture(scope="module")
def sets3d():
    return set_data(n_obs=6)


@pytest.fixture(scope="module")
def est_3d(sets3d):
    X, theta = sets3d
    return tiny().fit(X, theta)


@pytest.fixture(scope="module")
def sets_ragged():
    return set_data(n_obs=(3, 9), seed=1)


@pytest.fixture(scope="module")
def est_ragged(sets_ragged):
    X, theta = sets_ragged
    return tiny().fit(X, theta)


def _bounded_simulator(theta, rng):
    theta = np.asarray(theta, dtype=float)
    return theta + 0.1 * rng.normal(size=theta.shape)


BOUNDED_PRIOR = {"a": stats.uniform(0, 1), "b": stats.expon(), "c": stats.norm()}


@pytest.fixture(scope="module")
def est_bounded():
    return tiny(max_iter=5, n_simulations=1000).fit(_bounded_simulator, BOUNDED_PRIOR)


def _one_param_simulator(theta, rng):
    """Two noisy copies of one parameter: flat X (n, 2)."""
    theta = np.asarray(theta, dtype=float).reshape(-1, 1)
    return theta + 0.3 * rng.normal(size=(len(theta), 2))


@pytest.fixture(scope="module")
def est_uniform_1p():
    est = tiny(hidden_layer_sizes=(32, 32), max_iter=10, n_simulations=2000)
    return est.fit(_one_param_simulator, {"t": stats.uniform(0, 2)})


@pytest.fixture(scope="module")
def est_normal_1p():
    est = tiny(hidden_layer_sizes=(32, 32), max_iter=10, n_simulations=2000)
    return est.fit(_one_param_simulator, stats.norm())


# ------------------------------------------------------------------- shapes and forms


def test_fit_returns_self(flat):
    X, theta = flat
    est = tiny()
    assert est.fit(X, theta) is est
    est = tiny()
    assert est.fit(noisy_copy, stats.norm()) is est


@pytest.mark.parametrize("name", ["flat", "3d", "ragged"])
def test_shapes_for_each_form_of_X(name, est_flat, est_3d, est_ragged, flat, sets3d,
                                   sets_ragged):
    est, (X, theta) = {
        "flat": (est_flat, flat), "3d": (est_3d, sets3d), "ragged": (est_ragged, sets_ragged),
    }[name]
    assert isinstance(X, list) == (name == "ragged")
    if name == "ragged":
        assert len({len(x) for x in X}) > 1
    X10 = X[:10]
    assert est.n_params_ == 2
    assert est.n_features_in_ == 2
    assert est.input_rank_ == (2 if name == "flat" else 3)
    assert est.summary_network_ == (None if name == "flat" else "deepset")
    assert est.coupling_ == "affine"
    assert list(est.parameter_names_) == ["theta_0", "theta_1"]
    assert len(est.loss_curve_) == est.n_iter_ == 3
    assert np.all(np.isfinite(est.loss_curve_))

    draws = est.sample_posterior(X10, n_samples=7, random_state=0)
    assert draws.shape == (10, 7, 2)
    assert draws.dtype == np.float64
    assert np.all(np.isfinite(draws))

    mean = est.predict(X10)
    assert mean.shape == (10, 2)
    mean2, std = est.predict(X10, return_std=True)
    assert mean2.shape == std.shape == (10, 2)
    np.testing.assert_array_equal(mean2, mean)
    assert np.all(std > 0)

    logp = est.log_posterior(X10, theta[:10])
    assert logp.shape == (10,)
    assert np.all(np.isfinite(logp))
    score = est.score(X10, theta[:10])
    assert type(score) is float
    assert score == pytest.approx(logp.mean(), rel=1e-12)


def test_single_data_set(est_3d, sets3d, est_ragged, sets_ragged):
    X, _ = sets3d
    assert est_3d.sample_posterior(X[None, 0], n_samples=5).shape == (1, 5, 2)
    Xr, _ = sets_ragged
    assert est_ragged.sample_posterior([Xr[0]], n_samples=5).shape == (1, 5, 2)


def test_list_and_array_of_equal_sets_agree(est_ragged, sets3d):
    X, _ = sets3d
    np.testing.assert_allclose(est_ragged.predict(list(X[:6])), est_ragged.predict(X[:6]),
                               rtol=1e-6, atol=1e-7)


def test_one_dimensional_y_gives_one_dimensional_predict(flat):
    X, theta = flat
    est = tiny().fit(X, theta[:, 0])
    assert est.n_params_ == 1
    assert est.coupling_ == "spline"
    mean, std = est.predict(X[:8], return_std=True)
    assert mean.shape == std.shape == (8,)
    assert np.all(std > 0)
    assert est.sample_posterior(X[:8], n_samples=7).shape == (8, 7, 1)
    assert est.log_posterior(X[:8], theta[:8, 0]).shape == (8,)
    # a column vector y keeps the 2-D output
    assert tiny().fit(X, theta[:, :1]).predict(X[:8]).shape == (8, 1)


def test_dataframe_y_names_parameters(flat):
    X, theta = flat
    y = pd.DataFrame(theta, columns=["alpha", "beta"])
    est = tiny().fit(X, y)
    assert list(est.parameter_names_) == ["alpha", "beta"]
    assert est.predict(X[:3]).shape == (3, 2)
    assert np.isfinite(est.score(X[:20], y.iloc[:20]))


def test_dataframe_X_sets_feature_names(flat):
    X, theta = flat
    est = tiny().fit(pd.DataFrame(X, columns=["x0", "x1"]), theta)
    assert list(est.feature_names_in_) == ["x0", "x1"]
    assert est.predict(pd.DataFrame(X[:3], columns=["x0", "x1"])).shape == (3, 2)


def _callable_prior(n, rng):
    return rng.normal(size=(n, 2))


PRIORS = {
    "callable": (_callable_prior, ["theta_0", "theta_1"]),
    "multivariate": (stats.multivariate_normal(mean=[0.0, 0.0], cov=np.eye(2)),
                     ["theta_0", "theta_1"]),
    "dict": ({"mu": stats.norm(), "sigma_log": stats.norm(1.0, 0.5)}, ["mu", "sigma_log"]),
    "list": ([stats.norm(), stats.norm(1.0, 0.5)], ["theta_0", "theta_1"]),
}


@pytest.mark.parametrize("form", sorted(PRIORS))
def test_fit_simulator_with_each_prior_form(form):
    prior, names = PRIORS[form]
    est = tiny()
    assert est.fit(noisy_copy, prior) is est
    assert est.n_params_ == 2
    assert est.n_features_in_ == 2
    assert list(est.parameter_names_) == names
    assert est.n_failed_simulations_ == 0
    assert est.n_simulations_ == N - round(0.1 * N)
    X = noisy_copy(np.zeros((5, 2)), np.random.default_rng(0))
    draws = est.sample_posterior(X, n_samples=7, random_state=0)
    assert draws.shape == (5, 7, 2)
    assert draws.dtype == np.float64
    assert est.predict(X).shape == (5, 2)


def test_fit_simulator_of_data_sets():
    model = GaussianMean(n_obs=(3, 9))
    est = tiny().fit(model.simulate, model.prior)
    assert list(est.parameter_names_) == ["mu_0", "mu_1"]
    assert est.input_rank_ == 3
    assert est.summary_network_ == "deepset"
    rng = np.random.default_rng(3)
    X = model.simulate(model.sample_prior(4, rng), rng)
    assert est.sample_posterior(X, n_samples=7).shape == (4, 7, 2)


def test_sample_posterior_rejects_bad_n_samples(est_flat, flat):
    X, _ = flat
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match="n_samples must be a positive integer"):
            est_flat.sample_posterior(X[:2], n_samples=bad)


def test_learning_rate_init_auto_follows_the_coupling(flat):
    """"auto" starts affine coupling at 2e-3 and spline coupling at 6e-3; a number is
    taken as given; anything else is rejected before training."""
    X, theta = flat
    for coupling, rate in [("affine", 2e-3), ("spline", 6e-3)]:
        est = tiny(coupling=coupling, max_iter=1, learning_rate="constant").fit(X, theta)
        assert est.get_params()["learning_rate_init"] == "auto"
        assert est.history_["learning_rate"].iloc[0] == pytest.approx(rate)
    est = tiny(coupling="spline", learning_rate_init=1e-3, max_iter=1,
               learning_rate="constant").fit(X, theta)
    assert est.history_["learning_rate"].iloc[0] == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="learning_rate_init"):
        tiny(learning_rate_init="fast").fit(X, theta)


# ------------------------------------------------------------------- reproducibility


def test_same_seed_same_fit(flat):
    X, theta = flat
    a, b = tiny().fit(X, theta), tiny().fit(X, theta)
    assert a.loss_curve_ == b.loss_curve_
    np.testing.assert_array_equal(a.sample_posterior(X[:5], 11, random_state=1),
                                  b.sample_posterior(X[:5], 11, random_state=1))
    np.testing.assert_array_equal(a.predict(X[:20]), b.predict(X[:20]))
    c = tiny(random_state=1).fit(X, theta)
    assert not np.array_equal(a.predict(X[:20]), c.predict(X[:20]))


def test_same_seed_same_fit_from_simulator():
    a = tiny().fit(noisy_copy, stats.norm())
    b = tiny().fit(noisy_copy, stats.norm())
    X = np.linspace(-2, 2, 7)[:, None]
    np.testing.assert_array_equal(a.sample_posterior(X, 9, random_state=1),
                                  b.sample_posterior(X, 9, random_state=1))
    np.testing.assert_array_equal(a.predict(X), b.predict(X))


def test_sample_posterior_seed(est_flat, flat):
    X, _ = flat
    first = est_flat.sample_posterior(X[:6], 13, random_state=5)
    np.testing.assert_array_equal(first, est_flat.sample_posterior(X[:6], 13, random_state=5))
    other = est_flat.sample_posterior(X[:6], 13, random_state=6)
    assert not np.any(first == other)


def test_draws_do_not_depend_on_the_number_of_threads(est_3d, sets3d, est_bounded):
    """Chunks of data sets are drawn on as many threads as torch allows the caller; the
    draws, predictions and densities are the same for one thread as for two, and the
    caller's setting is left as it was."""
    X, theta = sets3d
    X = np.concatenate([X] * 3)[:70]  # 70 sets x 300 draws: six chunks of 4,096 draws

    def results():
        return (est_3d.sample_posterior(X, 300, random_state=3), est_3d.predict(X),
                est_bounded.sample_posterior(np.full((9, 3), 0.5), 2000, random_state=1))

    one = results()
    torch.set_num_threads(2)
    try:
        two = results()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(a, b)


def test_run_chunks_does_every_job_looks_ahead_little_and_raises():
    """Every job runs once, in inference mode; the job iterator is read at most two
    jobs per thread ahead of the finished ones; a job's error reaches the caller."""
    from skcinn._torch_utils import run_chunks

    done, taken = [], []
    lock = threading.Lock()

    def jobs(n):
        for i in range(n):
            with lock:
                assert len(taken) - len(done) <= 2 * 3 + 3  # submitted + running ones
                taken.append(i)
            yield (i,)

    def work(i):
        assert not torch.is_grad_enabled()
        with lock:
            done.append(i)

    run_chunks(work, jobs(50), 3)
    assert sorted(done) == list(range(50))

    def failing(i):
        if i == 7:
            raise ValueError("chunk 7")

    with pytest.raises(ValueError, match="chunk 7"):
        run_chunks(failing, ((i,) for i in range(40)), 2)


def test_predict_is_deterministic(est_flat, flat):
    X, _ = flat
    np.testing.assert_array_equal(est_flat.predict(X[:30]), est_flat.predict(X[:30]))


@pytest.mark.parametrize("name", ["flat", "3d"])
def test_predict_does_not_depend_on_other_data_sets(name, est_flat, est_3d, flat, sets3d):
    est, (X, _) = {"flat": (est_flat, flat), "3d": (est_3d, sets3d)}[name]
    full = est.predict(X[:40], return_std=True)
    part = est.predict(X[2:5], return_std=True)
    # Flat data: exactly equal (the condition's projection is summed row by row, not by a
    # matrix product whose rounding depends on the number of rows). Sets: up to float32
    # rounding of the summary network's products over all members; any real dependence
    # on the batch (shared random latents, batch statistics) would show at the 1e-2 level.
    for f, p in zip(full, part, strict=True):
        if name == "flat":
            np.testing.assert_array_equal(f[2:5], p)
        else:
            np.testing.assert_allclose(f[2:5], p, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["flat", "3d", "ragged"])
def test_predict_commutes_with_permutation(name, est_flat, est_3d, est_ragged, flat, sets3d,
                                           sets_ragged):
    est, (X, _) = {
        "flat": (est_flat, flat), "3d": (est_3d, sets3d), "ragged": (est_ragged, sets_ragged),
    }[name]
    X = X[:25]
    perm = np.random.default_rng(2).permutation(25)
    Xp = [X[i] for i in perm] if isinstance(X, list) else X[perm]
    np.testing.assert_allclose(est.predict(Xp), est.predict(X)[perm], rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------- pickling

def _assert_same_fitted(a, b, X):
    for attribute in FITTED_ATTRIBUTES:
        va, vb = getattr(a, attribute), getattr(b, attribute)
        if isinstance(va, np.ndarray):
            np.testing.assert_array_equal(va, vb)
        else:
            assert va == vb, attribute
    assert a.get_params() == b.get_params()
    np.testing.assert_array_equal(a.sample_posterior(X, 17, random_state=3),
                                  b.sample_posterior(X, 17, random_state=3))
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    np.testing.assert_array_equal(a.predict(X, return_std=True)[1],
                                  b.predict(X, return_std=True)[1])


@pytest.mark.parametrize("name", ["flat", "ragged"])
def test_pickle_round_trip(name, est_flat, est_ragged, flat, sets_ragged):
    est, (X, theta) = {"flat": (est_flat, flat), "ragged": (est_ragged, sets_ragged)}[name]
    data = pickle.dumps(est)
    assert b"cuda" not in data
    loaded = pickle.loads(data)
    _assert_same_fitted(est, loaded, X[:8])
    np.testing.assert_array_equal(loaded.log_posterior(X[:8], theta[:8]),
                                  est.log_posterior(X[:8], theta[:8]))


def test_joblib_round_trip(est_flat, flat, tmp_path):
    X, _ = flat
    path = tmp_path / "est.joblib"
    joblib.dump(est_flat, path)
    assert b"cuda" not in path.read_bytes()
    _assert_same_fitted(est_flat, joblib.load(path), X[:8])


def test_pickle_bounded_and_one_param(est_bounded, est_uniform_1p):
    X = _bounded_simulator(np.array([[0.5, 1.0, 0.0]]), np.random.default_rng(0))
    _assert_same_fitted(est_bounded, pickle.loads(pickle.dumps(est_bounded)), X)
    X1 = _one_param_simulator(np.array([[1.0]]), np.random.default_rng(0))
    _assert_same_fitted(est_uniform_1p, pickle.loads(pickle.dumps(est_uniform_1p)), X1)


def test_pickle_unfitted():
    est = tiny(max_iter=7)
    loaded = pickle.loads(pickle.dumps(est))
    assert loaded.get_params() == est.get_params()
    with pytest.raises(NotFittedError):
        loaded.predict(np.zeros((2, 2)))


def test_clone_of_fitted_is_unfitted(est_flat):
    copy = clone(est_flat)
    assert copy.get_params() == est_flat.get_params()
    with pytest.raises(NotFittedError):
        check_is_fitted(copy)
    assert not hasattr(copy, "network_")
    check_is_fitted(est_flat)


# ----------------------------------------------------------------------- bounded priors


def test_bounded_draws_stay_in_support(est_bounded):
    assert list(est_bounded.parameter_names_) == ["a", "b", "c"]
    rng = np.random.default_rng(0)
    # include data pushing the posterior against the bounds
    theta = np.array([[0.5, 1.0, 0.0], [0.001, 0.001, 0.0], [0.999, 5.0, 2.0],
                      [1.2, -0.3, -3.0], [-0.2, 0.0, 1.0]])
    X = np.vstack([_bounded_simulator(theta, rng), [[5.0, -5.0, 0.0], [-5.0, 30.0, 0.0]]])
    draws = est_bounded.sample_posterior(X, n_samples=2000, random_state=0)
    a, b = draws[..., 0], draws[..., 1]
    assert np.all(np.isfinite(draws))
    assert np.all((a > 0) & (a < 1))
    assert np.all(b > 0)
    mean = est_bounded.predict(X)
    assert np.all((mean[:, 0] > 0) & (mean[:, 0] < 1) & (mean[:, 1] > 0))


def test_bounded_log_posterior_outside_support(est_bounded):
    X = np.repeat(_bounded_simulator(np.array([[0.5, 1.0, 0.0]]), np.random.default_rng(0)),
                  6, axis=0)
    theta = np.array([
        [0.5, 1.0, 0.0],   # inside
        [0.2, 3.0, -1.0],  # inside
        [1.5, 1.0, 0.0],   # a > 1
        [-0.1, 1.0, 0.0],  # a < 0
        [0.5, -1.0, 0.0],  # b < 0
        [1.0, 1.0, 0.0],   # a on the bound
    ])
    logp = est_bounded.log_posterior(X, theta)
    assert np.all(np.isfinite(logp[:2]))
    assert np.all(logp[2:] == -np.inf)


def _integral(est, x0, grid):
    X = np.repeat(np.asarray(x0, dtype=float)[None], len(grid), axis=0)
    density = np.exp(est.log_posterior(X, grid))
    return trapezoid(density, grid)


def test_uniform_prior_density_integrates_to_one(est_uniform_1p):
    assert est_uniform_1p.coupling_ == "spline"
    assert list(est_uniform_1p.parameter_names_) == ["t"]
    grid = np.linspace(0.0, 2.0, 8001)[1:-1]
    for t in (1.0, 0.3, 0.02, 1.95):  # also with the posterior against a bound
        x0 = _one_param_simulator(np.array([[t]]), np.random.default_rng(0))[0]
        assert abs(_integral(est_uniform_1p, x0, grid) - 1.0) < 0.03, t
    outside = est_uniform_1p.log_posterior(np.zeros((2, 2)), np.array([-0.5, 2.5]))
    assert np.all(outside == -np.inf)
    draws = est_uniform_1p.sample_posterior(np.zeros((3, 2)), 500, random_state=0)
    assert np.all((draws > 0) & (draws < 2))


def test_normal_prior_density_integrates_to_one(est_normal_1p):
    grid = np.linspace(-10.0, 10.0, 8001)
    for t in (0.0, 1.5, 3.0):
        x0 = _one_param_simulator(np.array([[t]]), np.random.default_rng(0))[0]
        assert abs(_integral(est_normal_1p, x0, grid) - 1.0) < 0.03, t


def test_density_of_untrained_flow_integrates_to_one():
    est = tiny(max_iter=1).fit(_one_param_simulator, {"t": stats.uniform(0, 2)})
    x0 = _one_param_simulator(np.array([[1.0]]), np.random.default_rng(0))[0]
    assert abs(_integral(est, x0, np.linspace(0.0, 2.0, 8001)[1:-1]) - 1.0) < 0.03


def test_one_param_posterior_is_learned(est_normal_1p):
    # conjugate: prior N(0, 1), two observations with noise 0.3
    x0 = np.array([[1.0, 1.2]])
    post_var = 1.0 / (1.0 + 2 / 0.3**2)
    mean, std = est_normal_1p.predict(x0, return_std=True)
    assert mean[0, 0] == pytest.approx(post_var * 2.2 / 0.3**2, abs=0.1)
    assert 0.5 * np.sqrt(post_var) < std[0, 0] < 2 * np.sqrt(post_var)  # prior std is 1


# --------------------------------------------------------------------- bimodal posterior


def _abs_simulator(theta, rng):
    theta = np.asarray(theta, dtype=float).reshape(-1, 1)
    return np.abs(theta) + 0.05 * rng.normal(size=theta.shape)


def test_bimodal_one_param_posterior():
    est = CINNPosteriorEstimator(
        n_simulations=4000, max_iter=30, hidden_layer_sizes=(32, 32), random_state=0,
        device="cpu",
    ).fit(_abs_simulator, stats.norm())
    assert est.coupling_ == "spline"
    assert est.n_params_ == 1
    draws = est.sample_posterior(np.array([[1.0]]), n_samples=4000, random_state=0)[0, :, 0]
    assert 0.3 < np.mean(draws > 0) < 0.7
    assert np.mean(np.abs(draws) < 0.5) < 0.1
    # both modes near +-1
    assert np.median(draws[draws > 0]) == pytest.approx(1.0, abs=0.15)
    assert np.median(draws[draws < 0]) == pytest.approx(-1.0, abs=0.15)


# ------------------------------------------------------------------------------ errors


def _with_nan_rows(X, rows, value=np.nan):
    X = np.array(X, dtype=float, copy=True)
    for row, v in zip(rows, (value, np.inf)[: len(rows)], strict=True):
        X[row, ..., 0] = v
    return X


@pytest.fixture
def fresh_flat(flat):
    """A fitted estimator of its own, for tests that call fit on a fitted estimator."""
    X, theta = flat
    return tiny().fit(X, theta)


def test_nan_in_flat_X_at_fit(fresh_flat, flat):
    X, theta = flat
    before = state(fresh_flat, X[:10])
    with pytest.raises(ValueError, match=r"X contains NaN or inf in 2 of 300 rows"):
        fresh_flat.fit(_with_nan_rows(X, [3, 7]), theta)
    assert_same_state(before, state(fresh_flat, X[:10]))

    est = tiny()
    with pytest.raises(ValueError, match=r"NaN.* in 2 of 300"):
        est.fit(_with_nan_rows(X, [0, 299]), theta)
    with pytest.raises(NotFittedError):
        est.predict(X[:2])
    assert not hasattr(est, "n_features_in_")


def test_nan_in_3d_X_at_fit(sets3d):
    X, theta = sets3d
    est = tiny().fit(X, theta)
    before = state(est, X[:10])
    with pytest.raises(ValueError, match=r"NaN.* in 2 of 300 data sets"):
        est.fit(_with_nan_rows(X, [4, 8]), theta)
    assert_same_state(before, state(est, X[:10]))


def test_nan_in_list_X_at_fit(sets_ragged):
    X, theta = sets_ragged
    est = tiny().fit(X, theta)
    before = state(est, X[:10])
    bad = [x.copy() for x in X]
    bad[1][0, 1] = np.nan
    bad[5][-1, 0] = np.inf
    with pytest.raises(ValueError, match=r"NaN.* in 2 of 300 data sets"):
        est.fit(bad, theta)
    assert_same_state(before, state(est, X[:10]))


def test_nan_in_X_at_predict(est_flat, est_ragged, flat, sets_ragged):
    X, _ = flat
    before = state(est_flat, X[:10])
    with pytest.raises(ValueError, match=r"NaN.* in 2 of 10"):
        est_flat.predict(_with_nan_rows(X[:10], [1, 2]))
    with pytest.raises(ValueError, match=r"NaN.* in 1 of 10"):
        est_flat.sample_posterior(_with_nan_rows(X[:10], [1]), 3)
    assert_same_state(before, state(est_flat, X[:10]))
    Xr, _ = sets_ragged
    bad = [x.copy() for x in Xr[:4]]
    bad[2][0, 0] = np.nan
    with pytest.raises(ValueError, match=r"NaN.* in 1 of 4 data sets"):
        est_ragged.predict(bad)


def test_nan_in_y_at_fit(fresh_flat, flat):
    X, theta = flat
    before = state(fresh_flat, X[:10])
    bad = theta.copy()
    bad[10, 1] = np.nan
    with pytest.raises(ValueError, match=r"y contains NaN or inf in 1 of 300 rows"):
        fresh_flat.fit(X, bad)
    assert_same_state(before, state(fresh_flat, X[:10]))
    check_is_fitted(fresh_flat)
    # X of another width is validated (and n_features_in_ reset) before y fails
    with pytest.raises(ValueError, match=r"y contains NaN or inf in 1 of 300 rows"):
        fresh_flat.fit(pd.DataFrame(np.ones((N, 3)), columns=["p", "q", "r"]), bad)
    assert_same_state(before, state(fresh_flat, X[:10]))
    assert not hasattr(fresh_flat, "feature_names_in_")


def test_fit_failing_after_initialisation_restores_state(fresh_flat, flat):
    X, _ = flat
    before = state(fresh_flat, X[:10])
    network = fresh_flat.network_
    X3, theta3 = flat_data(n=5, n_params=3, seed=4)
    fresh_flat.set_params(validation_fraction=0.05)  # 0.05 * 5 pairs rounds to 0
    with pytest.raises(ValueError, match=r"leaves no validation or no training pairs"):
        fresh_flat.fit(X3, theta3)
    assert_same_state(before, state(fresh_flat, X[:10]))
    assert fresh_flat.network_ is network
    assert list(fresh_flat.parameter_names_) == ["theta_0", "theta_1"]


def test_rank_mismatch(est_flat, est_3d, est_ragged, flat, sets3d, sets_ragged):
    X2, theta2 = flat
    X3, theta3 = sets3d
    Xr, _ = sets_ragged
    before = state(est_flat, X2[:10])
    with pytest.raises(ValueError, match=r"X has rank 3 \(data sets .*\), but "
                                         r"CINNPosteriorEstimator was fitted on flat features"):
        est_flat.predict(X3[:5])
    with pytest.raises(ValueError, match=r"X has rank 3"):
        est_flat.sample_posterior(Xr[:5], 3)
    with pytest.raises(ValueError, match=r"X has rank 3"):
        est_flat.log_posterior(X3[:5], theta2[:5])
    assert_same_state(before, state(est_flat, X2[:10]))
    before3 = state(est_3d, X3[:10])
    for est in (est_3d, est_ragged):
        with pytest.raises(ValueError, match=r"X has rank 2 \(flat features .*\), but "
                                             r"CINNPosteriorEstimator was fitted on data sets"):
            est.predict(X2[:5])
        with pytest.raises(ValueError, match=r"X has rank 2"):
            est.sample_posterior(X2[:5], 3)
        with pytest.raises(ValueError, match=r"X has rank 2"):
            est.score(X2[:5], theta3[:5])
    assert_same_state(before3, state(est_3d, X3[:10]))


def test_wrong_number_of_features(est_flat, est_3d, flat, sets3d):
    X, _ = flat
    before = state(est_flat, X[:10])
    message = re.escape(
        "X has 3 features, but CINNPosteriorEstimator is expecting 2 features as input"
    )
    with pytest.raises(ValueError, match=message):
        est_flat.predict(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=message):
        est_flat.sample_posterior(np.zeros((4, 3)), 5)
    assert_same_state(before, state(est_flat, X[:10]))
    X3, _ = sets3d
    with pytest.raises(ValueError, match=message):
        est_3d.predict(np.zeros((4, 6, 3)))
    with pytest.raises(ValueError, match=message):
        est_3d.predict([np.zeros((5, 3)), np.zeros((2, 3))])


def test_wrong_number_of_parameters_in_y(est_flat, flat):
    X, theta = flat
    before = state(est_flat, X[:10])
    y3 = np.zeros((10, 3))
    with pytest.raises(ValueError, match=r"y has 3 parameters, but CINNPosteriorEstimator was "
                                         r"fitted with 2"):
        est_flat.score(X[:10], y3)
    with pytest.raises(ValueError, match=r"y has 1 parameters"):
        est_flat.log_posterior(X[:10], theta[:10, 0])
    with pytest.raises(ValueError, match=r"y has shape \(9, 2\), but X holds 10 data sets"):
        est_flat.log_posterior(X[:10], theta[:9])
    assert_same_state(before, state(est_flat, X[:10]))


def test_prior_of_wrong_shape(fresh_flat, flat):
    X, _ = flat
    before = state(fresh_flat, X[:10])
    with pytest.raises(ValueError, match=r"The prior returned an array of shape \(301, 2\) "
                                         r"for n=300"):
        fresh_flat.fit(noisy_copy, lambda n, rng: rng.normal(size=(n + 1, 2)))
    with pytest.raises(ValueError, match=r"The prior returned an array of shape \(300, 2, 2\)"):
        fresh_flat.fit(noisy_copy, lambda n, rng: rng.normal(size=(n, 2, 2)))
    assert_same_state(before, state(fresh_flat, X[:10]))


def test_simulator_returning_wrong_number_of_data_sets(fresh_flat, flat):
    X, _ = flat
    before = state(fresh_flat, X[:10])

    def short(theta, rng):
        return noisy_copy(theta, rng)[:-1]

    with pytest.raises(ValueError, match=r"The simulator returned 299 data sets for 300 "
                                         r"parameter vectors"):
        fresh_flat.fit(short, stats.multivariate_normal(np.zeros(2)))
    assert_same_state(before, state(fresh_flat, X[:10]))


@pytest.mark.parametrize("method", ["predict", "sample_posterior", "log_posterior", "score"])
def test_not_fitted(method):
    X, theta = flat_data(n=5)
    args = (X, theta) if method in ("log_posterior", "score") else (X,)
    with pytest.raises(NotFittedError):
        getattr(tiny(), method)(*args)


@pytest.mark.parametrize(
    "params, name",
    [
        ({"max_iter": 0}, "max_iter"),
        ({"device": "gpu"}, "device"),
        ({"coupling": "linear"}, "coupling"),
        ({"validation_fraction": 1.5}, "validation_fraction"),
        ({"n_simulations": 1}, "n_simulations"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_hyper_parameters(params, name, fresh_flat, flat):
    X, theta = flat
    with pytest.raises(ValueError, match=rf"'{name}' parameter of CINNPosteriorEstimator"):
        tiny(**params).fit(X, theta)
    before = state(fresh_flat, X[:10])
    fresh_flat.set_params(**params)
    with pytest.raises(ValueError, match=name):
        fresh_flat.fit(X, theta)
    assert_same_state(before, state(fresh_flat, X[:10]))


def test_failing_refit_with_warm_start_leaves_estimator_unchanged(flat):
    X, theta = flat
    est = tiny(warm_start=True).fit(X, theta)
    before = state(est, X[:10])
    bad = theta.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match=r"y contains NaN or inf in 1 of 300"):
        est.fit(X, bad)
    with pytest.raises(ValueError, match=re.escape("X has 3 features, but")):
        est.fit(np.zeros((N, 3)), theta)
    assert_same_state(before, state(est, X[:10]))


def test_simulator_with_some_failures():
    def flaky(theta, rng):
        X = noisy_copy(theta, rng)
        X[::50, 1] = np.nan  # 6 of 300
        return X

    est = tiny(early_stopping=False)
    with pytest.warns(RuntimeWarning, match=r"6 of 300 simulations returned NaN or inf"):
        est.fit(flaky, stats.multivariate_normal(np.zeros(2)))
    assert est.n_failed_simulations_ == 6
    assert est.n_simulations_ == 294
    assert np.all(np.isfinite(est.loss_curve_))
    assert np.all(np.isfinite(est.predict(np.zeros((3, 2)))))


def test_simulator_failing_mostly_raises(fresh_flat, flat):
    X, _ = flat
    before = state(fresh_flat, X[:10])

    def broken(theta, rng):
        X = noisy_copy(theta, rng)
        X[::2, 0] = np.nan
        X[1::4, 1] = np.inf
        return X

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"225 of 300 simulations returned NaN or inf"):
            fresh_flat.fit(broken, stats.multivariate_normal(np.zeros(2)))
    assert_same_state(before, state(fresh_flat, X[:10]))


# ------------------------------------------------------------------------- warm start


def test_warm_start_continues_training(flat):
    X, theta = flat
    est = tiny(warm_start=True, early_stopping=False, max_iter=4)
    est.fit(X, theta)
    first_curve = list(est.loss_curve_)
    network = est.network_
    weights = {k: v.clone() for k, v in network.state_dict().items()}
    assert len(first_curve) == 4
    est.fit(X, theta)
    assert est.network_ is network
    assert est.n_iter_ == 4
    assert len(est.loss_curve_) == 8
    assert est.loss_curve_[:4] == first_curve
    # the weights were trained further, not re-initialised
    assert est.loss_curve_[4] < first_curve[0]
    assert est.loss_curve_[4] < first_curve[-1] + 0.05
    changed = any(not np.array_equal(v.numpy(), network.state_dict()[k].numpy())
                  for k, v in weights.items())
    assert changed

    cold = tiny(early_stopping=False, max_iter=4).fit(X, theta)
    assert cold.loss_curve_ == first_curve
    cold.fit(X, theta)
    assert cold.loss_curve_ == first_curve  # without warm start a refit starts over


@pytest.mark.parametrize(("params", "named"), [
    ({"hidden_layer_sizes": (8,)}, r"hidden_layer_sizes=\(8,\) \(built with \(16, 16\)\)"),
    ({"coupling": "spline"}, r"coupling='spline' \(built with 'affine'\)"),
    ({"latent": "student_t"}, r"latent='student_t' \(built with 'normal'\)"),
    ({"n_coupling_blocks": 3, "summary_dim": 5}, r"n_coupling_blocks=3 .*summary_dim=5"),
    ({"summary_network": "set_transformer"}, r"summary_network='set_transformer'"),
])
def test_continued_training_refuses_a_changed_architecture(sets3d, params, named):
    """warm_start and partial_fit train the networks already built: a parameter that
    would have shaped them differently is an error, not silently ignored."""
    X, theta = sets3d
    est = tiny(warm_start=True, max_iter=1).fit(X, theta)
    before = state(est, X[:10])
    est.set_params(**params)
    for train in (est.fit, est.partial_fit):
        with pytest.raises(ValueError, match=named):
            train(X, theta)
    assert_same_state(before, state(est, X[:10]))
    est.set_params(warm_start=False).fit(X, theta)  # a fresh fit builds the new networks
    assert est.set_params(warm_start=True).fit(X, theta).n_iter_ == 1


def test_continued_training_of_one_parameter_ignores_coupling(flat):
    """One parameter: spline blocks whatever ``coupling`` says, so changing it changes
    nothing to continue."""
    X, theta = flat
    est = tiny(warm_start=True, max_iter=1).fit(X, theta[:, 0])
    est.set_params(coupling="spline").fit(X, theta[:, 0])
    assert len(est.loss_curve_) == 2


def test_warm_start_from_simulator_and_early_stopping():
    est = tiny(warm_start=True, max_iter=3)
    est.fit(noisy_copy, stats.norm())
    n1 = len(est.loss_curve_)
    assert len(est.validation_scores_) == n1
    est.set_params(max_iter=2)
    est.fit(noisy_copy, stats.norm())
    assert len(est.loss_curve_) == n1 + est.n_iter_
    assert len(est.validation_scores_) == n1 + est.n_iter_
    assert est.n_iter_ == 2
    assert est.predict(np.zeros((3, 1))).shape == (3, 1)
