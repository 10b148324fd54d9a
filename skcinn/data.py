"""Data sets in any accepted form -> one padded array with a mask.

skcinn's ``X`` always has a leading axis of data sets:

* flat features, ``ndarray`` of shape (n_datasets, n_features);
* i.i.d. sets or time series of equal size, ``ndarray`` (n_datasets, n_obs, n_features);
* data sets of different sizes, a list of n_datasets arrays (n_obs_i, n_features), or
  an array (n_datasets, max_n_obs, n_features) padded at the end with all-NaN rows;
* grids, ``ndarray`` (n_datasets, channels, height, width);
* a long pandas DataFrame, one row per observation and a column naming the data set.

Ragged data are padded once (vectorised, no per-observation Python loop) and carry a
boolean mask of real observations.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass

import numpy as np


@dataclass
class DataSets:
    """Data sets as one array plus a mask of real observations.

    Attributes
    ----------
    values : ndarray of shape (n_datasets, n_features) or (n_datasets, n_obs, n_features)
    mask : ndarray of bool of shape (n_datasets, n_obs), or None (every entry is real)
    """

    values: np.ndarray
    mask: np.ndarray | None = None
    rows: np.ndarray | None = None  # for a bank on disk: the rows taken, read lazily

    def __len__(self) -> int:
        return len(self.values) if self.rows is None else len(self.rows)

    @property
    def rank(self) -> int:
        """2 for flat features, 3 for sets or series, 4 for grids."""
        return self.values.ndim

    @property
    def n_features(self) -> int:
        """Features per observation: columns, last axis of sets, channels of grids."""
        return self.values.shape[1] if self.rank == 4 else self.values.shape[-1]

    def take(self, index: np.ndarray) -> DataSets:
        """The data sets at ``index`` (a new object; padding kept; banks stay on disk)."""
        if is_streamed(self.values):
            rows = np.arange(len(self.values)) if self.rows is None else self.rows
            return DataSets(self.values, None, rows[index])
        return DataSets(self.values[index], None if self.mask is None else self.mask[index])


def is_list_of_sets(X) -> bool:
    """Whether ``X`` is a list/tuple of per-data-set 2-D arrays (sizes may differ)."""
    return isinstance(X, (list, tuple)) and len(X) > 0 and np.ndim(X[0]) == 2


def pad(sets: list[np.ndarray]) -> DataSets:
    """Pad a list of (n_obs_i, n_features) arrays to (n, max n_obs_i, n_features) + mask."""
    lengths = np.fromiter((len(s) for s in sets), dtype=np.int64, count=len(sets))
    flat = np.concatenate(sets, axis=0)
    rows = np.repeat(np.arange(len(sets)), lengths)
    cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    values = np.zeros((len(sets), lengths.max(), flat.shape[-1]), dtype=flat.dtype)
    values[rows, cols] = flat
    mask = np.zeros(values.shape[:2], dtype=bool)
    mask[rows, cols] = True
    return DataSets(values, mask)


def from_nan_padded(values: np.ndarray) -> DataSets:
    """Sets (n, n_obs, d) whose trailing all-NaN observations are padding -> values + mask.

    Raises a ValueError for an all-NaN observation followed by a real one, and for a data
    set with no real observation.
    """
    real = ~np.isnan(values).all(axis=-1)
    if real.all():
        return DataSets(values)
    lengths = real.sum(axis=1)
    prefix = np.arange(values.shape[1]) < lengths[:, None]
    bad = np.flatnonzero((real != prefix).any(axis=1) | (lengths == 0))
    if len(bad):
        raise ValueError(
            f"Data set {bad[0]} has all-NaN observations before real ones or no real "
            "observation; pad data sets only at the end, with whole rows of NaN."
        )
    return DataSets(np.where(real[..., None], values, 0.0), real)


def long_frame_to_sets(frame, group_column: str) -> tuple[list[np.ndarray], list[str]]:
    """A long DataFrame (one row per observation) -> one array per data set.

    Data sets are ordered by their sorted group key; observations keep their row order.
    Returns the list of (n_obs_i, n_features) arrays and the feature column names.
    """
    if group_column not in frame.columns:
        raise ValueError(
            f"X has no column {group_column!r} naming the data sets (group_column); "
            f"its columns are {list(frame.columns)}."
        )
    features = [c for c in frame.columns if c != group_column]
    keys = frame[group_column].to_numpy()
    order = np.argsort(keys, kind="stable")
    values = frame[features].to_numpy(dtype=np.float64)[order]
    _, starts = np.unique(keys[order], return_index=True)
    return np.split(values, starts[1:]), [str(c) for c in features]


def check_ragged(sets, n_features: int | None = None) -> list[np.ndarray]:
    """Validate a list of data sets: 2-D, non-empty, numeric, one feature count."""
    out = []
    for i, s in enumerate(sets):
        a = np.asarray(s, dtype=np.float64)
        if a.ndim != 2:
            raise ValueError(
                f"Data set {i} has shape {a.shape}; each data set in a list must be a 2-D "
                "array (n_obs, n_features)."
            )
        if len(a) == 0:
            raise ValueError(
                f"Data set {i} is empty; each data set needs at least one observation."
            )
        n_features = a.shape[1] if n_features is None else n_features
        if a.shape[1] != n_features:
            raise ValueError(
                f"Data set {i} has {a.shape[1]} features per observation, but data set 0 "
                f"has {n_features}; all data sets must have the same number of features."
            )
        out.append(a)
    return out


def count_nonfinite(values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Indices of data sets (rows) holding a NaN or inf among their real entries."""
    bad = ~np.isfinite(values)
    if mask is not None:
        bad &= mask[..., None]
    return np.flatnonzero(bad.reshape(len(values), -1).any(axis=1))


def check_finite(values: np.ndarray, mask: np.ndarray | None, name: str, unit: str) -> None:
    """Raise a ValueError naming how many rows of ``values`` hold NaN or inf."""
    bad = count_nonfinite(values, mask)
    if len(bad):
        raise ValueError(
            f"{name} contains NaN or inf in {len(bad)} of {len(values)} {unit} "
            f"(first at index {bad[0]}). Remove those {unit} or replace the values."
        )


# ----------------------------------------------------------- banks larger than memory

STREAM_CHUNK = 4096  # rows read at a time when validating or summarising a bank


def is_streamed(X) -> bool:
    """Whether ``X`` is a file-backed bank (``numpy.memmap``) to be read in batches."""
    return isinstance(X, np.memmap)


def read_rows(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``array[rows]`` as a float64 array, for sorted ``rows``.

    An original ``numpy.memmap`` is read with ``os.pread`` (one call per run of
    consecutive rows), so the rows never become part of the process's resident memory
    through the mapping; other arrays are indexed directly.
    """
    base = getattr(array, "base", None)
    if not (isinstance(array, np.memmap) and isinstance(base, mmap.mmap)
            and array.filename and array.flags.c_contiguous):
        return np.asarray(array[rows], dtype=np.float64)
    row_bytes = array.dtype.itemsize * int(np.prod(array.shape[1:], dtype=np.int64))
    out = np.empty((len(rows), *array.shape[1:]), dtype=array.dtype)
    view = out.reshape(len(rows), -1).view(np.uint8)
    starts = np.flatnonzero(np.diff(rows, prepend=-2) != 1)
    ends = np.append(starts[1:], len(rows))
    fd = os.open(array.filename, os.O_RDONLY)
    try:
        for a, b in zip(starts, ends, strict=True):
            size = (b - a) * row_bytes
            chunk = os.pread(fd, size, array.offset + int(rows[a]) * row_bytes)
            view[a:b].reshape(-1)[:] = np.frombuffer(chunk, dtype=np.uint8)
    finally:
        os.close(fd)
    return out.astype(np.float64, copy=False)


def stream_chunks(array: np.ndarray, size: int = STREAM_CHUNK):
    """Consecutive blocks of rows of ``array`` as float64 arrays (see :func:`read_rows`)."""
    for start in range(0, len(array), size):
        yield read_rows(array, np.arange(start, min(start + size, len(array))))


def check_finite_streamed(array: np.ndarray, name: str, unit: str) -> None:
    """:func:`check_finite` for a bank on disk, read block by block."""
    bad, start = [], 0
    for block in stream_chunks(array):
        bad.extend(start + count_nonfinite(block))
        start += len(block)
    if bad:
        raise ValueError(
            f"{name} contains NaN or inf in {len(bad)} of {len(array)} {unit} "
            f"(first at index {bad[0]}). Remove those {unit} or replace the values."
        )
