"""``compile=True``: training steps through ``torch.compile``, uncompiled where it fails."""

import shutil
import warnings

import joblib
import numpy as np
import pytest
import torch
from torch._dynamo.exc import TorchDynamoException

from skcinn import CINNPosteriorEstimator
from skcinn._torch_utils import CompileWarning, compiled

OPTIONS = dict(max_iter=4, random_state=0, hidden_layer_sizes=(16,), n_coupling_blocks=2)


@pytest.fixture(scope="module")
def pairs():
    rng = np.random.default_rng(0)
    theta = rng.uniform(-1, 1, size=(1_000, 2))
    return theta + 0.2 * rng.normal(size=theta.shape), theta


def _draws(est, x):
    return est.sample_posterior(x[:5], n_samples=50, random_state=1)


class _NoCompiler(TorchDynamoException):
    """What inductor raises without a C++ compiler (a TorchDynamoException)."""


def _failing_compile(error):
    def compile_(fn, *args, **kwargs):
        def fast(*a):
            raise error

        return fast

    return compile_


@pytest.mark.parametrize("where", ["first call", "torch.compile"])
def test_failed_compile_warns_and_trains_as_uncompiled(pairs, monkeypatch, where):
    x, theta = pairs
    plain = CINNPosteriorEstimator(**OPTIONS).fit(x, theta)
    if where == "first call":
        monkeypatch.setattr(torch, "compile", _failing_compile(_NoCompiler("no C++ compiler")))
    else:  # a platform torch cannot compile on refuses at torch.compile itself
        def refuse(fn, *args, **kwargs):
            raise RuntimeError("torch.compile is not supported here")

        monkeypatch.setattr(torch, "compile", refuse)
    with pytest.warns(CompileWarning, match="training goes on uncompiled"):
        est = CINNPosteriorEstimator(compile=True, **OPTIONS).fit(x, theta)
    np.testing.assert_array_equal(_draws(est, x), _draws(plain, x))
    assert est.loss_curve_ == plain.loss_curve_


def test_errors_of_the_function_itself_are_not_swallowed(monkeypatch):
    monkeypatch.setattr(torch, "compile", _failing_compile(ValueError("bad batch")))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileWarning)
        with pytest.raises(ValueError, match="bad batch"):
            compiled(lambda t: t)(torch.zeros(1))


def test_compile_is_a_checked_parameter(pairs):
    x, theta = pairs
    with pytest.raises(ValueError, match="compile"):
        CINNPosteriorEstimator(compile="yes", max_iter=1).fit(x, theta)


@pytest.mark.slow
@pytest.mark.skipif(not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")),
                    reason="torch.compile needs a C++ compiler on the CPU")
def test_compiled_fit_trains_like_uncompiled_and_pickles(pairs, tmp_path):
    x, theta = pairs
    plain = CINNPosteriorEstimator(**OPTIONS).fit(x, theta)
    calls = torch._dynamo.utils.counters["stats"]["calls_captured"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileWarning)
        est = CINNPosteriorEstimator(compile=True, **OPTIONS).fit(x, theta)
    assert torch._dynamo.utils.counters["stats"]["calls_captured"] > calls  # it compiled
    # the same steps on the same batches; generated kernels round differently
    np.testing.assert_allclose(est.loss_curve_, plain.loss_curve_, rtol=1e-4, atol=1e-4)
    assert est.score(x, theta) == pytest.approx(plain.score(x, theta), abs=1e-3)
    # nothing compiled stays on the estimator: it pickles and draws as before
    joblib.dump(est, tmp_path / "est.joblib")
    loaded = joblib.load(tmp_path / "est.joblib")
    np.testing.assert_array_equal(_draws(loaded, x), _draws(est, x))


@pytest.fixture
def eager_compile(monkeypatch):
    """``torch.compile`` with the eager backend: torch traces the step into graphs as
    for inductor but runs them as they are, without generating kernels (fast, no C++
    compiler). Returns torch's compile counters."""
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile",
                        lambda fn, **kwargs: compile_(fn, backend="eager", **kwargs))
    return torch._dynamo.utils.counters["stats"]


def test_truncated_training_step_traces_and_trains_as_uncompiled(eager_compile):
    # support="truncate" draws from the flow inside the step (a varying number inside
    # the box): torch traces it in pieces (the seeded draws and the gather of the inside
    # ones break the graph), and the traced step must train as the plain one
    rng = np.random.default_rng(0)
    theta = rng.uniform(0, 1, size=(600, 2))
    x = theta + 0.3 * rng.normal(size=theta.shape)
    options = dict(OPTIONS, max_iter=3, support="truncate", parameter_bounds=[(0, 1)] * 2)
    plain = CINNPosteriorEstimator(**options).fit(x, theta)
    graphs = eager_compile["unique_graphs"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileWarning)
        est = CINNPosteriorEstimator(compile=True, **options).fit(x, theta)
    assert eager_compile["unique_graphs"] > graphs
    np.testing.assert_allclose(est.loss_curve_, plain.loss_curve_, rtol=1e-5)
    np.testing.assert_allclose(_draws(est, x), _draws(plain, x), atol=1e-4)


def test_each_architecture_compiles_past_torchs_recompile_limit(pairs, eager_compile):
    # torch stops compiling a function after `recompile_limit` graphs; a grid search over
    # more network shapes than that must still compile each (here: a limit of 1, two
    # shapes), and a refit of a shape already seen must reuse its graph
    x, theta = pairs
    counters = eager_compile

    def graphs_added(hidden):
        before = counters["unique_graphs"]
        with warnings.catch_warnings():
            warnings.simplefilter("error", CompileWarning)
            CINNPosteriorEstimator(compile=True, **{
                **OPTIONS, "max_iter": 1, "hidden_layer_sizes": hidden}).fit(x, theta)
        return counters["unique_graphs"] - before

    with torch._dynamo.config.patch(recompile_limit=1):
        assert graphs_added((12,)) == 1
        assert graphs_added((13,)) == 1  # a new shape: compiled, not over the limit
        assert graphs_added((12,)) == 0  # a shape seen before: its graph reused
