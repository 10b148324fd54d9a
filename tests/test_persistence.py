"""skcinn.save / skcinn.load: exact round trips, plain-data files, refusals and atomic writes.

Every estimator here is tiny and trained for three epochs on a few hundred pairs: the
tests compare a loaded estimator with the one that was saved, not the posterior's quality.
"""

from __future__ import annotations

import os
import pickle
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

import skcinn
from skcinn import CINNPosteriorEstimator
from skcinn._torch_utils import DeviceWarning
from skcinn.persistence import FORMAT_VERSION
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


def tiny(**kwargs) -> CINNPosteriorEstimator:
    """A small, fast, seeded estimator on the CPU."""
    return CINNPosteriorEstimator(**{**TINY, **kwargs})


def _bounded_simulator(theta, rng):
    theta = np.asarray(theta, dtype=float)
    return theta + 0.1 * rng.normal(size=theta.shape)


BOUNDED_PRIOR = {"a": stats.uniform(0, 1), "b": stats.norm()}


@dataclass
class Case:
    """A fitted estimator, what it was fitted on, data to query it with, and its file."""

    name: str
    est: CINNPosteriorEstimator
    fit_args: tuple
    X: object  # data sets to query
    theta: np.ndarray  # parameters of those data sets (inside the prior's support)
    path: Path
    loaded: CINNPosteriorEstimator


def _flat():
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(N, 2))
    X = theta + 0.5 * rng.normal(size=theta.shape)
    return (X, theta), X[:8], theta[:8]


def _sets(n_obs):
    def build():
        rng = np.random.default_rng(1)
        model = GaussianMean(n_obs=n_obs)
        theta = model.sample_prior(N, rng)
        X = model.simulate(theta, rng)
        return (X, theta), X[:8], theta[:8]

    return build


def _bounded():
    rng = np.random.default_rng(2)
    theta = np.column_stack([rng.uniform(0.05, 0.95, 8), rng.normal(size=8)])
    return (_bounded_simulator, BOUNDED_PRIOR), _bounded_simulator(theta, rng), theta


def _one_param():
    rng = np.random.default_rng(3)
    theta = rng.normal(size=N)  # 1-D y: predict returns 1-D too
    X = theta[:, None] + 0.3 * rng.normal(size=(N, 2))
    return (X, theta), X[:8], theta[:8]


BUILDERS = {
    "flat": _flat,
    "3d": _sets(6),
    "ragged": _sets((3, 9)),
    "bounded": _bounded,
    "one_param": _one_param,
}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def case(request, tmp_path_factory) -> Case:
    fit_args, X, theta = BUILDERS[request.param]()
    est = tiny().fit(*fit_args)
    path = tmp_path_factory.mktemp(request.param) / "model.skcinn"
    skcinn.save(est, path)
    return Case(request.param, est, fit_args, X, theta, path, skcinn.load(path))


@pytest.fixture(scope="module")
def flat_case(tmp_path_factory) -> Case:
    fit_args, X, theta = _flat()
    est = tiny().fit(*fit_args)
    path = tmp_path_factory.mktemp("flat") / "model.skcinn"
    skcinn.save(est, path)
    return Case("flat", est, fit_args, X, theta, path, skcinn.load(path))


def fitted_copy(case: Case) -> CINNPosteriorEstimator:
    """An independent copy of the fitted estimator that a test may change."""
    return pickle.loads(pickle.dumps(case.est))


def assert_same_value(a, b, where: str) -> None:
    """``a`` and ``b`` have the same type and the same value, recursively."""
    assert type(a) is type(b), f"{where}: {type(a)} != {type(b)}"
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.device == b.device and a.shape == b.shape, where
        assert torch.equal(a, b), where
    elif isinstance(a, torch.nn.Module):
        assert_same_value(dict(a.state_dict()), dict(b.state_dict()), where)
        assert a.training == b.training, where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            assert_same_value(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_value(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_estimator(a, b) -> None:
    """Same parameters and every fitted attribute of the same type and value."""
    assert sorted(a.__dict__) == sorted(b.__dict__)
    for key in a.__dict__:
        assert_same_value(a.__dict__[key], b.__dict__[key], key)
    assert a.get_params() == b.get_params()


def assert_same_inference(a, b, X, theta) -> None:
    np.testing.assert_array_equal(a.sample_posterior(X, 50, random_state=3),
                                  b.sample_posterior(X, 50, random_state=3))
    for pa, pb in zip(a.predict(X, return_std=True), b.predict(X, return_std=True),
                      strict=True):
        np.testing.assert_array_equal(pa, pb)
    np.testing.assert_array_equal(a.log_posterior(X, theta), b.log_posterior(X, theta))


# ----------------------------------------------------------------------- round trips


def test_round_trip_restores_every_attribute(case):
    assert_same_estimator(case.est, case.loaded)
    assert case.loaded.device_ == torch.device("cpu")
    assert case.loaded.network_.training is False


def test_round_trip_gives_identical_inference(case):
    assert_same_inference(case.est, case.loaded, case.X, case.theta)


def test_round_trip_covers_each_model(case):
    est = case.loaded
    expected = {
        "flat": (2, None, "affine"), "3d": (3, "deepset", "affine"),
        "ragged": (3, "deepset", "affine"), "bounded": (2, None, "affine"),
        "one_param": (2, None, "spline"),
    }[case.name]
    assert (est.input_rank_, est.summary_network_, est.coupling_) == expected
    if case.name == "ragged":
        assert isinstance(case.X, list) and len({len(x) for x in case.X}) > 1
    if case.name == "bounded":
        assert list(est.parameter_names_) == ["a", "b"]
        draws = est.sample_posterior(case.X, 50, random_state=3)
        assert np.all((draws[..., 0] > 0) & (draws[..., 0] < 1))
    if case.name == "one_param":
        assert est.predict(case.X).shape == (8,)


def test_loaded_estimator_refits_and_clones(case):
    fresh = skcinn.load(case.path)
    copy = clone(fresh)
    assert copy.get_params() == case.est.get_params()
    with pytest.raises(NotFittedError):
        check_is_fitted(copy)
    assert fresh.fit(*case.fit_args) is fresh
    assert fresh.n_iter_ == 3
    # a refit from the same seed retraces the original fit
    assert fresh.loss_curve_ == case.est.loss_curve_
    assert_same_inference(case.est, fresh, case.X, case.theta)


def test_loaded_estimator_continues_training_like_the_original(flat_case):
    original = fitted_copy(flat_case).set_params(warm_start=True)
    loaded = skcinn.load(flat_case.path).set_params(warm_start=True)
    original.fit(*flat_case.fit_args)
    loaded.fit(*flat_case.fit_args)
    assert len(loaded.loss_curve_) == 6
    assert loaded.loss_curve_ == original.loss_curve_
    assert_same_inference(original, loaded, flat_case.X, flat_case.theta)


def test_dataframe_X_keeps_feature_names(tmp_path):
    (X, theta), _, _ = _flat()
    frame = pd.DataFrame(X, columns=["x0", "x1"])
    est = tiny().fit(frame, pd.DataFrame(theta, columns=["alpha", "beta"]))
    skcinn.save(est, tmp_path / "m.skcinn")
    loaded = skcinn.load(tmp_path / "m.skcinn")
    assert_same_estimator(est, loaded)
    assert loaded.feature_names_in_.dtype == object
    assert list(loaded.feature_names_in_) == ["x0", "x1"]
    assert list(loaded.parameter_names_) == ["alpha", "beta"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(loaded.predict(frame[:5]), est.predict(frame[:5]))
    with pytest.raises(ValueError, match="feature names"):
        loaded.predict(frame[:5].rename(columns={"x0": "other"}))


def test_pickle_and_joblib_of_loaded_estimator(flat_case, tmp_path):
    loaded = flat_case.loaded
    for copy in (pickle.loads(pickle.dumps(loaded)),
                 joblib.load(joblib.dump(loaded, tmp_path / "m.joblib")[0])):
        assert_same_inference(flat_case.est, copy, flat_case.X, flat_case.theta)


def test_estimators_saved_before_the_schedules_keep_their_cosine_schedule(flat_case):
    # pickles of earlier versions have no ``learning_rate`` (they trained with the cosine)
    # and no ``ema_decay`` (they trained without a weight average)
    state = flat_case.est.__getstate__()
    del state["learning_rate"], state["ema_decay"]
    old = CINNPosteriorEstimator.__new__(CINNPosteriorEstimator)
    old.__setstate__(state)
    assert old.get_params()["learning_rate"] == "cosine"
    assert old.get_params()["ema_decay"] == 0.0
    assert clone(old).learning_rate == "cosine" and clone(old).ema_decay == 0.0
    assert_same_inference(flat_case.est, old, flat_case.X, flat_case.theta)


def test_save_accepts_str_and_pathlike_and_overwrites(flat_case, tmp_path):
    target = tmp_path / "m.skcinn"
    target.write_bytes(b"an older file")
    skcinn.save(flat_case.est, str(target))
    first = target.read_bytes()
    skcinn.save(flat_case.est, target)
    assert target.read_bytes()[:4] == b"PK\x03\x04"
    assert len(target.read_bytes()) == len(first)
    assert sorted(os.listdir(tmp_path)) == ["m.skcinn"]
    assert_same_inference(flat_case.est, skcinn.load(str(target)), flat_case.X, flat_case.theta)


# ----------------------------------------------------------------------- file content


def _walk(value, where="payload"):
    """Yield (where, leaf) for every leaf of nested dicts, lists and tuples."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _walk(item, f"{where}[{i}]")
    else:
        yield where, value


def test_file_holds_only_plain_data_and_cpu_tensors(flat_case):
    payload = torch.load(flat_case.path, weights_only=True)  # no map_location
    assert sorted(payload) == ["format", "format_version", "numpy", "params", "skcinn_version",
                               "state", "torch_version"]
    assert payload["format"] == "skcinn"
    assert payload["format_version"] == FORMAT_VERSION == 1
    assert payload["skcinn_version"] == skcinn.__version__
    assert payload["torch_version"] == torch.__version__
    assert payload["params"] == flat_case.est.get_params()
    assert "device_" not in payload["state"]
    assert not set(payload["state"]) & set(payload["params"])
    assert {tuple(r["path"]) for r in payload["numpy"]} == {
        ("_x_mean",), ("_x_std",), ("parameter_names_",), ("failed_parameters_",),
        ("_support", 0), ("_support", 1)}
    assert payload["state"]["parameter_names_"] == ["theta_0", "theta_1"]
    assert payload["state"]["_x_mean"].dtype == torch.float64
    for where, leaf in _walk(payload):
        if isinstance(leaf, torch.Tensor):
            assert leaf.device.type == "cpu", where
        else:
            assert type(leaf) in (type(None), bool, int, float, str), where


def test_numpy_scalars_are_stored_as_python_scalars(flat_case, tmp_path):
    est = fitted_copy(flat_case)
    est.max_iter = np.int64(3)
    est.tol = np.float32(0.5)
    est.n_iter_ = np.int64(3)
    est.best_validation_score_ = np.float64(-1.25)
    est.extra_ = {"counts": np.arange(3, dtype=np.int16), "scale": (np.float32(2.0), 1)}
    skcinn.save(est, tmp_path / "m.skcinn")
    payload = torch.load(tmp_path / "m.skcinn", weights_only=True)
    assert type(payload["params"]["max_iter"]) is int
    assert type(payload["params"]["tol"]) is float
    loaded = skcinn.load(tmp_path / "m.skcinn")
    assert loaded.max_iter == 3 and type(loaded.max_iter) is int
    assert loaded.tol == 0.5
    # fitted attributes come back with their numpy types, nested ones included
    assert_same_value(est.n_iter_, loaded.n_iter_, "n_iter_")
    assert_same_value(est.best_validation_score_, loaded.best_validation_score_, "best")
    assert_same_value(est.extra_, loaded.extra_, "extra_")


# ------------------------------------------------------------------- saving: errors


def test_random_state_instance_is_saved_as_none_with_warning(flat_case, tmp_path):
    est = fitted_copy(flat_case)
    est.random_state = np.random.RandomState(4)
    with pytest.warns(UserWarning, match="random_state.*RandomState.*None"):
        skcinn.save(est, tmp_path / "m.skcinn")
    loaded = skcinn.load(tmp_path / "m.skcinn")
    assert loaded.random_state is None
    assert_same_inference(flat_case.est, loaded, flat_case.X, flat_case.theta)


@pytest.mark.parametrize("name, value", [("tol", Fraction(1, 10_000)),
                                         ("hidden_layer_sizes", (16, object())),
                                         ("device", torch.device("cpu")),
                                         ("summary_network", torch.nn.Identity())])
def test_non_plain_parameter_raises_type_error(flat_case, tmp_path, name, value):
    est = fitted_copy(flat_case)
    setattr(est, name, value)
    with pytest.raises(TypeError, match=f"Parameter {name}=.*cannot store.*plain data"):
        skcinn.save(est, tmp_path / "m.skcinn")
    assert os.listdir(tmp_path) == []


def test_non_plain_fitted_attribute_raises_type_error(flat_case, tmp_path):
    est = fitted_copy(flat_case)
    est.extra_ = [1, {"f": lambda: 0}]
    with pytest.raises(TypeError, match=r"extra_\[1\]\['f'\] is a builtins.function"):
        skcinn.save(est, tmp_path / "m.skcinn")
    assert os.listdir(tmp_path) == []


def test_save_unfitted_raises(tmp_path):
    with pytest.raises(NotFittedError):
        skcinn.save(tiny(), tmp_path / "m.skcinn")
    assert os.listdir(tmp_path) == []


class Subclass(CINNPosteriorEstimator):
    pass


def test_save_rejects_other_objects(flat_case, tmp_path):
    with pytest.raises(TypeError, match="expects a fitted CINNPosteriorEstimator or "
                                        "PosteriorEnsemble of them; got a builtins.dict"):
        skcinn.save({"network_": 1}, tmp_path / "m.skcinn")
    sub = Subclass(**TINY).fit(*flat_case.fit_args)
    with pytest.raises(TypeError, match="got a .*Subclass.*subclasses included"):
        skcinn.save(sub, tmp_path / "m.skcinn")
    assert os.listdir(tmp_path) == []


def test_failed_save_leaves_no_file(flat_case, tmp_path, monkeypatch):
    def failing_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        skcinn.save(flat_case.est, tmp_path / "m.skcinn")
    assert os.listdir(tmp_path) == []

    # an existing file is left exactly as it was
    target = tmp_path / "old.skcinn"
    target.write_bytes(b"previous model")
    with pytest.raises(OSError, match="disk full"):
        skcinn.save(flat_case.est, target)
    assert target.read_bytes() == b"previous model"
    assert os.listdir(tmp_path) == ["old.skcinn"]


def test_save_into_missing_directory_raises(flat_case, tmp_path):
    with pytest.raises(FileNotFoundError):
        skcinn.save(flat_case.est, tmp_path / "missing" / "m.skcinn")
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------- loading: errors


def _write(kind: str, path: Path, valid: Path) -> None:
    if kind == "plain dict":
        torch.save({"weights": torch.zeros(3), "epochs": 4}, path)
    elif kind == "tensor":
        torch.save(torch.zeros(3), path)
    elif kind == "other format":
        torch.save({"format": "other", "format_version": 1}, path)
    elif kind == "text":
        path.write_text("theta_0,theta_1\n0.1,0.2\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        data = valid.read_bytes()
        path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("kind, message", [
    ("plain dict", r"not an skcinn model file: expected a file written by skcinn.save.*"
                   r"found a dict with keys \['epochs', 'weights'\]"),
    ("tensor", "not an skcinn model file.*found a Tensor"),
    ("other format", "not an skcinn model file.*format='other'"),
    ("text", r"not an skcinn model file.*zip archive.*found a file starting with b'thet'"),
    ("empty", "not an skcinn model file.*found a file starting with b''"),
    ("truncated", "could not be read; it is truncated or corrupted"),
])
def test_load_rejects_files_that_are_not_models(flat_case, tmp_path, kind, message):
    path = tmp_path / "bad.skcinn"
    _write(kind, path, flat_case.path)
    with pytest.raises(ValueError, match=message):
        skcinn.load(path)


def _rewrite(source: Path, target: Path, **changes) -> None:
    payload = torch.load(source, weights_only=True)
    for key, value in changes.items():
        if value is None:
            del payload[key]
        else:
            payload[key] = value
    torch.save(payload, target)


@pytest.mark.parametrize("version, message", [
    (2, r"has skcinn file format version 2 \(written by skcinn .*\), but this skcinn .* "
        r"reads format version 1 only; upgrade skcinn"),
    (0, "has skcinn file format version 0 .* reads format version 1 only"),
    ("1", "has skcinn file format version '1' .* reads format version 1 only"),
    (None, "has skcinn file format version None .* reads format version 1 only"),
])
def test_load_rejects_other_format_versions(flat_case, tmp_path, version, message):
    path = tmp_path / "m.skcinn"
    _rewrite(flat_case.path, path, format_version=version)
    with pytest.raises(ValueError, match=message):
        skcinn.load(path)


@pytest.mark.parametrize("changes, message", [
    ({"params": {**TINY, "colour": "red"}}, r"sets parameters \['colour'\].*does not know"),
    ({"params": [1, 2]}, "its 'params' entry should be a dict; found list"),
    ({"numpy": None}, "its 'numpy' entry should be a list; found NoneType"),
    ({"state": {"n_params_": 2}}, "holds no fitted network"),
    ({"numpy": [{"path": ["missing"], "kind": "array", "dtype": "<f8", "shape": [2]}]},
     "corrupted: its record of numpy values does not match its state"),
    ({"numpy": [{"path": [], "kind": "array", "dtype": "<f8", "shape": [2]}]},
     "corrupted: its record of numpy values does not match its state"),
    ({"numpy": [{"path": ["n_iter_"], "kind": "array", "dtype": "<f8", "shape": [2]}]},
     "corrupted: its record of numpy values .*int cannot hold a numpy array"),
])
def test_load_rejects_inconsistent_payloads(flat_case, tmp_path, changes, message):
    path = tmp_path / "m.skcinn"
    _rewrite(flat_case.path, path, **changes)
    with pytest.raises(ValueError, match=message):
        skcinn.load(path)


def test_load_rejects_state_that_shadows_methods(flat_case, tmp_path):
    payload = torch.load(flat_case.path, weights_only=True)
    path = tmp_path / "m.skcinn"
    _rewrite(flat_case.path, path, state={**payload["state"], "predict": "x", "tol": 1.0})
    with pytest.raises(ValueError, match=r"state sets \['predict', 'tol'\], which are not "
                                         "fitted attributes"):
        skcinn.load(path)


def test_load_rejects_weights_that_do_not_fit_the_network(flat_case, tmp_path):
    payload = torch.load(flat_case.path, weights_only=True)
    weights = dict(payload["state"]["network_"])
    weights.popitem()
    path = tmp_path / "m.skcinn"
    _rewrite(flat_case.path, path, state={**payload["state"], "network_": weights})
    with pytest.raises(ValueError, match="fitted state could not be restored.*RuntimeError"):
        skcinn.load(path)


def test_load_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        skcinn.load(tmp_path / "nothing.skcinn")


class Evil:
    """Runs a shell command when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.marker}",))


def test_load_refuses_crafted_payload_without_running_it(tmp_path):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "evil.skcinn"
    torch.save({"format": "skcinn", "format_version": 1, "x": Evil(marker)}, path)
    with pytest.raises(ValueError, match="holds objects other than plain data and tensors"):
        skcinn.load(path)
    assert not marker.exists()


def test_load_refuses_numpy_objects_inside_the_file(flat_case, tmp_path):
    payload = torch.load(flat_case.path, weights_only=True)
    payload["state"]["_x_mean"] = payload["state"]["_x_mean"].numpy()
    path = tmp_path / "m.skcinn"
    torch.save(payload, path)
    with pytest.raises(ValueError, match="objects other than plain data and tensors"):
        skcinn.load(path)


# --------------------------------------------------------------------------- devices


@pytest.mark.skipif(torch.cuda.is_available(), reason="simulates a machine without CUDA")
def test_gpu_trained_estimator_loads_on_cpu(flat_case, tmp_path):
    est = fitted_copy(flat_case)
    est.device = "cuda"  # as if trained on a GPU: the device parameter says "cuda"
    skcinn.save(est, tmp_path / "m.skcinn")
    with pytest.warns(DeviceWarning, match="CUDA is not available"):
        loaded = skcinn.load(tmp_path / "m.skcinn")
    assert loaded.device == "cuda"
    assert loaded.device_ == torch.device("cpu")
    assert all(p.device.type == "cpu" for p in loaded.network_.parameters())
    assert_same_inference(flat_case.est, loaded, flat_case.X, flat_case.theta)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fit_saves_cpu_tensors(tmp_path):
    fit_args, X, theta = _flat()
    est = tiny(device="cuda").fit(*fit_args)
    assert est.device_.type == "cuda"
    path = tmp_path / "m.skcinn"
    skcinn.save(est, path)
    payload = torch.load(path, weights_only=True)  # no map_location: tensors as saved
    tensors = [leaf for _, leaf in _walk(payload) if isinstance(leaf, torch.Tensor)]
    assert len(tensors) > 10
    assert all(t.device.type == "cpu" for t in tensors)
    loaded = skcinn.load(path)
    assert loaded.device_.type == "cuda"
    # same weights on the same GPU; allclose only guards against cuBLAS kernel choices
    np.testing.assert_allclose(est.sample_posterior(X, 50, random_state=3),
                               loaded.sample_posterior(X, 50, random_state=3),
                               rtol=1e-6, atol=1e-6)
