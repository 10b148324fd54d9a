"""Posterior draws as pandas DataFrames."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def draws_to_frame(draws: np.ndarray, names: Sequence[str]) -> pd.DataFrame:
    """Long table of draws: columns ``dataset``, ``draw`` and one per parameter.

    Parameters
    ----------
    draws : ndarray of shape (n_datasets, n_samples, n_params)
    names : sequence of str
        Parameter names, one per column of the last axis.
    """
    n_sets, n_samples, _ = draws.shape
    frame = pd.DataFrame(draws.reshape(n_sets * n_samples, -1), columns=list(names))
    frame.insert(0, "draw", np.tile(np.arange(n_samples), n_sets))
    frame.insert(0, "dataset", np.repeat(np.arange(n_sets), n_samples))
    return frame


def summarize_draws(
    draws: np.ndarray, names: Sequence[str], quantiles: Sequence[float]
) -> pd.DataFrame:
    """Mean, standard deviation and quantiles per data set and parameter.

    Returns a DataFrame indexed by (``dataset``, ``parameter``) with columns ``mean``,
    ``std`` and ``q<level>`` for each quantile level (e.g. ``q0.05``).
    """
    n_sets, _, n_params = draws.shape
    columns = {"mean": draws.mean(axis=1), "std": draws.std(axis=1)}
    levels = np.quantile(draws, quantiles, axis=1)  # (n_quantiles, n_sets, n_params)
    for q, values in zip(quantiles, levels, strict=True):
        columns[f"q{q:g}"] = values
    index = pd.MultiIndex.from_product(
        [np.arange(n_sets), list(names)], names=["dataset", "parameter"]
    )
    return pd.DataFrame({k: v.reshape(-1) for k, v in columns.items()}, index=index)
