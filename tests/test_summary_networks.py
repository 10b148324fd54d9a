"""Every summary network: shapes, gradients, pickling, padding, symmetry and order."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from skcinn.networks.attention import SetTransformer
from skcinn.networks.grid import ConvSummary2D
from skcinn.networks.sequence import RecurrentSummary, TemporalConvSummary
from skcinn.networks.summary import SUMMARY_NETWORKS, make_summary_network

HIDDEN = (8, 12)  # two different widths: projections between blocks are exercised too
N_FEATURES = 3
SUMMARY_DIM = 4
SETS = ("deepset", "set_transformer")
SERIES = ("gru", "lstm", "bigru", "bilstm", "tcn")
RAGGED = SETS + SERIES
LENGTHS = [7, 20, 1, 15]


def _net(kind: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    in_features = 2 if kind == "cnn" else N_FEATURES
    return make_summary_network(kind, in_features, SUMMARY_DIM, HIDDEN).double()


def _ragged_batch(lengths=LENGTHS, seed: int = 0, fill: float = 0.0):
    gen = torch.Generator().manual_seed(seed)
    n_max = max(lengths)
    x = torch.randn(len(lengths), n_max, N_FEATURES, generator=gen, dtype=torch.float64)
    mask = torch.arange(n_max) < torch.tensor(lengths)[:, None]
    x = torch.where(mask[..., None], x, torch.full_like(x, fill))
    return x, mask


def _images(n: int = 5, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, 12, 12, generator=gen, dtype=torch.float64)


def _inputs(kind: str, seed: int = 0):
    return (_images(seed=seed), None) if kind == "cnn" else _ragged_batch(seed=seed)


def test_names_and_classes():
    assert SUMMARY_NETWORKS == (
        "deepset", "set_transformer", "gru", "lstm", "bigru", "bilstm", "tcn", "cnn",
    )
    assert isinstance(_net("set_transformer"), SetTransformer)
    assert isinstance(_net("tcn"), TemporalConvSummary)
    assert isinstance(_net("cnn"), ConvSummary2D)
    for kind, cell, n_dirs in [("gru", torch.nn.GRU, 1), ("bilstm", torch.nn.LSTM, 2)]:
        net = _net(kind)
        assert isinstance(net, RecurrentSummary) and net.n_dirs == n_dirs
        assert all(isinstance(rnn, cell) for layer in net.layers for rnn in layer)
        assert all(len(layer) == n_dirs for layer in net.layers)
    with pytest.raises(ValueError, match=r"'rnn'.*set_transformer.*bilstm.*cnn"):
        make_summary_network("rnn", 3, 4, HIDDEN)
    # the factory picks a head count dividing every width; the class itself insists
    net = make_summary_network("set_transformer", 3, 4, (6, 10))
    assert net.blocks[0].gather.attn.num_heads == 2
    with pytest.raises(ValueError, match="multiples of n_heads"):
        SetTransformer(3, 4, (6, 10), n_heads=4)
    with pytest.raises(ValueError, match="recurrent cell"):
        RecurrentSummary(3, 4, cell="rnn")


@pytest.mark.parametrize("kind", ["gru", "lstm", "bigru", "bilstm"])
def test_recurrent_matches_packed_reference(kind):
    """Same final states and mean outputs as torch's own (bi)RNN over packed sequences."""
    net = _net(kind)
    cell, n_dirs = type(net.layers[0][0]), net.n_dirs
    ref = cell(N_FEATURES, HIDDEN[0], num_layers=1, batch_first=True,
               bidirectional=n_dirs == 2).double()
    # the reference holds one layer; compare a one-layer copy of the network
    net.layers = net.layers[:1]
    net.rho = type(net.rho)(2 * HIDDEN[0] * n_dirs + 1, SUMMARY_DIM, (4,)).double()
    with torch.no_grad():
        for d, rnn in enumerate(net.layers[0]):
            for name, p in rnn.named_parameters():
                getattr(ref, name + ("_reverse" if d else "")).copy_(p)
    x, mask = _ragged_batch(fill=1e3)
    packed = pack_padded_sequence(x, mask.sum(1), batch_first=True, enforce_sorted=False)
    outputs, state = ref(packed)
    state = state[0] if isinstance(state, tuple) else state
    last = state.transpose(0, 1).reshape(len(x), -1)
    outputs, lengths = pad_packed_sequence(outputs, batch_first=True)  # zero padding
    mean = outputs.sum(1) / lengths.unsqueeze(1).double()
    log_n = torch.log(mask.sum(1, keepdim=True).double())
    expected = torch.cat([net.rho(torch.cat([last, mean, log_n], -1)), log_n], -1)
    torch.testing.assert_close(net(x, mask), expected, atol=1e-10, rtol=0)


@pytest.mark.parametrize("kind", SUMMARY_NETWORKS)
def test_output_shape(kind):
    net = _net(kind)
    x, mask = _inputs(kind)
    out = net(x, mask)
    extra = 0 if kind == "cnn" else 1
    assert net.out_features == SUMMARY_DIM + extra
    assert out.shape == (len(x), net.out_features) and out.dtype == torch.float64
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("kind", SUMMARY_NETWORKS)
def test_gradients_reach_every_parameter(kind):
    net = _net(kind)
    x, mask = _inputs(kind)
    weights = torch.randn(net.out_features, generator=torch.Generator().manual_seed(1),
                          dtype=torch.float64)
    (net(x, mask) * weights).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().max() > 0, name


@pytest.mark.parametrize("kind", SUMMARY_NETWORKS)
def test_pickle_round_trip(kind):
    net = _net(kind)
    x, mask = _inputs(kind)
    clone = pickle.loads(pickle.dumps(net))
    with torch.no_grad():
        assert torch.equal(clone(x, mask), net(x, mask))


@pytest.mark.parametrize("kind", RAGGED)
def test_padding_does_not_change_a_data_set(kind):
    net = _net(kind)
    x, mask = _ragged_batch(fill=1e3)  # garbage in the padded positions
    assert x[0, 10, 0] == 1e3
    batched = net(x, mask)
    for i, n in enumerate(LENGTHS):
        alone = net(x[i : i + 1, :n])  # the data set alone, at its own length, no mask
        torch.testing.assert_close(batched[i : i + 1], alone, atol=1e-5, rtol=0)
    clean, _ = _ragged_batch(fill=0.0)
    torch.testing.assert_close(net(clean, mask), batched, atol=1e-5, rtol=0)
    # an all-true mask is the same as no mask
    torch.testing.assert_close(net(x[1:2], mask[1:2]), net(x[1:2]), atol=1e-10, rtol=0)


@pytest.mark.parametrize("kind", RAGGED)
def test_last_column_is_log_length(kind):
    net = _net(kind)
    x, mask = _ragged_batch()
    expected = torch.log(torch.tensor(LENGTHS, dtype=torch.float64))
    torch.testing.assert_close(net(x, mask)[:, -1], expected, atol=1e-12, rtol=0)
    full = torch.full((len(LENGTHS),), math.log(max(LENGTHS)), dtype=torch.float64)
    torch.testing.assert_close(net(x)[:, -1], full, atol=1e-12, rtol=0)


@pytest.mark.parametrize("kind", SETS)
def test_sets_are_permutation_invariant(kind):
    net = _net(kind)
    x, mask = _ragged_batch(seed=1)
    out = net(x, mask)
    gen = torch.Generator().manual_seed(2)
    n_max = max(LENGTHS)
    perm = torch.stack([torch.randperm(n_max, generator=gen) for _ in LENGTHS])
    rows = torch.arange(len(LENGTHS))[:, None]
    x_p, mask_p = x[rows, perm], mask[rows, perm]
    assert not torch.equal(mask_p, mask)  # padding now sits between real members
    torch.testing.assert_close(net(x_p, mask_p), out, atol=1e-5, rtol=0)
    # but the members themselves matter
    changed = x.clone()
    changed[0, 0] += 1.0
    assert (net(changed, mask)[0] - out[0]).abs().max() > 1e-4


@pytest.mark.parametrize("kind", SERIES)
def test_series_order_matters(kind):
    net = _net(kind)
    x, mask = _ragged_batch(seed=3)
    out = net(x, mask)
    reversed_ = x.clone()
    n = LENGTHS[0]
    reversed_[0, :n] = x[0, :n].flip(0)  # the real steps of series 0, backwards
    out_rev = net(reversed_, mask)
    assert (out_rev[0, :-1] - out[0, :-1]).abs().max() > 1e-4
    torch.testing.assert_close(out_rev[1:], out[1:], atol=1e-10, rtol=0)  # others untouched


def test_cnn_on_images():
    net = _net("cnn")
    images = _images(n=6)
    out = net(images)
    assert out.shape == (6, SUMMARY_DIM)
    changed = images.clone()
    changed[2, 1, 5, 7] += 1.0
    out_changed = net(changed)
    assert (out_changed[2] - out[2]).abs().max() > 1e-6
    rest = [0, 1, 3, 4, 5]
    torch.testing.assert_close(out_changed[rest], out[rest], atol=1e-10, rtol=0)
    # the mask is ignored; grids too small for every pooling step still work
    torch.testing.assert_close(net(images, torch.zeros(6, 12, dtype=torch.bool)), out)
    assert net(_images(n=2)[..., :3, :2]).shape == (2, SUMMARY_DIM)
    # one channel may come without its channel axis
    one = ConvSummary2D(1, 3, (4,)).double()
    flat = images[:, 0]
    torch.testing.assert_close(one(flat), one(flat.unsqueeze(1)))
