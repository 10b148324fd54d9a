"""Data sets of varying size: drawing sizes, splitting and packing observations."""

from __future__ import annotations

import numpy as np


def draw_sizes(spec: int | tuple[int, int], n: int, rng: np.random.Generator) -> np.ndarray:
    """Sizes of ``n`` data sets: ``spec`` if an int, else uniform on ``low..high``.

    Parameters
    ----------
    spec : int or tuple (low, high)
        A fixed size, or inclusive bounds of a uniform size.
    n : int
        Number of data sets.
    rng : numpy.random.Generator
        Draws the sizes (nothing is drawn when ``spec`` is an int).

    Returns
    -------
    ndarray of int, shape (n,)
    """
    if isinstance(spec, (int, np.integer)):
        return np.full(n, int(spec))
    low, high = spec
    return rng.integers(low, high + 1, size=n)


def pack_sets(rows: np.ndarray, sizes: np.ndarray) -> np.ndarray | list[np.ndarray]:
    """Rows (sum(sizes), d) of consecutive data sets -> array (n, size, d) or list.

    Parameters
    ----------
    rows : ndarray of shape (sum(sizes), d)
        The observations of data set 0, then those of data set 1, and so on.
    sizes : ndarray of int, shape (n,)
        Observations per data set.

    Returns
    -------
    ndarray of shape (n, size, d) when all sizes are equal, else a list of (size_i, d).
    """
    padded = np.zeros((len(sizes), int(sizes.max(initial=0)), rows.shape[1]))
    padded[np.arange(padded.shape[1]) < sizes[:, None]] = rows
    return split_sets(padded, sizes)


def split_sets(values: np.ndarray, lengths: np.ndarray) -> list[np.ndarray] | np.ndarray:
    """Padded (n, n_max, d) -> list of (n_i, d) arrays, or the array if sizes are equal."""
    if np.all(lengths == values.shape[1]):
        return values
    return [v[:k] for v, k in zip(values, lengths, strict=True)]
