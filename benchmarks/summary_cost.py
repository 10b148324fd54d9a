"""Cost of each set and series summary network against the data set size.

Run: ``python benchmarks/summary_cost.py [--sizes 16 64 256 1024] [--out FILE.json]``

Each network is built as the estimator builds it (``make_summary_network`` with the
default ``summary_dim=16`` and ``summary_hidden_sizes=(64, 64)``) for 2 features per
observation; a batch of 64 data sets of ``n`` observations each, with a mask (so the
recurrent networks take their packed path), is run forward and backward on one torch
thread. Reported: microseconds per data set (batch time / 64), the median of repeats.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from skcinn.networks.summary import make_summary_network

KINDS = ("deepset", "set_transformer", "gru", "lstm", "bigru", "bilstm", "tcn")
BATCH = 64
N_FEATURES = 2
HIDDEN = (64, 64)
SUMMARY_DIM = 16


def time_step(kind: str, n_obs: int, budget_s: float = 1.5) -> float:
    """Median seconds of one forward + backward pass over a batch of ``n_obs``-sized sets."""
    torch.manual_seed(0)
    net = make_summary_network(kind, N_FEATURES, SUMMARY_DIM, HIDDEN)
    x = torch.randn(BATCH, n_obs, N_FEATURES)
    mask = torch.ones(BATCH, n_obs, dtype=torch.bool)

    def step() -> None:
        net.zero_grad(set_to_none=True)
        net(x, mask).square().sum().backward()

    step()  # warm-up
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < budget_s and len(times) < 50):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(sizes: list[int]) -> dict:
    """Microseconds per data set for every network and size."""
    torch.set_num_threads(1)
    table: dict[str, dict[str, float]] = {}
    for kind in KINDS:
        table[kind] = {str(n): time_step(kind, n) / BATCH * 1e6 for n in sizes}
        print(f"  {kind} done", flush=True)
    return {
        "what": "forward + backward, microseconds per data set, batch 64, one torch thread",
        "batch": BATCH, "n_features": N_FEATURES, "hidden": list(HIDDEN),
        "summary_dim": SUMMARY_DIM, "sizes": sizes, "us_per_dataset": table,
        "torch": torch.__version__, "python": platform.python_version(),
        "machine": platform.machine(),
    }


def format_table(result: dict) -> str:
    """A Markdown table: one row per network, one column per size, plus the growth."""
    sizes = result["sizes"]
    head = "| network | " + " | ".join(f"n = {n}" for n in sizes)
    head += f" | ×{sizes[-1] // sizes[0]} size → × time |"
    lines = [head, "|---" * (len(sizes) + 2) + "|"]
    for kind, row in result["us_per_dataset"].items():
        cells = [f"{row[str(n)]:,.0f}" for n in sizes]
        growth = row[str(sizes[-1])] / row[str(sizes[0])]
        lines.append(f"| {kind} | " + " | ".join(cells) + f" | {growth:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 64, 256, 1024])
    default_out = Path(__file__).parent / "results" / "summary_cost.json"
    parser.add_argument("--out", type=Path, default=default_out)
    args = parser.parse_args()
    result = run(args.sizes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(format_table(result))


if __name__ == "__main__":
    main()
