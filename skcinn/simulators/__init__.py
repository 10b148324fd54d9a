"""Example models: each has a prior, a batched simulator and, where one exists, an
exact posterior.

Analytic examples: :class:`GaussianMean`, :class:`LinearRegression`. Applications of the
cINN paper: :class:`Ricker`, :class:`SIR`, :class:`DiffusionDecisionModel`,
:class:`LevyFlightModel`, :class:`LeakyCompetingAccumulator`, :class:`TelegraphModel`.
Benchmark tasks of simulation-based inference (sbibm): :class:`TwoMoons`,
:class:`SLCP`, :class:`GaussianLinear`.
"""

from .benchmark_tasks import SLCP, GaussianLinear, TwoMoons
from .ddm import DiffusionDecisionModel
from .gaussian_mean import GaussianMean
from .gene_expression import TelegraphModel
from .lca import LeakyCompetingAccumulator
from .levy_flight import LevyFlightModel
from .linear_regression import LinearRegression
from .ricker import Ricker
from .sir import SIR

__all__ = [
    "SIR",
    "SLCP",
    "DiffusionDecisionModel",
    "GaussianLinear",
    "GaussianMean",
    "LeakyCompetingAccumulator",
    "LevyFlightModel",
    "LinearRegression",
    "Ricker",
    "TelegraphModel",
    "TwoMoons",
]
