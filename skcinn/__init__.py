"""skcinn: amortized likelihood-free Bayesian inference as a scikit-learn estimator."""

from .estimator import CINNPosteriorEstimator
from .simulation import simulate

__version__ = "0.1.0"
__all__ = ["CINNPosteriorEstimator", "simulate", "__version__"]
