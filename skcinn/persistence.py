"""Save a fitted estimator to a portable file and load it back, without pickle's risks.

``pickle`` and ``joblib`` files can run arbitrary code when they are loaded, so they are
no way to exchange trained models between labs. :func:`save` writes a file with
:func:`torch.save` that holds nothing but plain data (``None``, ``bool``, ``int``,
``float``, ``str``, lists, tuples, dicts) and CPU tensors, and :func:`load` reads it back
with ``torch.load(weights_only=True)``, which refuses every other object.

The fitted state is the one ``pickle`` uses (``CINNPosteriorEstimator.__getstate__``),
so both ways of persisting an estimator share one code path. What ``weights_only``
loading cannot read is encoded: numeric numpy arrays become tensors (dtype kept), arrays
of strings become lists of ``str`` and numpy scalars become Python scalars; a small
record (the ``"numpy"`` entry) lists where they were, so :func:`load` restores the
original types.

File layout (format version 1)::

    {"format": "skcinn", "format_version": 1, "skcinn_version": str,
     "torch_version": str, "params": {name: plain data}, "state": {name: plain data or
     tensors}, "numpy": [{"path": [...], "kind": "array" | "scalar", "dtype": str,
     "shape": [...]}]}

A :class:`~skcinn.PosteriorEnsemble` is saved as the same stamp with ``"kind":
"PosteriorEnsemble"``, its own ``"params"`` (without ``estimator``), ``"estimator"``
(the base estimator's parameters, or None), ``"state"`` (``fit_time_``) and
``"members"``: one single-estimator payload, as above, per member.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import secrets
import warnings
from typing import Any

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from .ensemble import PosteriorEnsemble
from .estimator import CINNPosteriorEstimator

__all__ = ["FORMAT_VERSION", "load", "save"]

FORMAT = "skcinn"
FORMAT_VERSION = 1  # the file format this skcinn writes and reads
_PLAIN_TYPES = (type(None), bool, int, float, str)
_NUMERIC_KINDS = "biufc"  # numpy dtype kinds stored as tensors
_STRING_KINDS = "OU"  # numpy dtype kinds stored as lists of str
_ZIP_MAGIC = b"PK\x03\x04"  # every torch.save file is a zip archive
_STAMP = ("format", "format_version", "skcinn_version", "torch_version")


# -------------------------------------------------------------------------- encoding


def _describe(path: list) -> str:
    """``['network_', 'flow.w']`` -> ``"network_['flow.w']"`` for error messages."""
    return str(path[0]) + "".join(f"[{p!r}]" for p in path[1:])


def _encode(value: Any, path: list, record: list) -> Any:
    """``value`` as plain data and CPU tensors; numpy objects noted in ``record``."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        # a view would drag its whole storage into the file
        compact = tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size()
        return tensor if compact else tensor.clone()
    if isinstance(value, np.ndarray):
        return _encode_array(value, path, record)
    if isinstance(value, np.generic):
        plain = value.item()
        if type(plain) not in _PLAIN_TYPES:
            raise TypeError(
                f"{_describe(path)} is a numpy {value.dtype} scalar, which skcinn.save cannot "
                "store; expected plain data (None, bool, int, float, str), numpy arrays or "
                "tensors."
            )
        record.append({"path": list(path), "kind": "scalar", "dtype": value.dtype.str})
        return plain
    if type(value) in _PLAIN_TYPES:
        return value
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if type(key) not in (str, int):
                raise TypeError(
                    f"{_describe(path)} has a key of type {type(key).__name__}; skcinn.save "
                    "stores dicts with str or int keys only."
                )
            out[key] = _encode(item, [*path, key], record)
        return out
    if type(value) in (list, tuple):
        items = [_encode(item, [*path, i], record) for i, item in enumerate(value)]
        return items if type(value) is list else tuple(items)
    raise TypeError(
        f"{_describe(path)} is a {type(value).__module__}.{type(value).__qualname__}, which "
        "skcinn.save cannot store; expected plain data (None, bool, int, float, str, lists, "
        "tuples, dicts), numpy arrays or tensors."
    )


def _encode_array(value: np.ndarray, path: list, record: list) -> Any:
    entry = {"path": list(path), "kind": "array", "dtype": value.dtype.str,
             "shape": list(value.shape)}
    if value.dtype.kind in _NUMERIC_KINDS:
        native = np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("="))
        try:
            encoded = torch.tensor(native)
        except TypeError as exc:
            raise TypeError(
                f"{_describe(path)} is a numpy array of dtype {value.dtype}, which torch "
                "cannot hold; skcinn.save cannot store it."
            ) from exc
    elif value.dtype.kind in _STRING_KINDS:
        encoded = value.ravel().tolist()
        bad = next((item for item in encoded if type(item) is not str), None)
        if bad is not None:
            raise TypeError(
                f"{_describe(path)} is a numpy array of dtype {value.dtype} holding a "
                f"{type(bad).__name__}; skcinn.save stores object arrays of str only."
            )
    else:
        raise TypeError(
            f"{_describe(path)} is a numpy array of dtype {value.dtype}; skcinn.save stores "
            "numeric arrays and arrays of str only."
        )
    record.append(entry)
    return encoded


def _encode_params(params: dict) -> dict:
    """Constructor parameters as plain data (RandomState -> None, with a warning)."""
    out = {}
    for name, value in params.items():
        if isinstance(value, np.random.RandomState):
            warnings.warn(
                f"{name} is a numpy RandomState instance, which is not plain data and cannot "
                f"be saved; the file stores {name}=None. Pass an integer {name} before "
                "fitting to keep refits of the loaded estimator reproducible.",
                UserWarning,
                stacklevel=3,
            )
            out[name] = None
            continue
        try:
            out[name] = _plain_param(value)
        except TypeError:
            raise TypeError(
                f"Parameter {name}={value!r} is a {type(value).__module__}."
                f"{type(value).__qualname__}, which skcinn.save cannot store; expected plain "
                "data (None, bool, int, float, str, or lists, tuples and dicts of them; numeric "
                "numpy arrays are stored as lists). "
                "Estimators with such parameters (a custom summary network is code, not "
                "data) need pickle or joblib, whose files must come from a trusted source."
            ) from None
    return out


def _plain_param(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        value = value.tolist()  # e.g. parameter_bounds as an array: stored as lists
    if isinstance(value, os.PathLike):  # e.g. checkpoint_path: stored as its string
        value = os.fsdecode(os.fspath(value))
    if type(value) in _PLAIN_TYPES:
        return value
    if type(value) in (list, tuple):
        items = [_plain_param(item) for item in value]
        return items if type(value) is list else tuple(items)
    if type(value) is dict and all(type(key) is str for key in value):
        return {key: _plain_param(item) for key, item in value.items()}
    raise TypeError(type(value).__name__)


# -------------------------------------------------------------------------- decoding


def _decode(state: dict, record: list, where: str) -> dict:
    """Restore the numpy arrays and scalars that :func:`_encode` noted in ``record``."""
    for entry in record:
        try:
            kind, dtype, path = entry["kind"], np.dtype(entry["dtype"]), entry["path"]
            if type(path) is not list or not path or type(path[0]) is not str:
                raise ValueError(f"bad path {path!r}")
            if kind == "scalar":
                state = _replace(state, path, dtype.type)
            elif kind == "array":
                state = _replace(state, path, lambda v, e=entry, d=dtype: _to_array(v, d, e))
            else:
                raise ValueError(f"unknown kind {kind!r}")
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ValueError(
                f"{where} is corrupted: its record of numpy values does not match its state "
                f"({type(exc).__name__}: {exc}; entry {entry!r})."
            ) from exc
    return state


def _replace(value: Any, path: list, restore) -> Any:
    """A copy of ``value`` with the item at ``path`` replaced by ``restore(item)``."""
    if not path:
        return restore(value)
    key, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, key: _replace(value[key], rest, restore)}
    if type(value) in (list, tuple) and type(key) is int:
        items = list(value)
        items[key] = _replace(items[key], rest, restore)
        return type(value)(items)
    raise TypeError(f"cannot look up {key!r} in a {type(value).__name__}")


def _to_array(value: Any, dtype: np.dtype, entry: dict) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        array = value.numpy().astype(dtype, copy=False)
    elif isinstance(value, list) and all(type(item) is str for item in value):
        array = np.array(value, dtype=dtype)
    else:
        raise TypeError(f"a {type(value).__name__} cannot hold a numpy array")
    return array.reshape(entry["shape"])


# ---------------------------------------------------------------------------- public


def save(estimator: CINNPosteriorEstimator | PosteriorEnsemble, path: str | os.PathLike) -> None:
    """Save a fitted estimator to a portable file that loads without running code.

    The file, written with :func:`torch.save`, holds only plain data and CPU tensors:
    the estimator's parameters (``get_params()``) and its fitted state (the state
    ``pickle`` uses, with the networks as CPU weights). It is written to a temporary
    file next to ``path`` and then renamed, so ``path`` is either left as it was or
    holds the complete file, even if saving fails half-way.

    Parameters
    ----------
    estimator : CINNPosteriorEstimator or PosteriorEnsemble
        A fitted estimator, or a fitted ensemble of them (saved member by member). A
        ``numpy.random.RandomState`` as ``random_state`` is not plain data: it is stored
        as ``None`` (with a warning).
    path : str or os.PathLike
        Where to write the file (replaced if it exists). ``".skcinn"`` is a good suffix.

    Returns
    -------
    None
        The estimator is written to ``path``.

    Raises
    ------
    TypeError
        If ``estimator`` is not a :class:`~skcinn.CINNPosteriorEstimator` or a
        :class:`~skcinn.PosteriorEnsemble` of them (subclasses are refused, as they
        would load as the base class), or a
        parameter or fitted attribute is not plain data (the message names it).
    sklearn.exceptions.NotFittedError
        If ``estimator`` is not fitted.
    OSError
        If the file cannot be written; nothing is left behind at ``path``.

    Warns
    -----
    UserWarning
        If ``random_state`` is a ``RandomState`` instance, which is saved as ``None``.

    See Also
    --------
    load : Read the file back.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> import skcinn
    >>> rng = np.random.default_rng(0)
    >>> theta = rng.normal(size=(500, 1))
    >>> X = theta + 0.5 * rng.normal(size=(500, 3))
    >>> est = skcinn.CINNPosteriorEstimator(max_iter=2, random_state=0).fit(X, theta)
    >>> path = Path(tempfile.mkdtemp()) / "posterior.skcinn"
    >>> skcinn.save(est, path)
    >>> skcinn.load(path).predict(X[:2]).shape
    (2, 1)
    """
    if type(estimator) is PosteriorEnsemble:
        check_is_fitted(estimator, "estimators_")
        payload = _ensemble_payload(estimator)
    else:
        _check_savable(estimator)
        check_is_fitted(estimator, "network_")
        payload = _payload(estimator)
    _atomic_save(payload, os.fsdecode(os.fspath(path)))


def _check_savable(estimator) -> None:
    if type(estimator) is not CINNPosteriorEstimator:
        # a subclass would come back as the base class: refuse rather than change its type
        raise TypeError(
            "skcinn.save expects a fitted CINNPosteriorEstimator or PosteriorEnsemble of "
            f"them; got a {type(estimator).__module__}.{type(estimator).__qualname__}. Use "
            "pickle or joblib (trusted files only) for other objects, subclasses included."
        )


def _payload(estimator: CINNPosteriorEstimator) -> dict:
    """The file's content: format stamp, parameters, encoded fitted state."""
    from . import __version__

    params = _encode_params(estimator.get_params(deep=False))
    full = estimator.__getstate__()
    record: list = []
    state = {key: _encode(value, [key], record) for key, value in full.items()
             if key not in params}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "skcinn_version": __version__,
        "torch_version": str(torch.__version__),
        "params": params,
        "state": state,
        "numpy": record,
    }
    return payload


def _ensemble_payload(ensemble: PosteriorEnsemble) -> dict:
    """An ensemble's file: its parameters, its base estimator's, and one payload per
    member (each as :func:`save` writes a single estimator)."""
    params = ensemble.get_params(deep=False)
    base = params.pop("estimator")
    if base is not None:
        _check_savable(base)
    for member in ensemble.estimators_:
        _check_savable(member)
    members = [_payload(member) for member in ensemble.estimators_]
    return {
        **{key: members[0][key] for key in _STAMP},
        "kind": "PosteriorEnsemble",
        "params": _encode_params(params),
        "estimator": None if base is None else _encode_params(base.get_params(deep=False)),
        "state": {"fit_time_": float(ensemble.fit_time_)},
        "numpy": [],
        "members": members,
    }


def save_checkpoint(estimator: CINNPosteriorEstimator, training: dict, path) -> None:
    """Write the estimator and a training state (plain data and CPU tensors) atomically.

    Used by ``fit`` with ``checkpoint_path``; :func:`load_checkpoint` reads it back.
    """
    _atomic_save({**_payload(estimator), "training": training}, os.fsdecode(os.fspath(path)))


def load_checkpoint(path) -> tuple[CINNPosteriorEstimator, dict | None]:
    """The estimator and training state of a checkpoint (or of a file from :func:`save`)."""
    path = os.fsdecode(os.fspath(path))
    payload = _read(path, f"The file {path!r}")
    return _from_payload(payload, f"The file {path!r}"), payload.get("training")


def _atomic_save(payload: dict, path: str) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it to ``path``."""
    directory, name = os.path.split(os.path.abspath(path))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(directory, f".{name}.{secrets.token_hex(8)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)  # the umask applies, as for a plain open()
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 100 collisions of 64 random bits
        raise FileExistsError(f"Could not create a temporary file next to {path!r}.")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def load(path: str | os.PathLike) -> CINNPosteriorEstimator | PosteriorEnsemble:
    """Load an estimator saved with :func:`save`, without running any code from the file.

    The file is read with ``torch.load(weights_only=True)``, which builds nothing but
    plain data and tensors; a file holding other objects is refused. The networks are
    rebuilt from their configuration and weights, and the device is chosen again from
    the ``device`` parameter, as after unpickling: a model trained on a GPU loads on a
    machine without one (with a :class:`skcinn._torch_utils.DeviceWarning` when its
    ``device`` is ``"cuda"``).

    Parameters
    ----------
    path : str or os.PathLike
        A file written by :func:`save`.

    Returns
    -------
    CINNPosteriorEstimator or PosteriorEnsemble
        The fitted estimator (or ensemble), ready for ``sample_posterior``, ``predict``
        and further ``fit`` calls.

    Raises
    ------
    ValueError
        If the file is not an skcinn model, is truncated or corrupted, has a format
        version this skcinn does not read, or holds objects other than plain data and
        tensors.
    OSError
        If the file cannot be read (for example ``FileNotFoundError``).

    Warns
    -----
    skcinn._torch_utils.DeviceWarning
        If the estimator's ``device`` is ``"cuda"`` and CUDA is not available here.

    See Also
    --------
    save : Write the file.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> import skcinn
    >>> rng = np.random.default_rng(0)
    >>> theta = rng.normal(size=(500, 1))
    >>> X = theta + 0.5 * rng.normal(size=(500, 3))
    >>> est = skcinn.CINNPosteriorEstimator(max_iter=2, random_state=0).fit(X, theta)
    >>> path = Path(tempfile.mkdtemp()) / "posterior.skcinn"
    >>> skcinn.save(est, path)
    >>> loaded = skcinn.load(path)
    >>> bool(np.all(loaded.predict(X[:5]) == est.predict(X[:5])))
    True
    """
    path = os.fsdecode(os.fspath(path))
    where = f"The file {path!r}"
    payload = _read(path, where)
    if isinstance(payload, dict) and payload.get("kind") == "PosteriorEnsemble":
        return _ensemble_from_payload(payload, where)
    return _from_payload(payload, where)


def _ensemble_from_payload(payload: dict, where: str) -> PosteriorEnsemble:
    """Rebuild an ensemble: its members as single estimators, then itself around them."""
    params, state = _check_payload(payload, where, PosteriorEnsemble)
    members = payload.get("members")
    base = payload.get("estimator")
    if not isinstance(members, list) or not members or not (
        base is None or isinstance(base, dict)
    ):
        raise ValueError(
            f"{where} is corrupted: an ensemble file needs a non-empty list of members and "
            "its estimator's parameters (or None)."
        )
    fitted = [_from_payload(member, f"{where} (member {i})")
              for i, member in enumerate(members)]
    try:
        estimator = None if base is None else CINNPosteriorEstimator(**base)
        ensemble = PosteriorEnsemble(estimator, **params)
    except TypeError as exc:
        raise ValueError(
            f"{where} is corrupted: its parameters do not fit ({_first_line(exc)})."
        ) from exc
    ensemble._adopt(fitted)
    ensemble.fit_time_ = state.get("fit_time_")
    return ensemble


def _from_payload(payload: Any, where: str) -> CINNPosteriorEstimator:
    """Rebuild the estimator of a checked payload."""
    params, state = _check_payload(payload, where)
    decoded = _decode(state, payload["numpy"], where)
    estimator = CINNPosteriorEstimator(**params)
    try:
        estimator.__setstate__({**params, **decoded})  # rebuilds the networks, picks device_
    except (AttributeError, KeyError, IndexError, RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(
            f"{where} is corrupted or inconsistent: its fitted state could not be restored "
            f"({type(exc).__name__}: {_first_line(exc)})."
        ) from exc
    return estimator


_EXPECTED = (f"expected a file written by skcinn.save (format {FORMAT!r}, version "
             f"{FORMAT_VERSION})")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no detail"


def _read(path: str, where: str) -> Any:
    """The payload of ``path``, read with ``weights_only=True``."""
    with open(path, "rb") as f:  # read here: an OSError is about the file, not its content
        data = f.read()
    head = data[: len(_ZIP_MAGIC)]
    if head != _ZIP_MAGIC:
        raise ValueError(
            f"{where} is not an skcinn model file: {_EXPECTED}, which is a zip archive "
            f"starting with {_ZIP_MAGIC!r}; found a file starting with {head!r}."
        )
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = next((line.strip().rstrip(".") for line in str(exc).splitlines()
                       if "unsupported" in line.lower()), "")
        raise ValueError(
            f"{where} holds objects other than plain data and tensors, so it is not a file "
            f"written by skcinn.save and was refused without running its code"
            f"{' (' + detail + ')' if detail else ''}; {_EXPECTED}."
        ) from exc
    except Exception as exc:
        raise ValueError(
            f"{where} could not be read; it is truncated or corrupted ({type(exc).__name__}: "
            f"{_first_line(exc)}); {_EXPECTED}."
        ) from exc


def _check_payload(payload: Any, where: str, cls=CINNPosteriorEstimator) -> tuple[dict, dict]:
    """The parameters and encoded state of a payload of ``cls``, after checking its
    layout."""
    from . import __version__

    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = (f"a dict with keys {sorted(map(str, payload))[:8]}" if isinstance(payload, dict)
                 else f"a {type(payload).__name__}")
        if isinstance(payload, dict) and "format" in payload:
            found += f" and format={payload['format']!r}"
        raise ValueError(f"{where} is not an skcinn model file: {_EXPECTED}; found {found}.")
    version, written_by = payload.get("format_version"), payload.get("skcinn_version", "unknown")
    if type(version) is not int or version != FORMAT_VERSION:
        newer = type(version) is int and version > FORMAT_VERSION
        raise ValueError(
            f"{where} has skcinn file format version {version!r} (written by skcinn "
            f"{written_by}), but this skcinn {__version__} reads format version "
            f"{FORMAT_VERSION} only" + ("; upgrade skcinn to load it." if newer else ".")
        )
    for name, kind in (("params", dict), ("state", dict), ("numpy", list)):
        if not isinstance(payload.get(name), kind):
            raise ValueError(
                f"{where} is corrupted: its {name!r} entry should be a {kind.__name__}; found "
                f"{type(payload.get(name)).__name__}."
            )
    params, state = payload["params"], payload["state"]
    known = cls().get_params(deep=False)
    unknown = sorted(str(k) for k in params if k not in known)
    if unknown:
        raise ValueError(
            f"{where} sets parameters {unknown} that this skcinn {__version__} does not know "
            f"(written by skcinn {written_by}); upgrade skcinn to load it."
        )
    # fitted attributes only: nothing that would shadow a method or a parameter
    bad = sorted(str(k) for k in state
                 if type(k) is not str or k in known or hasattr(cls, k))
    if bad:
        raise ValueError(
            f"{where} is corrupted: its state sets {bad}, which are not fitted attributes."
        )
    if cls is CINNPosteriorEstimator and "network_" not in state:
        raise ValueError(f"{where} holds no fitted network (its state lacks 'network_').")
    return params, state
