"""Plots: every figure renders off-screen and holds the expected artists; parameter
names reach titles and legends; without matplotlib the functions say how to install it.
"""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pandas as pd
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import skcinn.plotting  # noqa: E402
from skcinn import CINNPosteriorEstimator  # noqa: E402
from skcinn.diagnostics import recovery  # noqa: E402
from skcinn.plotting import (  # noqa: E402
    plot_coverage,
    plot_losses,
    plot_pairs,
    plot_recovery,
    plot_sbc_ecdf,
    plot_sbc_histograms,
)
from skcinn.simulators import GaussianMean  # noqa: E402

NAMES = ["alpha", "beta", "gamma"]
TINY = dict(hidden_layer_sizes=(8,), summary_dim=2, n_coupling_blocks=2, max_iter=3,
            random_state=0, device="cpu")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def exact():
    """Truth and exact posterior draws of 100 data sets, three parameters."""
    rng = np.random.default_rng(0)
    model = GaussianMean(n_params=3, n_obs=(2, 10))
    theta = model.sample_prior(100, rng)
    return model.sample_posterior(model.simulate(theta, rng), 99, rng), theta


@pytest.fixture(scope="module")
def flat_data():
    rng = np.random.default_rng(1)
    theta = rng.normal(size=(300, 2))
    return theta + 0.5 * rng.normal(size=(300, 2)), theta


def render(fig) -> None:
    assert isinstance(fig, Figure)
    fig.canvas.draw()


def test_sbc_ecdf_has_one_line_per_parameter_and_a_band(exact):
    fig = plot_sbc_ecdf(*exact, random_state=0)
    render(fig)
    (ax,) = fig.axes
    assert len(ax.lines) == 3 and len(ax.collections) == 1
    assert [line.get_label() for line in ax.lines] == ["theta_0", "theta_1", "theta_2"]
    z, _ = ax.lines[0].get_data()
    assert 0 < z.min() and z.max() < 1


def test_sbc_histograms_have_bins_and_the_uniform_interval(exact):
    fig = plot_sbc_histograms(*exact, parameter_names=NAMES, n_bins=10, random_state=0)
    render(fig)
    assert len(fig.axes) == 3
    for ax, name in zip(fig.axes, NAMES, strict=True):
        assert ax.get_title() == name
        assert len(ax.patches) == 10 and len(ax.collections) == 1
        assert sum(patch.get_height() for patch in ax.patches) == 100


def test_recovery_has_one_panel_per_parameter_with_r2(exact):
    fig = plot_recovery(*exact, parameter_names=NAMES)
    render(fig)
    r2 = recovery(*exact, parameter_names=NAMES)["r2"]
    assert len(fig.axes) == 3
    for ax, name in zip(fig.axes, NAMES, strict=True):
        assert ax.get_title() == f"{name}: $R^2$ = {r2[name]:.3f}"
        assert len(ax.containers) == 1  # the error bars


def test_coverage_has_one_line_per_parameter_and_the_diagonal(exact):
    draws, theta = exact
    fig = plot_coverage(draws, pd.DataFrame(theta, columns=NAMES), levels=[0.2, 0.5, 0.8])
    render(fig)
    (ax,) = fig.axes
    labels = [line.get_label() for line in ax.lines]
    assert labels == ["calibrated", *NAMES] and len(ax.collections) == 1
    np.testing.assert_allclose(ax.lines[1].get_xdata(), [0.2, 0.5, 0.8])


@pytest.mark.parametrize("truth", [None, np.zeros(3)])
def test_pairs_is_a_p_by_p_grid(exact, truth):
    fig = plot_pairs(exact[0][0], theta_true=truth, parameter_names=NAMES)
    render(fig)
    axes = np.array(fig.axes).reshape(3, 3)
    for i in range(3):
        assert len(axes[i, i].patches) == 30  # histogram bins
        assert len(axes[i, i].lines) == (truth is not None)
        assert all(len(axes[i, j].collections) == 1 for j in range(3) if j != i)
        assert axes[2, i].get_xlabel() == NAMES[i]
    assert len(axes[0, 1].lines) == (truth is not None)  # the star


def test_pairs_accepts_one_parameter_and_a_leading_axis(exact):
    assert len(plot_pairs(exact[0][0, :, 0]).axes) == 1
    assert len(plot_pairs(exact[0][:1]).axes) == 9
    with pytest.raises(ValueError, match="one data set"):
        plot_pairs(exact[0])
    with pytest.raises(ValueError, match="theta_true"):
        plot_pairs(exact[0][0], theta_true=[0.0])


def test_losses_with_and_without_validation(flat_data):
    est = CINNPosteriorEstimator(**TINY).fit(*flat_data)
    fig = plot_losses(est)
    render(fig)
    (ax,) = fig.axes
    assert [line.get_label() for line in ax.lines] == ["training", "validation"]
    np.testing.assert_allclose(ax.lines[1].get_ydata(), -np.asarray(est.validation_scores_))
    plain = CINNPosteriorEstimator(**TINY, early_stopping=False).fit(*flat_data)
    pipe = Pipeline([("scale", StandardScaler()), ("cinn", plain)])
    assert len(plot_losses(pipe).axes[0].lines) == 1
    with pytest.raises(NotFittedError):
        plot_losses(CINNPosteriorEstimator())


def test_single_axes_plots_draw_into_a_given_axes(exact):
    fig, (left, right) = plt.subplots(1, 2)
    assert plot_sbc_ecdf(*exact, random_state=0, ax=left) is fig
    assert plot_coverage(*exact, ax=right) is fig
    assert len(fig.axes) == 2


def test_missing_matplotlib_says_how_to_install(monkeypatch, exact):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    module = importlib.reload(skcinn.plotting)  # importing needs no matplotlib
    with pytest.raises(ImportError, match=r"pip install skcinn\[plot\]"):
        module.plot_recovery(*exact)
