"""Priors and simulators: the protocols of skcinn and the simulation of training pairs.

A **prior** is a callable ``prior(n, rng) -> ndarray (n, n_params)``, a scipy.stats
distribution, or a dict or list of univariate ones (:func:`as_prior`, from
:mod:`skcinn._priors`).

A **simulator** is a callable ``simulator(theta, rng) -> X`` for a batch of parameters,
returning an ndarray (n, n_features), an ndarray (n, n_obs, n_features), or a list of n
arrays (n_obs_i, n_features); :func:`batch_simulator` makes one from a function of one
parameter vector.

**Simulation at scale** (:func:`simulate_datasets`, behind :func:`simulate` and
``fit(simulator, prior)``). A seed, then all parameters, are drawn in the calling
process. The parameters are cut into chunks of ``CHUNK_SIZE`` rows; chunk ``k`` gets the
generator ``default_rng(SeedSequence(seed).spawn(n_chunks)[k])`` and the chunks run
through ``joblib.Parallel(n_jobs)`` on the active backend (loky, threads, or Dask inside
``joblib.parallel_config("dask")``). So the data depend on the seed only, not on
``n_jobs`` or the backend; and as chunk ``k``'s data do not depend on ``n``, more pairs
extend the full chunks of fewer whenever the prior's draws do (a multivariate prior
does, a dict of priors, drawn column by column, does not). A simulation **fails** when it
raises or returns NaN or inf. A chunk whose batched call raises is simulated again one
parameter vector at a time (row ``i`` with the ``SeedSequence`` child ``i`` of the
chunk's) to isolate the failing ones. Failures are dropped with one RuntimeWarning
naming the first; more than half failing is a ValueError chained to the first exception.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from joblib import Parallel, delayed

from ._priors import Prior, as_prior
from .data import DataSets, check_ragged, count_nonfinite, is_list_of_sets, pad

__all__ = ["CHUNK_SIZE", "BatchSimulator", "Prior", "as_datasets", "as_prior",
           "batch_simulator", "simulate", "simulate_datasets"]

#: Parameter vectors per simulation task.
#:
#: Fixed, so that the data do not depend on n_jobs. Large enough to hide a task's
#: overhead (and to call the simulator once for up to 500 pairs, as before chunking),
#: small enough to spread 10,000 pairs over 20 workers.
CHUNK_SIZE = 500


def as_datasets(X, n: int | None = None, source: str = "X") -> DataSets:
    """Turn simulator output or user input of any accepted form into ``DataSets``.

    Parameters
    ----------
    X : array-like or list of array-like
        An array (n, n_features), (n, n_obs, n_features) or (n, channels, height,
        width), or a list of n arrays (n_obs_i, n_features).
    n : int, optional
        The number of data sets expected; a ValueError if ``X`` holds another number.
    source : str, default="X"
        How error messages name ``X``.

    Returns
    -------
    skcinn.data.DataSets
        One float64 array (lists padded) and the mask of real observations.
    """
    if is_list_of_sets(X):
        data = pad(check_ragged(X))
    else:
        try:
            values = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"{source} must be an array (n, n_features) or (n, n_obs, n_features) or a "
                f"list of (n_obs_i, n_features) arrays; could not convert it: {exc}"
            ) from None
        if values.ndim not in (2, 3, 4):
            raise ValueError(
                f"{source} has shape {values.shape}; expected (n, n_features), "
                "(n, n_obs, n_features), (n, channels, height, width) or a list of "
                "(n_obs_i, n_features) arrays."
            )
        data = DataSets(values)
    if n is not None and len(data) != n:
        raise ValueError(f"{source} returned {len(data)} data sets for {n} parameter vectors.")
    return data



# ------------------------------------------------------------- per-parameter simulators


def _assemble(arrays: list[np.ndarray]) -> np.ndarray | list[np.ndarray]:
    """One array if every data set has the same shape, else the list of them."""
    return np.stack(arrays) if arrays and len({a.shape for a in arrays}) == 1 else arrays


class BatchSimulator:
    """A batched simulator made from ``fn(theta_i, rng) -> x_i``; see :func:`batch_simulator`.

    Parameters
    ----------
    fn : callable
        ``fn(theta_i, rng) -> x_i`` for one parameter vector ``theta_i``.

    Attributes
    ----------
    fn : callable
        The per-parameter function.
    """

    def __init__(self, fn: Callable[[np.ndarray, np.random.Generator], np.ndarray]) -> None:
        if not callable(fn):
            raise TypeError(f"batch_simulator needs a callable fn(theta_i, rng); got {fn!r}.")
        self.fn = fn

    def __repr__(self) -> str:
        return f"batch_simulator({getattr(self.fn, '__qualname__', self.fn)})"

    def simulate_each(self, theta, rng: np.random.Generator) -> list[np.ndarray | Exception]:
        """``fn`` on a copy of each row of ``theta`` (n, n_params), in turn, sharing ``rng``.

        Parameters
        ----------
        theta : array-like of shape (n, n_params)
            The parameter vectors.
        rng : numpy.random.Generator
            The generator passed to every call of ``fn``.

        Returns
        -------
        list of ndarray or Exception
            One entry per row: its data set as a float64 array of at least one
            dimension (possibly holding NaN or inf), or the exception ``fn`` raised.
        """
        theta = np.asarray(theta, dtype=np.float64)
        results: list[np.ndarray | Exception] = []
        for row in theta.reshape(len(theta), -1):
            try:
                results.append(np.atleast_1d(np.asarray(self.fn(row.copy(), rng), np.float64)))
            except Exception as exc:  # a failed simulation: recorded, never fatal
                results.append(exc)
        return results

    def __call__(self, theta, rng: np.random.Generator) -> np.ndarray | list[np.ndarray]:
        """Simulate every row of ``theta``; those that raise come back all-NaN.

        Returns an array (n, *x_i.shape) when all data sets share a shape, else a list.
        A failed simulation is an all-NaN array shaped like the first that did not raise
        (``(1,)`` if none), so ``~np.isfinite(X[i]).all()`` tells every failure.
        """
        results = self.simulate_each(theta, rng)
        shape = next((r.shape for r in results if isinstance(r, np.ndarray)), (1,))
        return _assemble(
            [r if isinstance(r, np.ndarray) else np.full(shape, np.nan) for r in results]
        )


def batch_simulator(fn: Callable[[np.ndarray, np.random.Generator], np.ndarray]) -> BatchSimulator:
    """Turn a simulator of one parameter vector into a batched simulator.

    Parameters
    ----------
    fn : callable
        ``fn(theta_i, rng) -> x_i``: ``theta_i`` of shape (n_params,), ``x_i`` an array
        of features (n_features,) or a data set (n_obs, n_features); ``n_obs`` may vary.

    Returns
    -------
    BatchSimulator
        ``simulator(theta, rng) -> X``: an array (n, ...) when all ``x_i`` share a shape,
        else a list. Failures never stop a batch: a simulation that raises comes back as
        an all-NaN array (one returning NaN or inf as it is). ``fit`` and
        :func:`simulate` also keep the exceptions, drop and count the failures, and
        report the first. Picklable when ``fn`` is a module-level function, as
        process-based joblib backends need (loky and Dask also ship closures).

    Examples
    --------
    >>> import numpy as np
    >>> def one(theta_i, rng):
    ...     return theta_i + rng.normal(size=(10, 2))
    >>> batch_simulator(one)(np.zeros((3, 2)), np.random.default_rng(0)).shape
    (3, 10, 2)
    """
    return BatchSimulator(fn)


# ------------------------------------------------------------------ chunked simulation


@dataclass
class _Chunk:
    """A chunk's successful data sets (None if none), the sorted indices of its failures,
    whether each raised (else NaN or inf), and the exception of the first that raised."""

    data: DataSets | None
    failed: np.ndarray
    raised: np.ndarray
    error: BaseException | None = None


def _portable(exc: Exception) -> BaseException:
    """``exc``, or a RuntimeError with its text if it cannot travel back from a worker."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def _from_rows(results: list[DataSets | Exception]) -> _Chunk:
    """A chunk from per-row results: a data set of one, or an exception."""
    failed, raised, kept, error = [], [], [], None
    for i, result in enumerate(results):
        if isinstance(result, DataSets) and not len(count_nonfinite(result.values, result.mask)):
            kept.append(result)
            continue
        failed.append(i)
        raised.append(isinstance(result, Exception))
        if raised[-1] and error is None:
            error = _portable(result)
    return _Chunk(_concat(kept) if kept else None, np.array(failed, dtype=np.int64),
                  np.array(raised, dtype=bool), error)


def _one_row(simulator: Callable, theta: np.ndarray, seed) -> DataSets | Exception:
    """A batched simulator's data set for a batch of one row, or the exception it raised."""
    try:
        out = simulator(theta, np.random.default_rng(seed))
    except Exception as exc:
        return exc
    return as_datasets(out, 1, source="The simulator")


def _simulate_chunk(simulator: Callable, theta: np.ndarray, seed: np.random.SeedSequence):
    """Simulate one chunk (in a worker); isolate the failing rows if the batch raises."""
    rng = np.random.default_rng(seed)
    if isinstance(simulator, BatchSimulator):
        return _from_rows([
            r if isinstance(r, Exception) else as_datasets(r[None], 1, source="The simulator")
            for r in simulator.simulate_each(theta, rng)
        ])
    try:
        out = simulator(theta, rng)
    except Exception:  # retried row by row, row i with its own child seed
        return _from_rows([
            _one_row(simulator, theta[i : i + 1],
                     np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, i)))
            for i in range(len(theta))
        ])
    data = as_datasets(out, len(theta), source="The simulator")
    bad = count_nonfinite(data.values, data.mask)
    keep = np.setdiff1d(np.arange(len(data)), bad)
    return _Chunk(data.take(keep) if len(keep) else None, bad, np.zeros(len(bad), dtype=bool))


def _concat(parts: list[DataSets]) -> DataSets:
    """Stack data sets in order; sets or series of different sizes are padded, masked."""
    shapes = {p.values.shape[1:] for p in parts}
    if len(parts) == 1:
        return parts[0]
    if len(shapes) == 1 and all(p.mask is None for p in parts):
        return DataSets(np.concatenate([p.values for p in parts]))
    if {len(s) for s in shapes} != {2} or len({s[1] for s in shapes}) != 1:
        raise ValueError(
            f"The simulator returned data sets of different shapes {sorted(shapes)}; only "
            "the number of observations may vary between data sets."
        )
    values = np.zeros((sum(map(len, parts)), max(s[0] for s in shapes), shapes.pop()[1]))
    mask = np.zeros(values.shape[:2], dtype=bool)
    start = 0
    for p in parts:
        stop, size = start + len(p), p.values.shape[1]
        values[start:stop, :size] = p.values
        mask[start:stop, :size] = True if p.mask is None else p.mask
        start = stop
    return DataSets(values, mask)


def _report_failures(theta: np.ndarray, failed: np.ndarray, raised: np.ndarray,
                     error: BaseException | None) -> None:
    """One RuntimeWarning about the dropped simulations; a ValueError if most failed."""
    n, k, r = len(theta), len(failed), int(raised.sum())
    what = ("returned NaN or inf" if r == 0 else "raised an exception" if r == k
            else f"failed ({r} raised an exception, {k - r} returned NaN or inf)")
    if 2 * k > n:
        first = f"The first was for parameters {theta[failed[0]].tolist()}."
        if error is not None:
            first = (f"The first exception, {type(error).__name__}: {error}, was raised for "
                     f"parameters {theta[failed[raised][0]].tolist()}.")
        raise ValueError(
            f"{k} of {n} simulations {what}; with more than half failing, the simulator "
            f"(or the prior's range) needs fixing. {first}"
        ) from error
    cause = f"{type(error).__name__}: {error}" if raised[0] else "NaN or inf"
    warnings.warn(
        f"{k} of {n} simulations {what} and were dropped; the first ({cause}) was for "
        f"parameters {theta[failed[0]].tolist()}.",
        RuntimeWarning,
        stacklevel=3,
    )


def simulate_datasets(
    simulator: Callable, prior: Prior, n: int, rng: np.random.Generator,
    n_jobs: int | None = None, chunk_size: int = CHUNK_SIZE,
) -> tuple[DataSets, np.ndarray, np.ndarray]:
    """Draw ``n`` pairs in chunks, in parallel; drop and count the failed simulations.

    Seeding, chunks and failures are described in the module docstring.

    Parameters
    ----------
    simulator : callable
        ``simulator(theta, rng) -> X`` for a batch of parameters.
    prior : Prior
        The prior in normal form (:func:`as_prior`).
    n : int
        Number of pairs.
    rng : numpy.random.Generator
        Draws the seed of the chunks, then the parameters.
    n_jobs : int or None, default=None
        ``joblib.Parallel`` workers; None means 1 unless inside a
        ``joblib.parallel_config`` context. With 1, no worker is started.
    chunk_size : int, default=CHUNK_SIZE
        Parameter vectors per task. The data depend on it, not on ``n_jobs``.

    Returns
    -------
    data : DataSets
        The successful simulations, in the order of ``theta``.
    theta : ndarray of shape (n_kept, n_params)
        Their parameters.
    failed : ndarray of shape (n_failed, n_params)
        Parameters whose simulation raised or returned NaN or inf, in draw order.

    Raises
    ------
    ValueError
        If more than half of the simulations fail (chained to the first exception).
    """
    if not callable(simulator):
        raise TypeError(f"simulator must be callable simulator(theta, rng); got {simulator!r}.")
    for name, value in (("n", n), ("chunk_size", chunk_size)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    seed = int(rng.integers(2**63))  # before theta, so that it does not depend on n
    theta = prior.sample(n, rng)
    starts = range(0, n, chunk_size)
    seeds = np.random.SeedSequence(seed).spawn(len(starts))
    chunks = Parallel(n_jobs=n_jobs)(
        delayed(_simulate_chunk)(simulator, theta[s : s + chunk_size], seeds[k])
        for k, s in enumerate(starts)
    )
    failed = np.concatenate([s + c.failed for s, c in zip(starts, chunks, strict=True)])
    if len(failed):
        raised = np.concatenate([c.raised for c in chunks])
        error = next((c.error for c in chunks if c.error is not None), None)
        _report_failures(theta, failed, raised, error)
    data = _concat([c.data for c in chunks if c.data is not None])
    return data, np.delete(theta, failed, axis=0), theta[failed]


def simulate(
    simulator: Callable, prior, n: int, *, random_state=None, n_jobs: int | None = None
) -> tuple[np.ndarray | list, np.ndarray]:
    """Simulate a bank of ``n`` training pairs ``(X, theta)``, in parallel if asked.

    The chunked, seeded path of ``CINNPosteriorEstimator.fit(simulator, prior)`` (see
    the module docstring): the pairs depend on ``random_state``, not on ``n_jobs`` or the
    joblib backend.

    Parameters
    ----------
    simulator : callable
        ``simulator(theta, rng) -> X`` for a batch of parameters (:func:`batch_simulator`
        makes one from a function of one parameter vector).
    prior : callable, scipy.stats distribution, or dict/list of them
        See the module docstring.
    n : int
        Number of pairs drawn.
    random_state : int, numpy.random.Generator or None, default=None
        Seed of the draws.
    n_jobs : int or None, default=None
        Joblib workers; None means 1 unless inside a ``joblib.parallel_config`` context
        (``with joblib.parallel_config("dask"):`` simulates on a Dask cluster).

    Returns
    -------
    X : ndarray or list of ndarray
        The successful simulations: an array (n_kept, ...) when all data sets have the
        same shape, else a list of (n_obs_i, n_features) arrays.
    theta : ndarray of shape (n_kept, n_params)
        Their parameters; failures are dropped with a RuntimeWarning.
    """
    rng = np.random.default_rng(random_state)
    data, theta, _ = simulate_datasets(simulator, as_prior(prior), n, rng, n_jobs=n_jobs)
    if data.mask is None:
        return data.values, theta
    return [values[real] for values, real in zip(data.values, data.mask, strict=True)], theta
