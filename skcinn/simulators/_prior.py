"""Drawing from a simulator's prior given as a dict of independent scipy.stats laws."""

from __future__ import annotations

import numpy as np

from .._priors import as_prior


class IndependentPrior:
    """``sample_prior`` for a model whose ``prior`` property is a dict of univariate
    scipy.stats distributions keyed by parameter name."""

    prior: dict

    def sample_prior(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``n`` parameter vectors from the prior.

        Parameters
        ----------
        n : int
            Number of draws.
        rng : numpy.random.Generator
            The only source of randomness.

        Returns
        -------
        ndarray of shape (n, n_params)
            Parameter vectors drawn from the prior, one per row (columns in the order
            of ``prior``).
        """
        return as_prior(self.prior).sample(n, rng)
