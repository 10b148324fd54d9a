"""Input validation shared by the estimator's methods: X in every form, and theta."""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_array, validate_data

from .data import (
    DataSets,
    check_finite,
    check_finite_streamed,
    from_nan_padded,
    is_list_of_sets,
    is_streamed,
    long_frame_to_sets,
)
from .simulation import as_datasets

_FORMS = {
    2: "flat features (n, n_features)",
    3: "data sets (n, n_obs, n_features) or a list of them",
    4: "grids (n, channels, height, width)",
}


class InputValidationMixin:
    """Checks of ``X`` and ``y`` that keep scikit-learn's messages and fitted names.

    Sets ``n_features_in_`` (features per observation) and, for DataFrames,
    ``feature_names_in_`` when ``reset`` is true; compares with them otherwise.
    """

    def _validate_X(self, X, reset: bool) -> DataSets:
        """X in any accepted form -> checked, float64 :class:`DataSets`."""
        names = None
        if is_streamed(X):
            if X.ndim not in (2, 3, 4):
                raise ValueError(f"X has shape {X.shape}; a bank on disk must have 2 to 4 axes.")
            return self._check_data(DataSets(X), None, reset)
        if getattr(self, "group_column", None) is not None and hasattr(X, "columns"):
            sets, names = long_frame_to_sets(X, self.group_column)
            data = as_datasets(sets)
        elif is_list_of_sets(X):
            data = as_datasets(X)
        elif hasattr(X, "shape") and len(X.shape) >= 3:
            values = check_array(X, allow_nd=True, ensure_all_finite=False)
            if values.ndim > 4:
                raise ValueError(
                    f"X has shape {values.shape}; expected at most 4 dimensions "
                    "(n_datasets, channels, height, width)."
                )
            data = from_nan_padded(values) if values.ndim == 3 else DataSets(values)
        else:
            return self._validate_flat(X, reset)
        return self._check_data(data, names, reset)

    def _check_data(self, data: DataSets, names: list[str] | None, reset: bool) -> DataSets:
        """Rank, finiteness, feature count and layout of sets, series or grids."""
        if not reset:
            self._check_rank(data.rank)
        if is_streamed(data.values):
            check_finite_streamed(data.values, "X", "data sets")
        else:
            check_finite(data.values, data.mask, "X", "data sets")
        self._check_features(data.n_features, reset)
        self._check_layout(data, names, reset)
        return data

    def _check_layout(self, data: DataSets, names: list[str] | None, reset: bool) -> None:
        """Grid shape and long-table column names must match those seen at fit."""
        shape = data.values.shape[1:] if data.rank == 4 else None
        if reset:
            self.input_shape_ = shape
            if names is not None:
                self.feature_names_in_ = np.asarray(names, dtype=object)
            return
        if shape != self.input_shape_:
            raise ValueError(
                f"X holds grids of shape {shape}, but {type(self).__name__} was fitted on "
                f"grids of shape {self.input_shape_}."
            )
        fitted = getattr(self, "feature_names_in_", None)
        if names is not None and fitted is not None and list(fitted) != names:
            raise ValueError(
                "The feature names should match those that were passed during fit. "
                f"Got {names}, expected {list(fitted)}."
            )

    def _validate_flat(self, X, reset: bool) -> DataSets:
        if not reset and getattr(X, "ndim", 2) == 2:
            self._check_rank(2)
        values = validate_data(self, X, reset=reset, dtype=np.float64, ensure_all_finite=False)
        check_finite(values, None, "X", "rows")
        if reset:
            self.input_shape_ = None
        return DataSets(values)

    def _check_rank(self, rank: int) -> None:
        if rank != self.input_rank_:
            raise ValueError(
                f"X has rank {rank} ({_FORMS[rank]}), but {type(self).__name__} was fitted "
                f"on {_FORMS[self.input_rank_]}; pass X in the form used for fit."
            )

    def _check_features(self, n_features: int, reset: bool) -> None:
        if reset:
            self.n_features_in_ = n_features
            self.__dict__.pop("feature_names_in_", None)
        elif n_features != self.n_features_in_:
            raise ValueError(
                f"X has {n_features} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )

    def _validate_theta(self, y, n: int, reset: bool) -> tuple[np.ndarray, bool]:
        """y -> float64 (n, n_params) array, and whether y was one-dimensional."""
        theta = check_array(y, ensure_2d=False, dtype=np.float64, ensure_all_finite=False,
                            input_name="y")
        was_1d = theta.ndim == 1
        if was_1d:
            theta = theta[:, None]
        if theta.ndim != 2 or len(theta) != n:
            raise ValueError(
                f"y has shape {theta.shape}, but X holds {n} data sets; expected y of shape "
                f"({n}, n_params) or ({n},)."
            )
        if not reset and theta.shape[1] != self.n_params_:
            raise ValueError(
                f"y has {theta.shape[1]} parameters, but {type(self).__name__} was fitted "
                f"with {self.n_params_}."
            )
        check_finite(theta, None, "y", "rows")
        return theta, was_1d
