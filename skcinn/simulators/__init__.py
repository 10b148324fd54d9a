"""Example models: each has a prior, a batched simulator and, where one exists, an
exact posterior."""

from .gaussian_mean import GaussianMean
from .linear_regression import LinearRegression
from .ricker import Ricker

__all__ = ["GaussianMean", "LinearRegression", "Ricker"]
