"""The DeepSet summary, padding of ragged data sets, and the parameter transforms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from skcinn.data import check_finite, check_ragged, count_nonfinite, pad
from skcinn.networks.summary import DeepSet, make_summary_network
from skcinn.transforms import (
    ParameterTransform,
    feature_moments,
    fit_parameter_transform,
)

HIDDEN = (16, 16)


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """Tiny tensors: one intra-op thread avoids OpenMP spin-waiting when cores are busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _deepset(in_features: int = 3, summary_dim: int = 5, seed: int = 0) -> DeepSet:
    net = DeepSet(in_features, summary_dim, HIDDEN)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            torch.nn.init.normal_(p, std=0.3)
    return net.double()


def _ragged_batch(lengths, n_features=3, seed=0, fill=0.0):
    gen = torch.Generator().manual_seed(seed)
    n_max = max(lengths)
    x = torch.randn(len(lengths), n_max, n_features, generator=gen, dtype=torch.float64)
    mask = torch.arange(n_max) < torch.tensor(lengths)[:, None]
    x = torch.where(mask[..., None], x, torch.full_like(x, fill))
    return x, mask


# ---------------------------------------------------------------------------
# DeepSet

def test_deepset_shape_and_log_size_column():
    net = _deepset(summary_dim=5)
    lengths = [7, 20, 1, 13]
    x, mask = _ragged_batch(lengths)
    out = net(x, mask)
    assert out.shape == (4, 6) and net.out_features == 6
    torch.testing.assert_close(out[:, -1], torch.log(torch.tensor(lengths, dtype=torch.float64)),
                               atol=1e-12, rtol=0)
    full = net(x)  # without a mask every one of the 20 positions counts
    torch.testing.assert_close(full[:, -1], torch.full((4,), math.log(20), dtype=torch.float64),
                               atol=1e-12, rtol=0)


def test_deepset_permutation_invariant():
    net = _deepset()
    x, mask = _ragged_batch([7, 20, 3, 12], seed=1)
    out = net(x, mask)
    gen = torch.Generator().manual_seed(2)
    perm = torch.stack([torch.randperm(20, generator=gen) for _ in range(4)])
    rows = torch.arange(4)[:, None]
    x_p, mask_p = x[rows, perm], mask[rows, perm]
    assert not torch.equal(mask_p, mask)  # padding now sits between real members
    torch.testing.assert_close(net(x_p, mask_p), out, atol=1e-5, rtol=0)
    # without padding too
    torch.testing.assert_close(net(x[1:2, perm[1]]), net(x[1:2]), atol=1e-5, rtol=0)
    # but the members themselves matter
    changed = x.clone()
    changed[0, 0] += 1.0
    assert (net(changed, mask)[0] - out[0]).abs().max() > 1e-4


def test_deepset_padding_does_not_change_a_set():
    net = _deepset()
    x, mask = _ragged_batch([7, 20, 15], seed=3)
    alone = net(x[:1, :7])  # the 7-member set alone, no mask
    batched = net(x, mask)
    torch.testing.assert_close(batched[:1], alone, atol=1e-5, rtol=0)
    # garbage in the padded positions changes nothing
    garbage, _ = _ragged_batch([7, 20, 15], seed=3, fill=1e6)
    assert garbage[0, 10, 0] == 1e6
    torch.testing.assert_close(net(garbage, mask), batched, atol=1e-5, rtol=0)
    # an all-true mask is the same as no mask
    torch.testing.assert_close(net(x[1:2], mask[1:2]), net(x[1:2]), atol=1e-10, rtol=0)


def test_make_summary_network():
    assert make_summary_network(None, 3, 4, HIDDEN) is None
    net = make_summary_network("deepset", 3, 4, HIDDEN)
    assert isinstance(net, DeepSet) and net.out_features == 5
    with pytest.raises(ValueError, match="transformer"):
        make_summary_network("transformer", 3, 4, HIDDEN)


# ---------------------------------------------------------------------------
# padding and validation of ragged data sets

def test_pad_ragged_list():
    rng = np.random.default_rng(0)
    sets = [rng.normal(size=(n, 2)) for n in (3, 1, 5)]
    data = pad(sets)
    assert data.values.shape == (3, 5, 2)
    assert data.mask.shape == (3, 5) and data.mask.dtype == bool
    expected_mask = np.array([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=bool)
    np.testing.assert_array_equal(data.mask, expected_mask)
    for i, s in enumerate(sets):
        np.testing.assert_array_equal(data.values[i, : len(s)], s)
        np.testing.assert_array_equal(data.values[i, len(s):], 0.0)
    assert len(data) == 3 and data.rank == 3
    sub = data.take(np.array([2, 0]))
    np.testing.assert_array_equal(sub.values[1, :3], sets[0])
    np.testing.assert_array_equal(sub.mask, expected_mask[[2, 0]])


def test_check_ragged_errors_name_the_data_set():
    good = np.ones((4, 3))
    out = check_ragged([good, [[1.0, 2.0, 3.0]]])
    assert [a.shape for a in out] == [(4, 3), (1, 3)]
    assert all(a.dtype == np.float64 for a in out)
    with pytest.raises(ValueError, match=r"Data set 2 has 2 features"):
        check_ragged([good, good, np.ones((5, 2))])
    with pytest.raises(ValueError, match=r"Data set 1 is empty"):
        check_ragged([good, np.zeros((0, 3))])
    with pytest.raises(ValueError, match=r"Data set 1 has shape \(3,\)"):
        check_ragged([good, np.ones(3)])
    with pytest.raises(ValueError, match=r"Data set 0 has 3 features.*has 4"):
        check_ragged([good], n_features=4)


def test_check_finite_names_the_count():
    values = np.zeros((5, 4, 2))
    values[1, 0, 0] = np.nan
    values[3, 2, 1] = np.inf
    with pytest.raises(ValueError, match=r"in 2 of 5 data sets \(first at index 1\)"):
        check_finite(values, None, "X", "data sets")
    # non-finite values in padded positions are ignored
    mask = np.ones((5, 4), dtype=bool)
    mask[3, 2] = False
    np.testing.assert_array_equal(count_nonfinite(values, mask), [1])
    with pytest.raises(ValueError, match=r"in 1 of 5"):
        check_finite(values, mask, "X", "data sets")
    values[1, 0, 0] = 0.0
    check_finite(values, mask, "X", "data sets")  # nothing left: no error
    assert len(count_nonfinite(values, mask)) == 0


# ---------------------------------------------------------------------------
# parameter transforms

LOWER = np.array([-np.inf, 0.0, -2.0, 0.0, -np.inf])
UPPER = np.array([np.inf, 1.0, 3.0, np.inf, 1.0])


def _theta(n: int = 500, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([
        rng.normal(2.0, 3.0, n),
        rng.beta(2.0, 3.0, n),
        rng.uniform(-2.0, 3.0, n),
        rng.gamma(2.0, 1.5, n),
        1.0 - rng.exponential(0.7, n),
    ])


def test_transform_round_trip_and_standardisation():
    theta = _theta()
    tr = fit_parameter_transform(theta, LOWER, UPPER)
    assert isinstance(tr, ParameterTransform)
    t = torch.as_tensor(theta, dtype=torch.float64)
    u, ladj = tr(t)
    assert u.shape == (500, 5) and ladj.shape == (500,)
    assert torch.isfinite(u).all() and torch.isfinite(ladj).all()
    np.testing.assert_allclose(u.mean(0).numpy(), 0.0, atol=1e-10)
    np.testing.assert_allclose(u.std(0, unbiased=False).numpy(), 1.0, atol=1e-10)
    back = tr.inverse(u)
    torch.testing.assert_close(back, t, atol=1e-8, rtol=1e-8)


def test_transform_log_det_matches_autograd():
    theta = _theta()
    tr = fit_parameter_transform(theta, LOWER, UPPER)
    t = torch.as_tensor(theta[:40], dtype=torch.float64)
    _, ladj = tr(t)
    # the map is elementwise: the Jacobian is diagonal, d u_j / d theta_j per entry
    t_req = t.clone().requires_grad_(True)
    u, _ = tr(t_req)
    (diag,) = torch.autograd.grad(u.sum(), t_req)
    jac = torch.autograd.functional.jacobian(lambda s: tr(s)[0].sum(0), t)  # (d, n, d)
    jac = jac.permute(1, 0, 2)
    off = jac - torch.diag_embed(torch.diagonal(jac, dim1=1, dim2=2))
    assert off.abs().max() == 0
    torch.testing.assert_close(torch.diagonal(jac, dim1=1, dim2=2), diag, atol=1e-12, rtol=0)
    assert (diag > 0).all()
    torch.testing.assert_close(ladj, torch.log(diag).sum(-1), atol=1e-8, rtol=0)


def test_transform_inverse_of_extremes_stays_inside():
    tr = fit_parameter_transform(_theta(), LOWER, UPPER)
    lower = torch.as_tensor(LOWER)
    upper = torch.as_tensor(UPPER)
    for value in (-1e3, 1e3):
        theta = tr.inverse(torch.full((3, 5), value, dtype=torch.float64))
        assert torch.isfinite(theta).all(), (value, theta)
        assert (theta > lower).all(), (value, theta)
        assert (theta < upper).all(), (value, theta)
    # moderate values still round-trip after the clamping safeguard
    u = torch.linspace(-4, 4, 9, dtype=torch.float64)[:, None].expand(9, 5)
    torch.testing.assert_close(tr(tr.inverse(u))[0], u, atol=1e-8, rtol=0)


def test_transform_outside_support_gives_minus_inf_for_that_row():
    tr = fit_parameter_transform(_theta(), LOWER, UPPER)
    theta = torch.as_tensor(_theta(4, seed=1), dtype=torch.float64).clone()
    theta[1, 1] = -0.1  # below the (0, 1) interval
    theta[3, 4] = 1.5  # above the upper bound 1
    u, ladj = tr(theta)
    assert ladj[1] == -math.inf and ladj[3] == -math.inf
    assert torch.isfinite(ladj[[0, 2]]).all()
    assert torch.isfinite(u).all()
    # exactly on a bound is outside the open support as well
    theta = torch.as_tensor(_theta(2, seed=2), dtype=torch.float64).clone()
    theta[0, 3] = 0.0
    _, ladj = tr(theta)
    assert ladj[0] == -math.inf and torch.isfinite(ladj[1])


def test_transform_constant_column_and_float32():
    theta = _theta(100)
    theta[:, 0] = 4.0  # a constant unbounded column: std 1, nothing to scale
    tr = fit_parameter_transform(theta, LOWER, UPPER)
    assert tr.std[0] == 1.0
    u, _ = tr(torch.as_tensor(theta[:5], dtype=torch.float32))
    assert u.dtype == torch.float32
    np.testing.assert_allclose(u[:, 0].numpy(), 0.0, atol=1e-6)


def test_feature_moments_ignores_padding():
    rng = np.random.default_rng(0)
    sets = [rng.normal(loc=3.0, scale=2.0, size=(n, 2)) for n in (4, 1, 6)]
    data = pad(sets)
    data.values[~data.mask] = 1e6  # garbage in the padded positions
    mean, std = feature_moments(data.values, data.mask)
    flat = np.concatenate(sets)
    np.testing.assert_allclose(mean, flat.mean(0), rtol=1e-12)
    np.testing.assert_allclose(std, flat.std(0), rtol=1e-12)
    # without a mask the padding is counted (so the mask really matters)
    mean_all, _ = feature_moments(data.values, None)
    assert (mean_all > 1e5).all()
    # flat features and constant columns
    flat_x = np.column_stack([rng.normal(size=10), np.full(10, 7.0)])
    m, s = feature_moments(flat_x, None)
    np.testing.assert_allclose(m, flat_x.mean(0))
    assert s[1] == 1.0 and s[0] == pytest.approx(flat_x[:, 0].std())
