"""The training loop alone: non-finite batches, early stopping, best weights."""

import math

import pytest
import torch
from torch import nn

from skcinn import training
from skcinn.training import (
    PLATEAU_STEPS,
    TrainingConfig,
    WeightAverage,
    clip_gradients,
    train,
)


class Gaussian(nn.Module):
    """log N(theta; mu, 1) with a learned mu; NaN for rows whose x is NaN."""

    def __init__(self):
        super().__init__()
        self.mu = nn.Parameter(torch.zeros(1))

    def log_prob(self, theta, x):
        lp = -0.5 * ((theta - self.mu) ** 2).sum(-1) - 0.5 * math.log(2 * math.pi)
        return lp + 0 * x.sum(-1)  # NaN where x is NaN


def _data(n, poison=0):
    gen = torch.Generator().manual_seed(0)
    theta = 3.0 + torch.randn(n, 1, generator=gen)
    x = torch.zeros(n, 1)
    x[:poison] = float("nan")
    return theta, x


def test_non_finite_batches_are_skipped_not_applied():
    model = Gaussian()
    config = TrainingConfig(max_iter=30, batch_size=16, learning_rate=0.1, n_iter_no_change=30)
    history = train(model, _data(256, poison=3), None, config,
                    torch.Generator().manual_seed(1), torch.device("cpu"))
    assert history.skipped_batches > 0
    assert torch.isfinite(model.mu).all()
    assert abs(model.mu.item() - 3.0) < 0.3  # still learned from the good batches


def test_clip_gradients_matches_torch_and_reports_non_finite_norms():
    gen = torch.Generator().manual_seed(0)
    params = [nn.Parameter(torch.zeros(s)) for s in ((3, 4), (4,), (2, 3))]
    grads = [torch.randn(p.shape, generator=gen) for p in params]
    norm = torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in grads])).item()
    for max_norm in (0.5 * norm, 2.0 * norm):  # clipped, then left alone
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        reference = [g.clone().requires_grad_() for g in grads]
        for r in reference:
            r.grad = r.detach().clone()
        nn.utils.clip_grad_norm_(reference, max_norm)
        assert clip_gradients(params, max_norm)
        for p, r in zip(params, reference, strict=True):
            torch.testing.assert_close(p.grad, r.grad)
    clipped = torch.linalg.vector_norm(torch.cat([p.grad.reshape(-1) for p in params]))
    assert clipped.item() == pytest.approx(norm, rel=1e-6)  # 2 x norm: unchanged
    params[1].grad[0] = float("inf")
    assert not clip_gradients(params, norm)
    params[1].grad[0] = float("nan")
    assert not clip_gradients(params, norm)
    assert clip_gradients([nn.Parameter(torch.zeros(2))], 1.0)  # no gradients yet


def test_all_batches_non_finite_raises_and_keeps_weights():
    model = Gaussian()
    config = TrainingConfig(max_iter=3, batch_size=16)
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        train(model, _data(32, poison=32), None, config, torch.Generator().manual_seed(1),
              torch.device("cpu"))
    assert model.mu.item() == 0.0


def test_early_stopping_restores_the_best_epoch():
    model = Gaussian()
    config = TrainingConfig(max_iter=200, batch_size=32, learning_rate=0.05, n_iter_no_change=5)
    history = train(model, _data(256), _data(64), config, torch.Generator().manual_seed(1),
                    torch.device("cpu"))
    assert history.n_iter < 200  # stopped early
    # the best score is the last one that improved by more than tol
    assert max(history.validation_scores) - config.tol <= history.best_score
    assert history.best_score in history.validation_scores
    assert history.validation_scores[-1] != history.best_score
    theta, x = _data(64)
    with torch.no_grad():  # the weights of that epoch were restored
        restored = model.log_prob(theta, x).mean().item()
    assert restored == pytest.approx(history.best_score, abs=1e-6)


def test_online_refresh_is_called_every_epoch_after_the_first():
    calls = []

    def refresh(epoch):
        calls.append(epoch)
        return _data(64)

    config = TrainingConfig(max_iter=4, batch_size=32, n_iter_no_change=10)
    train(Gaussian(), _data(64), None, config, torch.Generator().manual_seed(1),
          torch.device("cpu"), refresh)
    assert calls == [1, 2, 3]


def _adaptive_run(resume=None, snapshots=None):
    model = Gaussian()
    if resume is not None:
        model.load_state_dict(resume["model"])
    config = TrainingConfig(max_iter=500, batch_size=32, learning_rate=0.05, n_iter_no_change=3)
    history = train(model, _data(256), _data(64), config, torch.Generator().manual_seed(1),
                    torch.device("cpu"), resume=resume,
                    checkpoint=None if snapshots is None else snapshots.append)
    return history


def test_adaptive_schedule_divides_the_rate_by_five_on_plateaus_then_stops():
    history = _adaptive_run()
    assert history.stopped == "converged" and history.n_iter < 500
    rates = history.learning_rates
    drops = [(a, b) for a, b in zip(rates, rates[1:], strict=False) if a != b]
    assert drops and [a / b for a, b in drops] == pytest.approx([5.0] * len(drops))
    assert rates[0] == 0.05 and rates[-1] == pytest.approx(0.05 / 5 ** len(drops))
    # each reduction follows a plateau: n_iter_no_change epochs (3) without improvement,
    # stretched to PLATEAU_STEPS optimisation steps (8 steps per epoch here: 22 epochs)
    patience = math.ceil(PLATEAU_STEPS / 8)
    assert patience > 3
    ends = [i + 1 for i, (a, b) in enumerate(zip(rates, rates[1:], strict=False)) if a != b]
    for epoch in ends:
        before = history.validation_scores[:epoch]
        assert max(before[-patience:]) <= max(before[:-patience]) + 1e-4
    assert min(b - a for a, b in zip([0, *ends], ends, strict=False)) >= patience
    assert history.n_iter - ends[-1] == patience  # a plateau ends training
    # before the fourth: the one learned mean is found at the first rate, and the
    # smaller rate after the first plateau finds no better score
    assert len(drops) < 3
    scores = history.validation_scores
    assert max(scores[ends[-1]:]) <= max(scores[:ends[-1]]) + 1e-4


def test_adaptive_schedule_stops_when_a_smaller_rate_found_nothing():
    """Three reductions at most, and none after one that brought no better score."""
    config = TrainingConfig(learning_rate=0.1)

    def plateaus(best_scores):
        state = training._State(training.History())
        optimizer = training.make_optimizer([nn.Parameter(torch.zeros(1))], 0.1)
        outcomes = []
        for best in best_scores:
            state.history.best_score = best
            outcomes.append(training._lower_rate(state, optimizer, config))
        return outcomes, optimizer.param_groups[0]["lr"]

    assert plateaus([1.0, 1.5, 1.7, 1.8]) == ([None, None, None, "converged"],
                                              pytest.approx(0.1 / 125))
    assert plateaus([1.0, 1.5, 1.5]) == ([None, None, "converged"], pytest.approx(0.1 / 25))
    assert plateaus([1.0, 1.0]) == ([None, "converged"], pytest.approx(0.1 / 5))


def test_adaptive_schedule_anneals_the_rate_over_the_last_epochs(monkeypatch):
    monkeypatch.setattr(training, "ANNEAL_FRACTION", 0.3)
    config = TrainingConfig(max_iter=10, batch_size=32, learning_rate=0.05,
                            n_iter_no_change=100)
    history = train(Gaussian(), _data(256), _data(64), config,
                    torch.Generator().manual_seed(1), torch.device("cpu"))
    # no plateau in ten epochs (patience 100): only the anneal moves the rate
    assert history.learning_rates == pytest.approx(
        [0.05] * 7 + [0.05 * 3 / 4, 0.05 * 2 / 4, 0.05 * 1 / 4])
    assert history.stopped == "max_iter"
    constant = train(Gaussian(), _data(256), None, TrainingConfig(
        max_iter=10, batch_size=32, learning_rate=0.05, schedule="constant"),
        torch.Generator().manual_seed(1), torch.device("cpu"))
    assert constant.learning_rates == pytest.approx([0.05] * 10)  # only the adaptive anneals


def test_adaptive_schedule_resumes_at_its_reduced_rate():
    snapshots = []
    straight = _adaptive_run(snapshots=snapshots)
    rates = straight.learning_rates
    after_drop = next(i for i in range(1, len(rates)) if rates[i] < rates[i - 1]) + 1
    resumed = _adaptive_run(resume=snapshots[after_drop - 1])
    assert resumed.learning_rates == pytest.approx(rates)
    assert resumed.validation_scores == pytest.approx(straight.validation_scores)
    assert resumed.stopped == straight.stopped


def test_cosine_schedule_reaches_zero_at_max_iter():
    config = TrainingConfig(max_iter=8, batch_size=32, learning_rate=0.05,
                            n_iter_no_change=100, schedule="cosine")
    history = train(Gaussian(), _data(256), None, config, torch.Generator().manual_seed(1),
                    torch.device("cpu"))
    assert history.n_iter == 8 and history.stopped == "max_iter"
    assert all(b < a for a, b in zip(history.learning_rates, history.learning_rates[1:],
                                     strict=False))
    assert history.learning_rates[-1] == pytest.approx(0.0, abs=1e-12)


def test_weight_average_follows_its_recurrence_and_hands_the_weights_back():
    model = Gaussian()
    average = WeightAverage(model, decay=0.9)
    expected = 0.0
    for step, value in enumerate([1.0, 2.0, 4.0, -3.0] + [5.0] * 200, start=1):
        model.mu.data.fill_(value)
        average.update()
        share = max(1 - 0.9, 10 / (step + 9))  # the first step replaces the initial weights
        expected += share * (value - expected)
        assert average.values[0].item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(5.0, abs=1e-6)  # forgets the early steps
    model.mu.data.fill_(7.0)
    with pytest.raises(RuntimeError), average.applied():
        assert model.mu.item() == pytest.approx(expected)
        raise RuntimeError  # the trained weights come back even so
    assert model.mu.item() == 7.0


def test_training_keeps_the_average_not_the_last_step():
    # constant rate, no validation: the model ends with the weight average, which is
    # smoother than the last step (its distance to the optimum is smaller here)
    def fit(decay):
        model = Gaussian()
        config = TrainingConfig(max_iter=40, batch_size=4, learning_rate=0.3,
                                n_iter_no_change=100, schedule="constant", ema_decay=decay)
        train(model, _data(64), None, config, torch.Generator().manual_seed(1),
              torch.device("cpu"))
        return model.mu.item()

    optimum = _data(64)[0].mean().item()
    last, averaged = fit(0.0), fit(0.99)
    assert last != averaged
    assert abs(averaged - optimum) < 0.5 * abs(last - optimum)


def test_validation_judges_and_keeps_the_average():
    model = Gaussian()
    config = TrainingConfig(max_iter=30, batch_size=8, learning_rate=0.3, n_iter_no_change=5,
                            schedule="constant", ema_decay=0.95)
    validation = _data(64)
    history = train(model, _data(128), validation, config, torch.Generator().manual_seed(1),
                    torch.device("cpu"))
    # the restored weights are those whose validation score was the best one
    kept = model.log_prob(*validation).mean().item()
    assert kept == pytest.approx(history.best_score, abs=1e-6)


class Regression(nn.Module):
    """log N(theta; f(x), 1) with a small MLP f: parameter tensors of several shapes."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.f = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))

    def log_prob(self, theta, x):
        return -0.5 * ((theta - self.f(x)) ** 2).sum(-1)


def _regression_run(monkeypatch, flatten: bool, resume=None, snapshots=None):
    if not flatten:
        monkeypatch.setattr(training.FlatParameters, "of", lambda params: None)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 1, generator=gen)
    data = (x.sin() + 0.1 * torch.randn(256, 1, generator=gen), x)
    model = Regression()
    if resume is not None:
        model.load_state_dict(resume["model"])
    config = TrainingConfig(max_iter=12, batch_size=32, learning_rate=0.01)
    history = train(model, data, None, config, torch.Generator().manual_seed(1),
                    torch.device("cpu"), resume=resume,
                    checkpoint=None if snapshots is None else snapshots.append)
    monkeypatch.undo()
    return model, history


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_flattened_parameters_train_bit_for_bit_as_separate_ones(monkeypatch):
    """Training holds the parameters as views of one tensor (one Adam, clipping and
    zeroing operation per step); the weights and losses are exactly those of per-tensor
    updates, and afterwards every parameter has its own storage and no gradient."""
    flat, flat_history = _regression_run(monkeypatch, flatten=True)
    separate, separate_history = _regression_run(monkeypatch, flatten=False)
    assert flat_history.loss_curve == separate_history.loss_curve
    assert flat_history.loss_curve[-1] < 0.6 * flat_history.loss_curve[0]  # it learns
    assert _same_weights(flat, separate)
    for p in flat.parameters():
        assert p.grad is None
        assert p.untyped_storage().nbytes() == p.numel() * p.element_size()


@pytest.mark.parametrize("first, then", [(True, False), (False, True)])
def test_checkpoints_resume_whether_or_not_parameters_are_flattened(monkeypatch, first, then):
    """Checkpoints keep the optimiser state per parameter tensor: one written by a
    flattened training resumes per tensor and the other way round, to the same weights
    as an uninterrupted run."""
    snapshots = []
    straight, _ = _regression_run(monkeypatch, flatten=first, snapshots=snapshots)
    state = snapshots[4]["optimizer"]
    assert len(state["state"]) == len(list(straight.parameters()))
    resumed, history = _regression_run(monkeypatch, flatten=then, resume=snapshots[4])
    assert history.n_iter == 12
    assert _same_weights(resumed, straight)


def test_parameters_of_several_dtypes_are_not_flattened():
    params = [nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(2, dtype=torch.float64))]
    assert training.FlatParameters.of(params) is None
    assert training.FlatParameters.of([]) is None
