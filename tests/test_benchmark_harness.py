"""Smoke test of ``benchmarks/sbibm_harness.py`` (the SBI benchmark against sbi/BayesFlow).

One task with an exact posterior (Gaussian linear, no sbibm needed), 500 simulations,
skcinn with tiny networks through the harness's subprocess runner, C2ST against exact
posterior draws, results JSON + Markdown table + figure in a temporary folder. The peers
(sbi, BayesFlow) run only where ``benchmarks/peers/install.sh`` created their venvs.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "benchmarks" / "sbibm_harness.py"

TINY = {
    "skcinn": {"hidden_layer_sizes": [16, 16], "n_coupling_blocks": 2, "max_iter": 8},
    "sbi_maf": {"train": {"max_num_epochs": 3}},
    "sbi_nsf": {"train": {"max_num_epochs": 3}},
    "bayesflow": {"fit": {"epochs": 2}},
}


@pytest.fixture(scope="module")
def harness():
    spec = importlib.util.spec_from_file_location("sbibm_harness", HARNESS)
    module = importlib.util.module_from_spec(spec)
    sys.modules["sbibm_harness"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def _run(harness, tmp_path, methods):
    return harness.run_benchmark(
        ["gaussian_linear"], [500], [0], methods,
        out_dir=tmp_path / "results", work_dir=tmp_path / "work",
        n_observations=2, n_reference=1000, n_amortized=20, n_amortized_draws=50,
        method_options={m: TINY[m] for m in methods}, sbibm_tasks_dir=None,
        timeout=300, run_id="smoke", log=lambda *_: None)


def test_c2st_separates_and_matches(harness):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(600, 2)), rng.normal(size=(600, 2))
    assert harness.c2st(a, b) < 0.6
    assert harness.c2st(a, b + 3.0) > 0.95


def test_sufficient_statistics(harness):
    sets = [np.arange(6.0).reshape(3, 2), np.ones((2, 2))]
    stats = harness.sufficient_statistics(sets)
    assert stats.shape == (2, 2 + 3 + 1)
    np.testing.assert_allclose(stats[0], [2, 3, 20 / 3, 26 / 3, 35 / 3, 3])
    np.testing.assert_allclose(stats[1], [1, 1, 1, 1, 1, 2])


def test_harness_end_to_end_skcinn(harness, tmp_path):
    path = _run(harness, tmp_path, ["skcinn"])
    doc = json.loads(path.read_text())
    assert doc["tasks"]["gaussian_linear"]["available"]
    assert {"cpu_model", "cpu_simd"} <= set(doc["meta"]["machine"])
    (run,) = doc["runs"]
    assert run["status"] == "ok", run.get("log_tail") or run.get("error")
    assert len(run["c2st"]) == 2
    assert all(0.5 - 0.05 <= v <= 1.0 for v in run["c2st"])  # chance level has noise
    assert 0.5 - 0.05 <= run["c2st_mean"] <= 1.0
    assert run["sample_obs_shape"] == [2, 1000, 10]
    assert run["sample_amortized_shape"] == [20, 50, 10]
    assert run["fit_wall_s"] > 0 and run["epochs"] >= 1
    assert run["process_peak_rss_mib"] > 0
    assert run["outside_prior_obs"] is None  # Gaussian prior: unbounded
    draws = np.load(run["draws_path"])["draws"]
    assert draws.shape == (2, 1000, 10) and np.isfinite(draws).all()

    md, png = path.with_suffix(".md"), path.with_suffix(".png")
    assert md.exists() and png.exists() and png.stat().st_size > 0
    rows = [line for line in md.read_text().splitlines()
            if line.startswith("| gaussian_linear | 500 | skcinn |")]
    assert len(rows) == 1
    table = harness.render_table(doc)
    assert "| gaussian_linear | 500 | skcinn |" in table

    # `score` leaves complete entries alone and re-renders the report
    harness.score(path, log=lambda *_: None)
    assert json.loads(path.read_text())["runs"][0]["c2st"] == run["c2st"]


def test_merge_keeps_runs_of_earlier_defaults_apart(harness):
    def doc(run_id, info=None, epochs=100):
        runs = [{"task": "slcp", "budget": 1000, "seed": 0, "method": m, "c2st_mean": 0.9,
                 "epochs": epochs} for m in ("skcinn", "sbi_maf")]
        if info is not None:
            runs[0]["method_info"] = info
        meta = {"run_id": run_id, "tasks": ["slcp"], "budgets": [1000], "seeds": [0],
                "methods": ["skcinn", "sbi_maf"]}
        return {"meta": meta, "tasks": {}, "runs": runs}

    merged = harness.merge([
        doc("20261125_084036"),
        doc(harness.ADAPTIVE_SINCE),  # after the adaptive schedule, before the average
        doc(harness.ADAPTIVE_SINCE, {"learning_rate": "adaptive"}),
        doc(harness.ADAPTIVE_SINCE, {"learning_rate": "adaptive", "ema_decay": 0.99}),
        doc(harness.AVERAGE_SINCE),
        # before the final anneal: only a fit that ran into the last fifth of max_iter
        # would have changed
        doc(harness.AVERAGE_SINCE, {"ema_decay": 0.99}, epochs=170),
        doc(harness.AVERAGE_SINCE, {"ema_decay": 0.99, "anneal_fraction": 0.2}, epochs=170),
    ])
    assert merged["meta"]["methods"] == [
        "skcinn_cosine60", "sbi_maf", "skcinn_no_ema", "skcinn", "skcinn_no_anneal"]
    assert [r["method"] for r in merged["runs"]] == [
        "skcinn_cosine60", "sbi_maf", "skcinn_no_ema", "sbi_maf", "skcinn_no_ema", "sbi_maf",
        "skcinn", "sbi_maf", "skcinn", "sbi_maf", "skcinn_no_anneal", "sbi_maf",
        "skcinn", "sbi_maf"]


def test_targets_table_draws_fall_back_to_the_fit_budget_marked(harness):
    """A skcinn variant drawn only at 10^4 shows those draws, marked; sbi's stay at 10^3."""
    def run(method, budget, draws, c2st=0.6):
        return {"task": "slcp", "budget": budget, "seed": 0, "method": method,
                "status": "ok", "c2st_mean": c2st, "fit_cpu_s": 10.0,
                "sample_amortized_wall_s": draws}

    doc = {"meta": {"run_id": "x", "tasks": ["slcp"], "budgets": [1000, 10000],
                    "seeds": [0], "methods": ["skcinn", "skcinn_spline", "sbi_maf"]},
           "tasks": {},
           "runs": [run("skcinn", 1000, 1.5), run("skcinn", 10000, None),
                    run("skcinn_spline", 10000, 4.25), run("sbi_maf", 1000, 30.0),
                    run("sbi_maf", 10000, None, c2st=0.9)]}
    row = harness.render_targets(doc, ours=("skcinn", "skcinn_spline")).splitlines()[2]
    assert "| 1.50 / 4.25† / 30.00 |" in row
    assert "| 0.600 / 0.600 | 0.900 (sbi_maf) | 0.870 | yes |" in row


@pytest.mark.parametrize("method", ["sbi_maf", "bayesflow"])
def test_harness_peer(harness, tmp_path, method):
    ok, why = harness.methods()[method].available()
    if not ok:
        pytest.skip(why)
    path = _run(harness, tmp_path, [method])
    (run,) = json.loads(path.read_text())["runs"]
    assert run["status"] == "ok", run.get("log_tail") or run.get("error")
    assert 0.45 <= run["c2st_mean"] <= 1.0


def test_runs_record_the_kind_of_cpu(harness):
    """Timings compare across days only on one kind of CPU: the record names its model
    and widest vector extension."""
    avx512 = "processor\t: 0\nmodel name\t: AMD EPYC 9B14\nflags\t\t: fpu sse2 avx2 avx512f\n"
    avx2 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2\n"
    assert harness.cpu_description(avx512) == {"cpu_model": "AMD EPYC 9B14",
                                               "cpu_simd": "avx512"}
    assert harness.cpu_description(avx2)["cpu_simd"] == "avx2"
    assert harness.cpu_description("") == {"cpu_model": None, "cpu_simd": None}
