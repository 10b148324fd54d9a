"""Budgets, training history, interrupts and resuming from a checkpoint."""

import numpy as np
import pandas as pd
import pytest

import skcinn
from skcinn import CINNPosteriorEstimator
from skcinn.simulators import GaussianMean

MODEL = GaussianMean(n_obs=10)
TINY = dict(
    hidden_layer_sizes=(16, 16), summary_hidden_sizes=(16,), summary_dim=4,
    n_coupling_blocks=2, n_simulations=400, random_state=0, device="cpu",
)


class InterruptingSimulator:
    """The model's simulator, raising KeyboardInterrupt at call ``fail_at`` (1-based)."""

    def __init__(self, fail_at):
        self.fail_at, self.calls = fail_at, 0

    def __call__(self, theta, rng):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        return MODEL.simulate(theta, rng)


def test_max_time_ends_training():
    est = CINNPosteriorEstimator(**TINY, max_iter=10_000, max_time=0.5, n_iter_no_change=10**6)
    est.fit(MODEL.simulate, MODEL.prior)
    assert est.stop_reason_ == "max_time"
    assert 1 <= est.n_iter_ < 10_000
    assert est.fit_time_ < 5


def test_history_records_every_epoch_and_grows_with_warm_starts():
    est = CINNPosteriorEstimator(**TINY, max_iter=3, warm_start=True)
    est.fit(MODEL.simulate, MODEL.prior)
    history = est.history_
    assert isinstance(history, pd.DataFrame) and len(history) == 3
    assert list(history.columns) == ["loss", "validation_score", "learning_rate", "seconds"]
    np.testing.assert_array_equal(history["loss"], est.loss_curve_)
    assert (history["seconds"] > 0).all() and history["learning_rate"].is_monotonic_decreasing
    assert est.stop_reason_ == "max_iter"
    est.fit(MODEL.simulate, MODEL.prior)
    assert len(est.history_) == 6 and len(est.loss_curve_) == 6


def test_interrupted_fit_keeps_the_best_weights_and_resumes(tmp_path):
    path = tmp_path / "run.skcinn"
    settings = dict(TINY, max_iter=6, online=True, checkpoint_path=str(path), batch_size=32,
                    learning_rate_init=1e-2)
    # call 1 simulates epoch 0; call k + 1 (epoch k's data) is interrupted: k epochs run
    est = CINNPosteriorEstimator(**settings)
    with pytest.warns(UserWarning, match="interrupted after 3 epochs"):
        est.fit(InterruptingSimulator(fail_at=4), MODEL.prior)
    assert est.stop_reason_ == "interrupted" and est.n_iter_ == 3
    rng = np.random.default_rng(1)
    X = MODEL.simulate(MODEL.sample_prior(5, rng), rng)
    assert est.sample_posterior(X, 10).shape == (5, 10, 2)  # still usable
    assert skcinn.load(path).n_params_ == 2  # the checkpoint is an ordinary model file

    # a new process: a fresh estimator with the same checkpoint resumes at epoch 3
    resumed = CINNPosteriorEstimator(**settings, warm_start=True)
    resumed.fit(MODEL.simulate, MODEL.prior)
    assert resumed.n_iter_ == 6 and len(resumed.loss_curve_) == 6
    np.testing.assert_allclose(resumed.loss_curve_[:3], est.loss_curve_[:3])
    assert resumed.stop_reason_ == "max_iter"

    straight = CINNPosteriorEstimator(**dict(settings, checkpoint_path=None))
    straight.fit(MODEL.simulate, MODEL.prior)
    # the resumed fit reaches the loss an uninterrupted fit reaches
    assert abs(resumed.loss_curve_[-1] - straight.loss_curve_[-1]) < 0.15
    assert resumed.loss_curve_[-1] < resumed.loss_curve_[0] - 0.5

    # a finished checkpoint is not resumed: warm start trains max_iter more epochs
    resumed.fit(MODEL.simulate, MODEL.prior)
    assert len(resumed.loss_curve_) == 12


def test_checkpoint_is_written_every_epoch(tmp_path, monkeypatch):
    import skcinn.persistence as persistence

    written = []
    original = persistence.save_checkpoint

    def spy(est, training, path):
        written.append(training.get("finished", False))
        original(est, training, path)

    monkeypatch.setattr(persistence, "save_checkpoint", spy)
    est = CINNPosteriorEstimator(**TINY, max_iter=4, checkpoint_path=tmp_path / "c.skcinn")
    est.fit(MODEL.simulate, MODEL.prior)
    assert written == [False] * 4 + [True]
    assert not list(tmp_path.glob("*.tmp*"))  # atomic writes leave no temporary files


def test_progress_is_silent_by_default_and_one_line_per_epoch_in_logs(capsys):
    CINNPosteriorEstimator(**TINY, max_iter=2).fit(MODEL.simulate, MODEL.prior)
    assert capsys.readouterr().out == ""
    CINNPosteriorEstimator(**TINY, max_iter=3, verbose=1).fit(MODEL.simulate, MODEL.prior)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("epoch 1/3: loss ")
    assert "validation log density" in lines[0] and lines[0].endswith("learning rate 2.0e-03")


def test_progress_bar_in_a_terminal(capsys, monkeypatch):
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    CINNPosteriorEstimator(**TINY, max_iter=3, verbose=1).fit(MODEL.simulate, MODEL.prior)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "training" in captured.err and "3/3" in captured.err and "loss=" in captured.err
    assert "lr=2.0e-03" in captured.err


def test_partial_fit_trains_chunk_by_chunk():
    rng = np.random.default_rng(3)
    theta = MODEL.sample_prior(1200, rng)
    X = MODEL.simulate(theta, rng)
    est = CINNPosteriorEstimator(**dict(TINY, batch_size=32, learning_rate_init=5e-3))
    scores = []
    for chunk in np.array_split(np.arange(1000), 5):
        est.partial_fit(X[chunk], theta[chunk])
        scores.append(est.score(X[1000:], theta[1000:]))
    assert len(est.loss_curve_) == 5 and est.n_iter_ == 1
    assert est.validation_scores_ == []  # no early stopping in partial_fit
    assert scores[-1] > scores[0] + 0.3  # held-out log density improves chunk by chunk
    assert len(set(est.history_["learning_rate"])) == 1  # constant learning rate
    with pytest.raises(ValueError, match="X has 3 features"):
        est.partial_fit(np.concatenate([X[:5], X[:5, :, :1]], axis=-1), theta[:5])
    assert len(est.loss_curve_) == 5  # the failed call changed nothing


def test_online_epochs_have_as_many_pairs_as_the_schedule_expects():
    est = CINNPosteriorEstimator(**dict(TINY, batch_size=32), max_iter=6, online=True,
                                 validation_fraction=0.5, learning_rate="cosine")
    est.fit(MODEL.simulate, MODEL.prior)
    rates = est.history_["learning_rate"].to_numpy()  # the rate at the end of each epoch
    # cosine decay over exactly max_iter epochs: it reaches zero with the last epoch only
    # (rounds of all 400 fresh pairs would have exhausted the schedule by epoch 3)
    assert np.all(np.diff(rates) < 0) and rates[-2] > 0.05 * rates[0] and rates[-1] == 0
    assert est.n_simulations_ == 200  # 400 minus 50 % validation, in every epoch


def test_unknown_schedule_is_rejected_and_keeps_the_fitted_state():
    est = CINNPosteriorEstimator(**TINY, max_iter=2).fit(MODEL.simulate, MODEL.prior)
    rng = np.random.default_rng(3)
    X = MODEL.simulate(MODEL.sample_prior(4, rng), rng)
    before = est.sample_posterior(X, 20, random_state=0)
    est.set_params(learning_rate="step")
    with pytest.raises(ValueError, match="'learning_rate' parameter") as raised:
        est.fit(MODEL.simulate, MODEL.prior)
    assert all(f"'{name}'" in str(raised.value) for name in ("adaptive", "cosine", "constant"))
    assert "Got 'step'" in str(raised.value)
    assert est.n_iter_ == 2
    np.testing.assert_array_equal(est.sample_posterior(X, 20, random_state=0), before)


@pytest.mark.parametrize("decay", [1.0, -0.1])
def test_ema_decay_outside_zero_to_one_is_rejected_and_keeps_the_fitted_state(decay):
    est = CINNPosteriorEstimator(**TINY, max_iter=2).fit(MODEL.simulate, MODEL.prior)
    rng = np.random.default_rng(3)
    X = MODEL.simulate(MODEL.sample_prior(4, rng), rng)
    before = est.sample_posterior(X, 20, random_state=0)
    est.set_params(ema_decay=decay)
    with pytest.raises(ValueError, match=r"'ema_decay' parameter .* range \[0.0, 1.0\)\. Got"):
        est.fit(MODEL.simulate, MODEL.prior)
    assert est.n_iter_ == 2
    np.testing.assert_array_equal(est.sample_posterior(X, 20, random_state=0), before)


def test_partial_fit_trains_without_the_weight_average():
    rng = np.random.default_rng(3)
    theta = MODEL.sample_prior(300, rng)
    X = MODEL.simulate(theta, rng)
    draws = []
    for decay in (0.0, 0.99):
        est = CINNPosteriorEstimator(**TINY, ema_decay=decay)
        est.partial_fit(X, theta)
        draws.append(est.sample_posterior(X[:3], 20, random_state=0))
    np.testing.assert_array_equal(*draws)
    # while fit keeps the average
    fits = [CINNPosteriorEstimator(**TINY, max_iter=2, ema_decay=d)
            .fit(X, theta).sample_posterior(X[:3], 20, random_state=0) for d in (0.0, 0.99)]
    assert not np.array_equal(*fits)
