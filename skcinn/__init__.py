"""skcinn: amortized likelihood-free Bayesian inference as a scikit-learn estimator."""

from .ensemble import PosteriorEnsemble
from .estimator import CINNPosteriorEstimator
from .metrics import sample_posterior
from .persistence import load, save
from .simulation import simulate

__version__ = "0.1.0"
__all__ = [
    "CINNPosteriorEstimator",
    "PosteriorEnsemble",
    "load",
    "sample_posterior",
    "save",
    "simulate",
    "__version__",
]
