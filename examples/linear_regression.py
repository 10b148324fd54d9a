"""
Bayesian linear regression: amortized posteriors checked against the exact ones
===============================================================================

The toy model of the cINN paper: weights with a Gaussian prior, known noise, data sets of
5 to 50 pairs (x, y). One estimator, trained once on simulations, gives the posterior of
every data set in one call. Because the model is conjugate, the exact posterior is known
and we can see how close the amortized one is.

Run ``python examples/linear_regression.py``; set ``SKCINN_EXAMPLE_BUDGET=small`` for a
quick run (as the test suite does). Figures go to ``$SKCINN_EXAMPLE_OUTPUT`` (default
``figures/``).
"""

import os
import tempfile
import time

import matplotlib
import numpy as np

import skcinn
from skcinn import CINNPosteriorEstimator
from skcinn.plotting import plot_pairs, plot_recovery, plot_sbc_ecdf
from skcinn.simulators import LinearRegression

matplotlib.use("Agg")  # write files, open no windows
small = os.environ.get("SKCINN_EXAMPLE_BUDGET") == "small"
output = os.environ.get("SKCINN_EXAMPLE_OUTPUT", "figures")
os.makedirs(output, exist_ok=True)
model = LinearRegression(n_params=2, noise_std=1.0, n_obs=(5, 50))

# %%
# Train on simulations drawn from the prior: ``fit(simulator, prior)``.
est = CINNPosteriorEstimator(
    n_simulations=2_000 if small else 10_000, max_iter=5 if small else 60, random_state=0
)
start = time.perf_counter()
est.fit(model.simulate, model.prior)
print(f"trained on {est.n_simulations_} simulations in {time.perf_counter() - start:.1f} s")

# %%
# Posteriors for 1,000 new data sets in one call, next to the exact ones.
rng = np.random.default_rng(1)
theta = model.sample_prior(1000, rng)
X = model.simulate(theta, rng)
start = time.perf_counter()
draws = est.sample_posterior(X, n_samples=1000, random_state=0)
print(f"10^6 posterior draws in {time.perf_counter() - start:.2f} s")
mean, cov = model.posterior(X)
sd = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
print("median |mean - exact| / exact sd:",
      np.round(np.median(np.abs(draws.mean(1) - mean) / sd, axis=0), 3))
print("median sd / exact sd:", np.round(np.median(draws.std(1) / sd, axis=0), 3))

# %%
# A table per data set and parameter.
print(est.posterior_summary(X[:2], quantiles=(0.05, 0.95), random_state=0))

# %%
# Is the posterior calibrated? Simulation-based calibration, coverage and recovery.
print(est.check_calibration(model.simulate, model.prior, n_datasets=200, random_state=0))

# %%
# Figures: posterior means against the truth, the SBC ECDF, and one posterior.
names = est.parameter_names_
figures = {"recovery": plot_recovery(draws, theta, names),
           "sbc_ecdf": plot_sbc_ecdf(draws, theta, names, random_state=0),
           "pairs": plot_pairs(draws[0], theta[0], names)}
for kind, fig in figures.items():
    fig.savefig(os.path.join(output, f"linear_regression_{kind}.png"), dpi=100)

# %%
# Share the trained model as a file that loads without executing code.
with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "linear_regression.skcinn")
    skcinn.save(est, path)
    again = skcinn.load(path)
    same = np.array_equal(again.sample_posterior(X[:3], 10, random_state=0),
                          est.sample_posterior(X[:3], 10, random_state=0))
    print("loaded model draws the same samples:", same)
