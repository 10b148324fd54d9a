"""Our Adam and learning-rate schedule against torch.optim's, and what they spare a fit."""

import subprocess
import sys
import textwrap

import pytest
import torch

from skcinn._optim import Adam, LambdaSchedule


def _params(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(5, 3, generator=gen).requires_grad_(),
            torch.randn(7, generator=gen).requires_grad_()]


def _run(optimizer, params, steps, seed=1, rates=None):
    """``steps`` updates with seeded gradients (and the rate changed at some steps)."""
    gen = torch.Generator().manual_seed(seed)
    for t in range(steps):
        if rates is not None:
            optimizer.param_groups[0]["lr"] = rates[t % len(rates)]
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype)
        optimizer.step()


def test_adam_is_torch_fused_adam_bit_for_bit():
    ours, theirs, initial = _params(), _params(), _params()
    rates = [1e-2, 3e-3, 1e-3]
    _run(Adam(ours, 1e-2), ours, 25, rates=rates)
    _run(torch.optim.Adam(theirs, lr=1e-2, fused=True), theirs, 25, rates=rates)
    for a, b, start in zip(ours, theirs, initial, strict=True):
        assert torch.equal(a, b)
        assert not torch.equal(a, start)  # moved


def test_adam_updates_parameters_of_several_dtypes_as_torch_does():
    """A user's summary network may hold float64 weights beside float32 ones (then they
    are not flattened): each kind gets its own kernel call, as in torch."""
    def mixed():
        first, second = _params()
        return [first, second.detach().double().requires_grad_()]

    ours, theirs = mixed(), mixed()
    _run(Adam(ours, 1e-2), ours, 10)
    _run(torch.optim.Adam(theirs, lr=1e-2, fused=True), theirs, 10)
    for a, b in zip(ours, theirs, strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)


def test_adam_resumes_torch_adam_state_and_writes_its_format():
    """A state written by torch.optim.Adam (checkpoints of earlier versions) continues
    to the same weights; ours has the same keys and values."""
    straight, resumed = _params(), _params()
    reference = torch.optim.Adam(straight, lr=5e-3, fused=True)
    _run(reference, straight, 10)
    saved = reference.state_dict()
    with torch.no_grad():
        for p, q in zip(resumed, straight, strict=True):
            p.copy_(q)
    ours = Adam(resumed, 1.0)
    ours.load_state_dict(saved)
    assert ours.param_groups[0]["lr"] == 5e-3
    mine = ours.state_dict()
    assert mine["param_groups"][0]["params"] == [0, 1]
    for i in (0, 1):
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(mine["state"][i][key], saved["state"][i][key])
    _run(reference, straight, 10, seed=2)
    _run(ours, resumed, 10, seed=2)
    for a, b in zip(resumed, straight, strict=True):
        assert torch.equal(a, b)


def test_adam_state_of_another_size_is_refused():
    ours = Adam(_params(), 1e-3)
    other = torch.optim.Adam([torch.zeros(2, requires_grad=True)], lr=1e-3).state_dict()
    with pytest.raises(ValueError, match="holds 1 parameters; this training has 2"):
        ours.load_state_dict(other)


def test_adam_without_the_fused_kernel_follows_the_same_rule():
    ours, theirs = _params(), _params()
    plain = Adam(ours, 1e-2)
    plain.fused = False
    _run(plain, ours, 25)
    _run(torch.optim.Adam(theirs, lr=1e-2, foreach=False), theirs, 25)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_adam_skips_parameters_without_gradient_and_zeroes_in_place():
    params = _params()
    before = params[1].detach().clone()
    adam = Adam(params, 1e-2)
    params[0].grad = torch.ones(5, 3)
    adam.step()
    assert torch.equal(params[1], before) and 1 not in adam.state
    grad = params[0].grad
    adam.zero_grad(set_to_none=False)
    assert params[0].grad is grad and not grad.any()
    adam.zero_grad()
    assert params[0].grad is None


def test_lambda_schedule_sets_the_rates_lambdalr_would():
    factor = lambda t: 0.5 ** (t // 3)  # noqa: E731
    ours_opt = Adam(_params(), 0.1)
    theirs_opt = torch.optim.SGD(_params(), lr=0.1)
    ours = LambdaSchedule(ours_opt, factor)
    theirs = torch.optim.lr_scheduler.LambdaLR(theirs_opt, factor)
    for _ in range(10):
        assert ours_opt.param_groups[0]["lr"] == theirs_opt.param_groups[0]["lr"]
        theirs_opt.step()
        ours.step()
        theirs.step()
    resumed = LambdaSchedule(Adam(_params(), 0.1), factor)
    resumed.load_state_dict(theirs.state_dict())  # an earlier version's checkpoint
    assert resumed.last_epoch == ours.last_epoch == 10
    assert resumed.state_dict() == ours.state_dict()


def test_fit_and_draws_do_not_import_the_compiler():
    """torch.optim imports torch._dynamo on first use, 1.5-2.5 CPU s once per process;
    a fit (without compile=True) and its draws never do."""
    script = textwrap.dedent("""
        import sys
        import numpy as np
        from skcinn import CINNPosteriorEstimator
        rng = np.random.default_rng(0)
        theta = rng.normal(size=(300, 2))
        x = theta + 0.1 * rng.normal(size=(300, 2))
        est = CINNPosteriorEstimator(max_iter=2, hidden_layer_sizes=(8,),
                                     n_coupling_blocks=2, random_state=0).fit(x, theta)
        est.sample_posterior(x[:3], n_samples=10, random_state=0)
        print("torch._dynamo" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
