"""Simulation at scale: chunked, seeded simulation on any joblib backend (sequential,
loky, Dask), per-parameter simulators, and failed simulations (exceptions, NaN, inf).

The simulators are module-level functions, so that process-based backends can ship
them. A prior that draws its row index as the first parameter makes the failing
parameter vectors known exactly.
"""

from __future__ import annotations

import pickle
import warnings

import joblib
import numpy as np
import pytest

from skcinn import CINNPosteriorEstimator, simulate
from skcinn.simulation import (
    CHUNK_SIZE,
    BatchSimulator,
    as_prior,
    batch_simulator,
    simulate_datasets,
)

TINY = dict(
    hidden_layer_sizes=(16, 16),
    summary_hidden_sizes=(16,),
    summary_dim=4,
    n_coupling_blocks=2,
    max_iter=2,
    n_simulations=300,
    random_state=0,
    device="cpu",
)


def tiny(**kwargs) -> CINNPosteriorEstimator:
    """A small, fast, seeded estimator on the CPU."""
    return CINNPosteriorEstimator(**{**TINY, **kwargs})


def gaussian_prior(n, rng):
    """Two standard normal parameters, drawn row-major (a longer draw extends a shorter)."""
    return rng.normal(size=(n, 2))


def index_prior(n, rng):
    """Parameter 0 is the draw's index, parameter 1 standard normal."""
    return np.column_stack([np.arange(n), rng.normal(size=n)])


def noisy_copy(theta, rng):
    """A batched simulator with flat features: theta plus a little noise."""
    return theta + 0.3 * rng.normal(size=theta.shape)


def one_set(theta_i, rng):
    """A per-parameter simulator: a data set of 3 to 8 observations around theta_i."""
    return theta_i + rng.normal(size=(int(rng.integers(3, 9)), 2))


def one_flat(theta_i, rng):
    """A per-parameter simulator with flat features."""
    return theta_i + 0.3 * rng.normal(size=2)


def fails_every_20th(theta_i, rng):
    """Raises for the index parameters 0, 20, 40, ... (5 %)."""
    if theta_i[0] % 20 == 0:
        raise ValueError(f"simulation {int(theta_i[0])} diverged")
    return one_flat(theta_i, rng)


def fails_3_in_5(theta_i, rng):
    """Raises for 60 % of the index parameters."""
    if theta_i[0] % 5 < 3:
        raise ArithmeticError(f"no solution at step {int(theta_i[0])}")
    return one_flat(theta_i, rng)


def picky_batch(theta, rng):
    """A batched simulator that raises whenever its batch holds index 7 mod 50."""
    if np.any(theta[:, 0] % 50 == 7):
        raise RuntimeError("overflow in the solver")
    return noisy_copy(theta, rng)


def nan_or_raise(theta_i, rng):
    """Index 1 mod 10 raises, index 2 mod 10 returns NaN, index 3 mod 10 returns inf."""
    kind = theta_i[0] % 10
    if kind == 1:
        raise ValueError("boom")
    x = one_flat(theta_i, rng)
    x[0] = np.nan if kind == 2 else np.inf if kind == 3 else x[0]
    return x


def same(a, b) -> bool:
    """Equal arrays, or equal lists of arrays."""
    if isinstance(a, list) or isinstance(b, list):
        return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    return np.array_equal(a, b)


# ----------------------------------------------------------------- batch_simulator


def test_batch_simulator_stacks_or_lists():
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(5, 2))
    flat = batch_simulator(one_flat)(theta, np.random.default_rng(1))
    assert isinstance(flat, np.ndarray) and flat.shape == (5, 2)
    sets = batch_simulator(one_set)(theta, np.random.default_rng(1))
    assert isinstance(sets, list) and len(sets) == 5
    assert all(s.ndim == 2 and s.shape[1] == 2 for s in sets)


def test_batch_simulator_fills_raising_simulations_with_nan():
    theta = index_prior(40, np.random.default_rng(0))
    X = batch_simulator(fails_every_20th)(theta, np.random.default_rng(1))
    assert X.shape == (40, 2)
    assert np.flatnonzero(np.isnan(X).any(axis=1)).tolist() == [0, 20]
    assert np.isfinite(np.delete(X, [0, 20], axis=0)).all()
    each = batch_simulator(fails_every_20th).simulate_each(theta, np.random.default_rng(1))
    assert isinstance(each[20], ValueError) and str(each[20]) == "simulation 20 diverged"


def test_batch_simulator_pickles_with_a_module_level_function():
    simulator = batch_simulator(one_set)
    again = pickle.loads(pickle.dumps(simulator))
    assert isinstance(again, BatchSimulator) and again.fn is one_set
    theta = np.zeros((4, 2))
    assert same(simulator(theta, np.random.default_rng(3)), again(theta, np.random.default_rng(3)))
    with pytest.raises(TypeError, match="callable"):
        batch_simulator(3)


# ----------------------------------------------------------- seeds and parallelism


def test_simulation_extends_full_chunks():
    prior = as_prior(gaussian_prior)
    short, theta_short, _ = simulate_datasets(
        noisy_copy, prior, 64, np.random.default_rng(3), chunk_size=64
    )
    long, theta_long, _ = simulate_datasets(
        noisy_copy, prior, 300, np.random.default_rng(3), chunk_size=64
    )
    assert np.array_equal(theta_long[:64], theta_short)
    assert np.array_equal(long.values[:64], short.values)
    X_short, _ = simulate(batch_simulator(one_flat), gaussian_prior, CHUNK_SIZE, random_state=5)
    X_long, _ = simulate(batch_simulator(one_flat), gaussian_prior, 2 * CHUNK_SIZE + 3,
                         random_state=5)
    assert np.array_equal(X_long[:CHUNK_SIZE], X_short)


def test_simulate_same_for_every_n_jobs_and_chunks_differ():
    simulator = batch_simulator(one_set)
    n = 2 * CHUNK_SIZE + 150  # three chunks, sets of different sizes
    X1, theta1 = simulate(simulator, gaussian_prior, n, random_state=0, n_jobs=1)
    X2, theta2 = simulate(simulator, gaussian_prior, n, random_state=0, n_jobs=2)
    assert isinstance(X1, list) and len(X1) == n
    assert same(X1, X2) and np.array_equal(theta1, theta2)
    with joblib.parallel_config(backend="threading"):
        X3, _ = simulate(simulator, gaussian_prior, n, random_state=0, n_jobs=2)
    assert same(X1, X3)
    # the chunks draw from distinct streams
    first = [x[0] - t for x, t in zip(X1, theta1, strict=True)]
    assert not np.allclose(first[0], first[CHUNK_SIZE])
    X4, _ = simulate(simulator, gaussian_prior, n, random_state=1)
    assert not same(X1, X4)


def test_fit_same_predictions_for_every_n_jobs():
    X = np.random.default_rng(9).normal(size=(5, 2))
    n = CHUNK_SIZE + 100
    one = tiny(n_simulations=n, n_jobs=1).fit(noisy_copy, gaussian_prior)
    two = tiny(n_simulations=n, n_jobs=2).fit(noisy_copy, gaussian_prior)
    np.testing.assert_array_equal(one.predict(X), two.predict(X))
    assert two.n_jobs == 2 and two.n_failed_simulations_ == 0
    assert two.failed_parameters_.shape == (0, 2)


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_dask_backend_gives_the_same_simulations_and_fit(dask_client):
    simulator = batch_simulator(one_set)
    n = CHUNK_SIZE + 100
    X1, theta1 = simulate(simulator, gaussian_prior, n, random_state=0, n_jobs=1)
    local = tiny(n_simulations=n, n_jobs=1).fit(simulator, gaussian_prior)
    with joblib.parallel_config(backend="dask"):
        X2, theta2 = simulate(simulator, gaussian_prior, n, random_state=0, n_jobs=2)
        remote = tiny(n_simulations=n, n_jobs=-1).fit(simulator, gaussian_prior)
    assert same(X1, X2) and np.array_equal(theta1, theta2)
    np.testing.assert_array_equal(local.predict(X1[:5]), remote.predict(X1[:5]))


# ------------------------------------------------------------------------ failures


def test_fit_drops_simulations_that_raise():
    est = tiny(early_stopping=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(batch_simulator(fails_every_20th), index_prior)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1
    assert "15 of 300 simulations raised an exception" in messages[0]
    assert "ValueError: simulation 0 diverged" in messages[0]
    assert "[0.0, " in messages[0]  # the parameters of the first failure
    assert est.n_failed_simulations_ == 15
    assert est.n_simulations_ == 285
    failed = est.failed_parameters_
    assert failed.shape == (15, 2)
    np.testing.assert_array_equal(failed[:, 0], np.arange(0, 300, 20))
    for theta_i in failed:  # exactly the parameters that raise
        with pytest.raises(ValueError, match="diverged"):
            fails_every_20th(theta_i, np.random.default_rng(0))
    assert np.all(np.isfinite(est.predict(np.zeros((3, 2)))))


def test_fit_with_most_simulations_raising_names_the_first_exception():
    est = tiny()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="180 of 300 simulations raised an exception") as err:
            est.fit(batch_simulator(fails_3_in_5), index_prior)
    message = str(err.value)
    assert "ArithmeticError: no solution at step 0" in message
    assert "parameters [0.0, " in message
    cause = err.value.__cause__
    assert type(cause) is ArithmeticError and str(cause) == "no solution at step 0"
    assert not hasattr(est, "n_failed_simulations_")


def test_batched_simulator_that_raises_is_isolated_row_by_row():
    with pytest.warns(RuntimeWarning, match=r"6 of 300 simulations raised an exception") as rec:
        data, theta, failed = simulate_datasets(
            picky_batch, as_prior(index_prior), 300, np.random.default_rng(0), chunk_size=64
        )
    assert "RuntimeError: overflow in the solver" in str(rec[0].message)
    np.testing.assert_array_equal(failed[:, 0], np.arange(7, 300, 50))
    kept = np.setdiff1d(np.arange(300), np.arange(7, 300, 50))
    np.testing.assert_array_equal(theta[:, 0], kept)
    assert data.values.shape == (294, 2)
    assert np.abs(data.values - theta).max() < 2.0  # each row simulated for its own theta
    # same result whether the chunks run here or in workers
    with pytest.warns(RuntimeWarning, match="6 of 300"):
        again, _, failed2 = simulate_datasets(
            picky_batch, as_prior(index_prior), 300, np.random.default_rng(0), n_jobs=2,
            chunk_size=64,
        )
    assert np.array_equal(again.values, data.values) and np.array_equal(failed2, failed)


def test_mixed_failures_are_counted_by_kind_and_simulate_drops_them():
    simulator = batch_simulator(nan_or_raise)
    with pytest.warns(RuntimeWarning) as rec:
        X, theta = simulate(simulator, index_prior, 100, random_state=0)
    assert len(rec) == 1
    message = str(rec[0].message)
    assert "30 of 100 simulations failed (10 raised an exception, 20 returned NaN or inf)" in (
        message
    )
    assert "(ValueError: boom) was for parameters [1.0, " in message
    assert X.shape == (70, 2) and np.isfinite(X).all()
    assert set(theta[:, 0].astype(int) % 10).isdisjoint({1, 2, 3})


def test_online_training_counts_failures_of_every_epoch():
    est = tiny(online=True, early_stopping=False, max_iter=2)
    with pytest.warns(RuntimeWarning, match="15 of 300") as rec:
        est.fit(batch_simulator(fails_every_20th), index_prior)
    assert len([w for w in rec if "15 of 300" in str(w.message)]) == 2  # fit and one refresh
    assert est.n_failed_simulations_ == 30
    np.testing.assert_array_equal(est.failed_parameters_[:, 0], np.tile(np.arange(0, 300, 20), 2))


def test_bad_chunk_size_and_n_jobs():
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        simulate_datasets(noisy_copy, as_prior(gaussian_prior), 10, np.random.default_rng(0),
                          chunk_size=0)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        simulate(noisy_copy, gaussian_prior, 0)
    with pytest.raises(ValueError, match="'n_jobs' parameter of CINNPosteriorEstimator"):
        tiny(n_jobs=1.5).fit(noisy_copy, gaussian_prior)
