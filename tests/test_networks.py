"""Invertibility, log-determinants, gradients and serialisation of the networks."""

from __future__ import annotations

import io
import pickle

import pytest
import torch

from skcinn.networks import spline as spline_module
from skcinn.networks.coupling import (
    CouplingBlock,
    InvertibleNetwork,
    Permutation,
    make_transform,
)
from skcinn.networks.latent import standard_normal_log_prob
from skcinn.networks.posterior import PosteriorNetwork
from skcinn.networks.spline import rational_quadratic_spline
from skcinn.networks.summary import DeepSet

HIDDEN = (16, 16)
COUPLINGS = ("affine", "spline")


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """Tiny tensors: one intra-op thread avoids OpenMP spin-waiting when cores are busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _perturb(module: torch.nn.Module, seed: int = 0, std: float = 0.3) -> torch.nn.Module:
    """Move every parameter off its (partly zero) initialisation."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            torch.nn.init.normal_(p, std=std)
    return module


def _flow(features: int, context: int, coupling: str, perturb: bool = True, **kw):
    net = InvertibleNetwork(features, context, n_blocks=3, coupling=coupling, hidden=HIDDEN,
                            seed=0, **kw)
    if perturb:
        _perturb(net)
    return net.double()


def _inputs(n: int, features: int, context: int, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    # values up to about +-6: spline tails outside the bound 5 are exercised as well
    theta = (torch.rand(n, features, generator=gen, dtype=torch.float64) * 12 - 6)
    c = torch.randn(n, context, generator=gen, dtype=torch.float64) if context else None
    return theta, c


# ---------------------------------------------------------------------------
# invertibility and log-determinants of the whole chain

@pytest.mark.parametrize("context", [0, 3])
@pytest.mark.parametrize("features", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("coupling", COUPLINGS)
def test_flow_round_trip_and_log_det(coupling, features, context):
    net = _flow(features, context, coupling)
    theta, c = _inputs(24, features, context)
    assert theta.abs().max() > 5.0  # the tails are really reached

    z, ladj = net(theta, c)
    assert z.shape == theta.shape and ladj.shape == (24,)
    assert torch.isfinite(z).all() and torch.isfinite(ladj).all()
    # the perturbed flow is not the identity (otherwise the checks below prove nothing)
    assert (z - theta).abs().max() > 1e-2

    back, ladj_inv = net.inverse(z, c)
    torch.testing.assert_close(back, theta, atol=1e-5, rtol=0)
    torch.testing.assert_close(ladj + ladj_inv, torch.zeros_like(ladj), atol=1e-5, rtol=0)

    def f(t):
        return net(t, c)[0].sum(0)

    jac = torch.autograd.functional.jacobian(f, theta)  # (d, n, d): dz_i / dtheta_{b, j}
    jac = jac.permute(1, 0, 2)  # (n, d, d), rows are independent
    sign, logabs = torch.linalg.slogdet(jac)
    assert (sign != 0).all()
    torch.testing.assert_close(ladj, logabs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("coupling", COUPLINGS)
def test_flow_log_prob_is_normal_log_prob_plus_ladj(coupling):
    net = _flow(3, 2, coupling)
    theta, c = _inputs(10, 3, 2)
    z, ladj = net(theta, c)
    expected = -0.5 * (z**2).sum(-1) - 1.5 * torch.log(torch.tensor(2 * torch.pi,
                                                                    dtype=torch.float64))
    torch.testing.assert_close(net.log_prob(theta, c), expected + ladj, atol=1e-10, rtol=0)
    torch.testing.assert_close(standard_normal_log_prob(z), expected, atol=1e-12, rtol=0)


# ---------------------------------------------------------------------------
# identity at initialisation

def _chain_permutation(net: InvertibleNetwork, features: int) -> torch.Tensor:
    idx = torch.arange(features)
    for layer in net.layers:
        if isinstance(layer, Permutation):
            idx = idx[layer.perm]
    return idx


@pytest.mark.parametrize("features", [1, 3])
def test_affine_coupling_blocks_are_identity_at_init(features):
    net = _flow(features, 3, "affine", perturb=False)
    theta, c = _inputs(16, features, 3)
    for layer in net.layers:
        if isinstance(layer, CouplingBlock):
            v, ladj = layer(theta, c)
            assert torch.equal(v, theta)
            assert torch.equal(ladj, torch.zeros(16, dtype=torch.float64))
    # the whole chain is then its permutations only: z is a reordering of theta
    z, ladj = net(theta, c)
    assert torch.equal(z, theta[..., _chain_permutation(net, features)])
    assert torch.equal(ladj, torch.zeros(16, dtype=torch.float64))
    torch.testing.assert_close(net.log_prob(theta, c), standard_normal_log_prob(theta),
                               atol=1e-12, rtol=0)


@pytest.mark.parametrize("features", [1, 3])
def test_spline_coupling_blocks_are_identity_at_init(features):
    net = _flow(features, 3, "spline", perturb=False)
    theta, c = _inputs(64, features, 3)
    for layer in net.layers:
        if isinstance(layer, CouplingBlock):
            v, ladj = layer(theta, c)
            torch.testing.assert_close(v, theta, atol=1e-5, rtol=0)
            torch.testing.assert_close(ladj, torch.zeros_like(ladj), atol=1e-5, rtol=0)
    z, ladj = net(theta, c)
    torch.testing.assert_close(z, theta[..., _chain_permutation(net, features)],
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(ladj, torch.zeros_like(ladj), atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------
# the spline on its own

def _spline_params(n: int, d: int, bins: int, seed: int, scale: float = 2.0):
    gen = torch.Generator().manual_seed(seed)
    row = torch.randn(d, 3 * bins - 1, generator=gen, dtype=torch.float64) * scale
    return row.expand(n, d, 3 * bins - 1).contiguous()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spline_monotone_and_invertible(seed):
    bins, bound = 8, 5.0
    x = torch.linspace(-7, 7, 2001, dtype=torch.float64).unsqueeze(-1)
    params = _spline_params(len(x), 1, bins, seed)
    y, ladj = rational_quadratic_spline(x, params, bound)
    assert torch.isfinite(y).all() and torch.isfinite(ladj).all()
    assert (torch.diff(y[:, 0]) > 0).all()
    # not the identity inside the bound for these random parameters
    assert (y - x).abs().max() > 1e-2
    # derivative from the ladj matches finite differences of the forward map
    h = 1e-6
    y_plus, _ = rational_quadratic_spline(x + h, params, bound)
    y_minus, _ = rational_quadratic_spline(x - h, params, bound)
    fd = ((y_plus - y_minus) / (2 * h))[:, 0]
    inner = (x[:, 0].abs() < bound - 1e-3)
    torch.testing.assert_close(ladj[inner], torch.log(fd[inner]), atol=1e-4, rtol=0)
    back, ladj_inv = rational_quadratic_spline(y, params, bound, inverse=True)
    torch.testing.assert_close(back, x, atol=1e-9, rtol=0)
    torch.testing.assert_close(ladj + ladj_inv, torch.zeros_like(ladj), atol=1e-9, rtol=0)
    # without the log-determinant: the same map, nothing else computed
    for inverse, inp, out in ((False, x, y), (True, y, back)):
        only, none = rational_quadratic_spline(inp, params, bound, inverse, log_det=False)
        assert none is None and torch.equal(only, out)


@pytest.mark.parametrize("inverse", [False, True])
def test_spline_identity_outside_bound_and_continuous(inverse):
    bins, bound = 6, 5.0
    outside = torch.cat([torch.linspace(-20, -5, 50, dtype=torch.float64),
                         torch.linspace(5, 20, 50, dtype=torch.float64)]).unsqueeze(-1)
    params = _spline_params(len(outside), 1, bins, seed=3)
    y, ladj = rational_quadratic_spline(outside, params, bound, inverse)
    assert torch.equal(y, outside)
    assert torch.equal(ladj, torch.zeros(len(outside), dtype=torch.float64))

    eps = 1e-9
    near = torch.tensor([[-bound - eps], [-bound + eps], [bound - eps], [bound + eps]],
                        dtype=torch.float64)
    params = _spline_params(4, 1, bins, seed=3)
    y, ladj = rational_quadratic_spline(near, params, bound, inverse)
    torch.testing.assert_close(y, near, atol=1e-7, rtol=0)
    # derivative 1 at both ends: log-derivative continuous at the bounds too
    torch.testing.assert_close(ladj, torch.zeros(4, dtype=torch.float64), atol=1e-6, rtol=0)


def test_spline_several_features_sum_ladj():
    bins = 5
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(30, 3, generator=gen, dtype=torch.float64) * 3
    params = torch.randn(30, 3, 3 * bins - 1, generator=gen, dtype=torch.float64)
    y, ladj = rational_quadratic_spline(x, params)
    parts = [rational_quadratic_spline(x[:, i:i + 1], params[:, i:i + 1])[1] for i in range(3)]
    torch.testing.assert_close(ladj, sum(parts), atol=1e-12, rtol=0)
    for i in range(3):
        yi, _ = rational_quadratic_spline(x[:, i:i + 1], params[:, i:i + 1])
        torch.testing.assert_close(y[:, i:i + 1], yi, atol=1e-12, rtol=0)


@pytest.mark.parametrize("bins", [2, 5, 8])
def test_spline_hand_made_gradient_matches_autograd(bins):
    """Training differentiates the forward spline by hand; it must give autograd's
    gradient of the same formula, for x and every parameter, inside the bound and out."""
    gen = torch.Generator().manual_seed(bins)
    x = torch.randn(400, 3, generator=gen, dtype=torch.float64) * 3  # ~10 % outside
    x[:4, 0] = torch.tensor([-5.0, 5.0, -4.999, 4.999], dtype=torch.float64)
    params = torch.randn(400, 3, 3 * bins - 1, generator=gen, dtype=torch.float64) * 2
    g_y = torch.randn(400, 3, generator=gen, dtype=torch.float64)
    g_ladj = torch.randn(400, generator=gen, dtype=torch.float64)

    def gradients(spline):
        xs, ps = x.clone().requires_grad_(), params.clone().requires_grad_()
        y, ladj = spline(xs, ps)
        return (y, ladj, *torch.autograd.grad((y * g_y).sum() + (ladj * g_ladj).sum(),
                                              (xs, ps)))

    hand = gradients(lambda xs, ps: rational_quadratic_spline(xs, ps))
    auto = gradients(lambda xs, ps: spline_module._spline(xs, ps, 5.0, False, True)[:2])
    assert hand[0].grad_fn.name().startswith("_ForwardSpline")
    for a, b in zip(hand, auto, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
    assert (hand[3] != 0).any(dim=-1).float().mean() > 0.8  # the parameters get gradient
    # and both agree with finite differences, away from the bound (where ladj has a kink)
    xs = x[4:14, :2].clone().requires_grad_()
    ps = params[4:14, :2].clone().requires_grad_()
    assert torch.autograd.gradcheck(rational_quadratic_spline, (xs, ps))


# ---------------------------------------------------------------------------
# gradients

def _posterior(n_params: int, coupling: str, in_features: int = 2) -> PosteriorNetwork:
    summary = DeepSet(in_features, summary_dim=4, hidden=HIDDEN)
    flow = InvertibleNetwork(n_params, summary.out_features, n_blocks=3, coupling=coupling,
                             hidden=HIDDEN, seed=0)
    return _perturb(PosteriorNetwork(flow, summary), seed=5).double()


@pytest.mark.parametrize("n_params", [1, 3])
@pytest.mark.parametrize("coupling", COUPLINGS)
def test_gradients_reach_every_weight(coupling, n_params):
    net = _posterior(n_params, coupling)
    gen = torch.Generator().manual_seed(6)
    batch, n_obs = 64, 9
    theta = torch.randn(batch, n_params, generator=gen, dtype=torch.float64) * 2
    x = torch.randn(batch, n_obs, 2, generator=gen, dtype=torch.float64)
    lengths = torch.randint(1, n_obs + 1, (batch,), generator=gen)
    mask = torch.arange(n_obs) < lengths[:, None]
    loss = -net.log_prob(theta, x, mask).mean()
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    params = dict(net.named_parameters())
    assert any(name.startswith("summary.") for name in params)
    assert any(name.startswith("flow.") for name in params)
    for name, p in params.items():
        assert p.requires_grad
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


# ---------------------------------------------------------------------------
# broadcasting of the context over draws

@pytest.mark.parametrize("features", [1, 3])
@pytest.mark.parametrize("coupling", COUPLINGS)
def test_context_broadcasts_over_draws(coupling, features):
    n, s, k = 4, 6, 3
    net = _flow(features, k, coupling)
    gen = torch.Generator().manual_seed(7)
    z = torch.randn(n, s, features, generator=gen, dtype=torch.float64) * 2
    c = torch.randn(n, k, generator=gen, dtype=torch.float64)

    theta, ladj = net.inverse(z, c.unsqueeze(1))
    assert theta.shape == (n, s, features) and ladj.shape == (n, s)
    flat_theta, flat_ladj = net.inverse(z.reshape(n * s, features),
                                        c.repeat_interleave(s, dim=0))
    torch.testing.assert_close(theta.reshape(n * s, features), flat_theta, atol=1e-6, rtol=0)
    torch.testing.assert_close(ladj.reshape(n * s), flat_ladj, atol=1e-6, rtol=0)
    # and the conditions really matter: another context gives other draws
    other, _ = net.inverse(z, (c + 1.0).unsqueeze(1))
    assert (other - theta).abs().max() > 1e-3

    post = PosteriorNetwork(net)
    draws, logq = post.sample(z, c)
    torch.testing.assert_close(draws, theta, atol=0, rtol=0)
    # draws without their densities are the same draws
    assert torch.equal(post.draw(z, c), theta)
    torch.testing.assert_close(logq, standard_normal_log_prob(z) - ladj, atol=1e-12, rtol=0)
    # the density of a draw equals the forward log-density of the drawn parameters
    fwd = net.log_prob(flat_theta, c.repeat_interleave(s, dim=0))
    torch.testing.assert_close(logq.reshape(n * s), fwd, atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------
# permutations

@pytest.mark.parametrize("features", [1, 2, 5, 9])
def test_permutation_round_trip(features):
    gen = torch.Generator().manual_seed(8)
    perm = Permutation(features, gen)
    assert sorted(perm.perm.tolist()) == list(range(features))
    assert torch.equal(perm.perm[perm.inv], torch.arange(features))
    u = torch.randn(5, 2, features, dtype=torch.float64)
    v, ladj = perm(u)
    assert torch.equal(v, u[..., perm.perm])
    assert ladj is None  # volume-preserving: nothing for the chain to add
    back, ladj_inv = perm.inverse(v)
    assert torch.equal(back, u)
    assert ladj_inv is None
    assert "perm" in perm.state_dict() and "inv" in perm.state_dict()


def test_permutations_fixed_by_seed():
    a = InvertibleNetwork(6, 2, n_blocks=4, hidden=HIDDEN, seed=11)
    b = InvertibleNetwork(6, 2, n_blocks=4, hidden=HIDDEN, seed=11)
    c = InvertibleNetwork(6, 2, n_blocks=4, hidden=HIDDEN, seed=12)
    perms = [[m.perm.tolist() for m in net.layers if isinstance(m, Permutation)]
             for net in (a, b, c)]
    assert len(perms[0]) == 4
    assert perms[0] == perms[1]
    assert perms[0] != perms[2]


# ---------------------------------------------------------------------------
# serialisation

@pytest.mark.parametrize("coupling", COUPLINGS)
def test_pickle_and_state_dict(coupling):
    net = _flow(3, 2, coupling)
    theta, c = _inputs(12, 3, 2)
    z, ladj = net(theta, c)

    clone = pickle.loads(pickle.dumps(net))
    z2, ladj2 = clone(theta, c)
    assert torch.equal(z, z2) and torch.equal(ladj, ladj2)
    back, _ = clone.inverse(z, c)
    torch.testing.assert_close(back, theta, atol=1e-5, rtol=0)

    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    buffer.seek(0)
    fresh = InvertibleNetwork(3, 2, n_blocks=3, coupling=coupling, hidden=HIDDEN,
                              seed=0).double()
    z_fresh, _ = fresh(theta, c)
    assert not torch.allclose(z_fresh, z)  # a fresh network differs before loading
    fresh.load_state_dict(torch.load(buffer))
    z3, ladj3 = fresh(theta, c)
    assert torch.equal(z, z3) and torch.equal(ladj, ladj3)


def test_make_transform():
    assert make_transform("affine").n_params == 2
    assert make_transform("spline", bins=5).n_params == 14
    with pytest.raises(ValueError, match="bogus"):
        make_transform("bogus")
    with pytest.raises(ValueError):
        InvertibleNetwork(2, 1, n_blocks=1, coupling="bogus", hidden=HIDDEN)
