"""PosteriorEnsemble: mixture draws, densities and moments, shared simulations, and its
place in scikit-learn (clone, search, pickles, parallel fits)."""

import pickle

import joblib
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score

from skcinn import CINNPosteriorEstimator, PosteriorEnsemble, sample_posterior
from skcinn.simulators import GaussianMean

SMALL = dict(n_coupling_blocks=2, hidden_layer_sizes=(16,), max_iter=5, device="cpu")


class Labelled(RegressorMixin, BaseEstimator):
    """A stub posterior whose every draw is its own random state: draws name their member.

    Its log density is ``-random_state / 1e9`` and its predictions have mean
    ``random_state / 1e9`` and standard deviation 1, so the mixture's are known.
    """

    def __init__(self, random_state=None):
        self.random_state = random_state

    def fit(self, X, y):
        self.n_params_ = np.asarray(y).reshape(len(y), -1).shape[1]
        self.parameter_names_ = np.array([f"theta_{i}" for i in range(self.n_params_)])
        self.fitted_on_ = (np.asarray(X).copy(), np.asarray(y).copy())
        return self

    def sample_posterior(self, X, n_samples=1000, random_state=None):
        return np.full((len(X), n_samples, self.n_params_), float(self.random_state))

    def log_posterior(self, X, y):
        return np.full(len(X), -self.random_state / 1e9)

    def predict(self, X, return_std=False):
        mean = np.full((len(X), self.n_params_), self.random_state / 1e9)
        return (mean, np.ones_like(mean)) if return_std else mean


def _pairs(n=600, seed=0):
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=(n, 2))
    return theta + 0.5 * rng.normal(size=(n, 2)), theta


@pytest.fixture(scope="module")
def fitted():
    X, theta = _pairs()
    return PosteriorEnsemble(CINNPosteriorEstimator(**SMALL), n_estimators=3,
                             random_state=0).fit(X, theta)


@pytest.mark.parametrize("n_samples", [12, 13, 14, 1])
def test_each_member_gives_its_share_of_every_data_sets_draws(n_samples):
    X, theta = _pairs(10)
    ens = PosteriorEnsemble(Labelled(), n_estimators=4, random_state=0).fit(X, theta)
    draws = ens.sample_posterior(X, n_samples=n_samples, random_state=1)
    assert draws.shape == (10, n_samples, 2)
    labels = [m.random_state for m in ens.estimators_]
    assert len(set(labels)) == 4
    share, rest = divmod(n_samples, 4)
    counts = np.stack([(draws[..., 0] == label).sum(axis=1) for label in labels], axis=1)
    assert (counts.sum(axis=1) == n_samples).all()
    assert np.isin(counts, [share, share + 1]).all()
    assert ((counts == share + 1).sum(axis=1) == rest).all()
    if rest:  # which members give the extra draw is chosen per data set
        assert len({tuple(row) for row in counts}) > 1
    # shuffled within each data set, not in member order
    if n_samples > 4:
        assert any((np.diff(d[:, 0]) != 0).sum() > 3 for d in draws)


def test_members_are_trained_on_the_same_pairs_with_their_own_random_states():
    X, theta = _pairs(50)
    ens = PosteriorEnsemble(Labelled(random_state=7), n_estimators=3, random_state=0)
    ens.fit(X, theta)
    assert len({m.random_state for m in ens.estimators_}) == 3
    for member in ens.estimators_:
        np.testing.assert_array_equal(member.fitted_on_[0], X)
        np.testing.assert_array_equal(member.fitted_on_[1], theta)
    assert ens.estimator.random_state == 7  # the given estimator is cloned, not changed
    again = PosteriorEnsemble(Labelled(), n_estimators=3, random_state=0).fit(X, theta)
    assert [m.random_state for m in again.estimators_] == [
        m.random_state for m in ens.estimators_]


def test_density_is_the_mean_of_the_members_densities():
    X, theta = _pairs(5)
    ens = PosteriorEnsemble(Labelled(), n_estimators=3, random_state=0).fit(X, theta)
    logq = np.array([-m.random_state / 1e9 for m in ens.estimators_])
    expected = logsumexp(logq) - np.log(3)
    np.testing.assert_allclose(ens.log_posterior(X, theta), expected, rtol=1e-12)
    assert ens.score(X, theta) == pytest.approx(expected)


def test_predict_gives_the_mixtures_mean_and_standard_deviation():
    X, theta = _pairs(5)
    ens = PosteriorEnsemble(Labelled(), n_estimators=3, random_state=0).fit(X, theta)
    means = np.array([m.random_state / 1e9 for m in ens.estimators_])
    mean, std = ens.predict(X, return_std=True)
    np.testing.assert_allclose(mean, means.mean())
    np.testing.assert_allclose(std, np.sqrt(1 + means.var()))
    np.testing.assert_allclose(ens.predict(X), mean)


def test_mixture_density_integrates_its_members(fitted):
    X, theta = _pairs(300, seed=1)
    members = np.stack([m.log_posterior(X, theta) for m in fitted.estimators_])
    mixture = fitted.log_posterior(X, theta)
    np.testing.assert_allclose(mixture, logsumexp(members, axis=0) - np.log(3), rtol=1e-6)
    # log of a mean >= mean of logs, strictly where members disagree
    assert (mixture >= members.mean(axis=0) - 1e-9).all()
    assert fitted.score(X, theta) > members.mean()


def test_mixture_moments_agree_with_its_draws(fitted):
    X, _ = _pairs(20, seed=2)
    draws = fitted.sample_posterior(X, n_samples=6000, random_state=0)
    mean, std = fitted.predict(X, return_std=True)
    np.testing.assert_allclose(draws.mean(axis=1), mean, atol=0.05)
    np.testing.assert_allclose(draws.std(axis=1), std, rtol=0.08)


def test_draws_are_reproducible_and_follow_the_seed(fitted):
    X, _ = _pairs(4, seed=3)
    a = fitted.sample_posterior(X, n_samples=50, random_state=5)
    np.testing.assert_array_equal(a, fitted.sample_posterior(X, n_samples=50, random_state=5))
    assert not np.array_equal(a, fitted.sample_posterior(X, n_samples=50, random_state=6))
    frame = fitted.sample_posterior(X, n_samples=7, random_state=0, as_frame=True)
    assert list(frame.columns) == ["dataset", "draw", "theta_0", "theta_1"]
    assert len(frame) == 28


def test_same_random_state_gives_the_same_ensemble():
    X, theta = _pairs(300)
    est = CINNPosteriorEstimator(**SMALL)
    a = PosteriorEnsemble(est, n_estimators=2, random_state=3).fit(X, theta)
    b = PosteriorEnsemble(est, n_estimators=2, random_state=3).fit(X, theta)
    np.testing.assert_array_equal(a.sample_posterior(X[:3], 20, random_state=0),
                                  b.sample_posterior(X[:3], 20, random_state=0))
    # members differ from each other
    d0, d1 = (m.sample_posterior(X[:3], 20, random_state=0) for m in a.estimators_)
    assert not np.allclose(d0, d1)


def test_parallel_fit_gives_the_same_members_as_a_serial_one():
    X, theta = _pairs(300)
    est = CINNPosteriorEstimator(**SMALL)
    serial = PosteriorEnsemble(est, n_estimators=2, random_state=1).fit(X, theta)
    parallel = PosteriorEnsemble(est, n_estimators=2, n_jobs=2, random_state=1).fit(X, theta)
    np.testing.assert_allclose(serial.log_posterior(X[:50], theta[:50]),
                               parallel.log_posterior(X[:50], theta[:50]), rtol=1e-5)


def test_simulator_fit_simulates_once_and_keeps_the_priors_support():
    calls = []

    def simulator(theta, rng):
        calls.append(len(theta))
        return theta + 0.3 * rng.normal(size=theta.shape)

    prior = {"a": stats.uniform(0, 1), "b": stats.norm(0, 1)}
    est = CINNPosteriorEstimator(n_simulations=400, **SMALL)
    ens = PosteriorEnsemble(est, n_estimators=3, random_state=0).fit(simulator, prior)
    assert sum(calls) == 400  # one bank for all members
    assert list(ens.parameter_names_) == ["a", "b"]
    draws = ens.sample_posterior(np.array([[0.02, 0.0], [0.98, 0.0]]), 500, random_state=0)
    assert (draws[..., 0] > 0).all() and (draws[..., 0] < 1).all()
    assert est.parameter_bounds is None  # the prior's box went to the members only
    # the estimator's own bounds narrow the prior's support
    narrowed = PosteriorEnsemble(clone(est).set_params(parameter_bounds={"b": (-10, 10)}),
                                 n_estimators=2, random_state=0).fit(simulator, prior)
    assert narrowed.estimators_[0].parameter_bounds == [(0.0, 1.0), (-10.0, 10.0)]


def test_online_members_simulate_their_own_pairs():
    calls = []

    def simulator(theta, rng):
        calls.append(len(theta))
        return theta + 0.3 * rng.normal(size=theta.shape)

    est = CINNPosteriorEstimator(n_simulations=200, online=True,
                                 **{**SMALL, "max_iter": 2})
    clone(est).fit(simulator, stats.norm())
    alone = sum(calls)
    calls.clear()
    PosteriorEnsemble(est, n_estimators=2, random_state=0).fit(simulator, stats.norm())
    assert alone > 200 and sum(calls) == 2 * alone


def test_set_data_and_pipelines():
    model = GaussianMean()
    rng = np.random.default_rng(0)
    theta = model.sample_prior(300, rng)
    X = model.simulate(theta, rng)
    ens = PosteriorEnsemble(CINNPosteriorEstimator(**SMALL), n_estimators=2,
                            random_state=0).fit(X, theta)
    assert ens.input_rank_ == 3
    assert sample_posterior(ens, X[:3], 10, random_state=0).shape == (3, 10, 2)
    report = ens.check_calibration(X[:40], theta[:40], n_samples=50, random_state=0)
    assert list(report.index) == ["theta_0", "theta_1"]


def test_scikit_learn_composition():
    X, theta = _pairs(300)
    ens = PosteriorEnsemble(CINNPosteriorEstimator(**SMALL), n_estimators=2, random_state=0)
    assert clone(ens).get_params()["estimator__max_iter"] == 5
    scores = cross_val_score(ens, X, theta, cv=2)
    assert np.isfinite(scores).all()
    search = GridSearchCV(ens, {"estimator__hidden_layer_sizes": [(8,), (16,)]}, cv=2)
    search.fit(X, theta)
    assert search.best_params_["estimator__hidden_layer_sizes"] in [(8,), (16,)]


def test_pickles_round_trip(fitted, tmp_path):
    X, theta = _pairs(5, seed=4)
    expected = fitted.sample_posterior(X, 30, random_state=0)
    loaded = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(loaded.sample_posterior(X, 30, random_state=0), expected)
    joblib.dump(fitted, tmp_path / "ens.joblib")
    again = joblib.load(tmp_path / "ens.joblib")
    np.testing.assert_allclose(again.log_posterior(X, theta), fitted.log_posterior(X, theta))


def test_clear_errors():
    X, theta = _pairs(50)
    with pytest.raises(NotFittedError):
        PosteriorEnsemble().sample_posterior(X)
    with pytest.raises(ValueError, match="n_estimators"):
        PosteriorEnsemble(n_estimators=0).fit(X, theta)
    with pytest.raises(ValueError, match="estimator"):
        PosteriorEnsemble(estimator=object()).fit(X, theta)
    ens = PosteriorEnsemble(Labelled(), n_estimators=2, random_state=0).fit(X, theta)
    with pytest.raises(ValueError, match="n_samples"):
        ens.sample_posterior(X, n_samples=0)
    with pytest.raises(TypeError, match="n_simulations"):
        PosteriorEnsemble(Labelled()).fit(lambda t, rng: t, stats.norm())


def test_save_and_load_round_trip_without_pickle(fitted, tmp_path):
    import torch

    import skcinn

    X, theta = _pairs(5, seed=4)
    path = tmp_path / "ensemble.skcinn"
    skcinn.save(fitted, path)
    torch.load(path, weights_only=True)  # plain data and tensors only
    loaded = skcinn.load(path)
    assert isinstance(loaded, PosteriorEnsemble)
    assert loaded.get_params()["estimator__max_iter"] == 5
    assert loaded.n_estimators == 3 and len(loaded.estimators_) == 3
    np.testing.assert_array_equal(loaded.parameter_names_, fitted.parameter_names_)
    np.testing.assert_array_equal(loaded.sample_posterior(X, 30, random_state=0),
                                  fitted.sample_posterior(X, 30, random_state=0))
    np.testing.assert_array_equal(loaded.log_posterior(X, theta), fitted.log_posterior(X, theta))


def test_save_refuses_ensembles_of_other_estimators(tmp_path):
    import skcinn

    X, theta = _pairs(20)
    ens = PosteriorEnsemble(Labelled(), n_estimators=2, random_state=0).fit(X, theta)
    with pytest.raises(TypeError, match="CINNPosteriorEstimator or PosteriorEnsemble"):
        skcinn.save(ens, tmp_path / "x.skcinn")
    with pytest.raises(NotFittedError):
        skcinn.save(PosteriorEnsemble(), tmp_path / "x.skcinn")


def test_load_rejects_a_corrupted_ensemble(fitted, tmp_path):
    import torch

    import skcinn

    path = tmp_path / "ensemble.skcinn"
    skcinn.save(fitted, path)
    payload = torch.load(path, weights_only=True)
    torch.save({**payload, "members": []}, path)
    with pytest.raises(ValueError, match="non-empty list of members"):
        skcinn.load(path)
    del payload["members"][1]["state"]["network_"]
    torch.save(payload, path)
    with pytest.raises(ValueError, match=r"member 1\).*no fitted network"):
        skcinn.load(path)
    torch.save({**payload, "params": {"n_trees": 3}}, path)
    with pytest.raises(ValueError, match="n_trees"):
        skcinn.load(path)


def test_warm_start_adds_the_members_a_fresh_fit_would_have():
    X, theta = _pairs(300)
    est = CINNPosteriorEstimator(**SMALL)
    ens = PosteriorEnsemble(est, n_estimators=2, random_state=4, warm_start=True)
    ens.fit(X, theta)
    first = list(ens.estimators_)
    ens.set_params(n_estimators=3).fit(X, theta)
    assert ens.estimators_[:2] == first  # the same objects, not refitted
    fresh = PosteriorEnsemble(est, n_estimators=3, random_state=4).fit(X, theta)
    assert [m.random_state for m in ens.estimators_] == [
        m.random_state for m in fresh.estimators_]
    np.testing.assert_array_equal(ens.sample_posterior(X[:3], 30, random_state=0),
                                  fresh.sample_posterior(X[:3], 30, random_state=0))
    with pytest.warns(UserWarning, match="no new member"):
        ens.fit(X, theta)
    with pytest.raises(ValueError, match="at least the 3 members"):
        ens.set_params(n_estimators=2).fit(X, theta)
    # without warm_start, a refit starts anew
    cold = ens.set_params(warm_start=False, n_estimators=2).fit(X, theta)
    assert len(cold.estimators_) == 2 and cold.estimators_[0] is not first[0]
