"""The first fit in a fresh process against a second one in the same process: what a
process pays once (a command-line run, each worker of a grid search or of the peer
harness, whose fit times count it).

    python benchmarks/first_fit_cost.py two_moons gaussian_mean
    python benchmarks/first_fit_cost.py two_moons --code ../other-checkout   # A/B

Each repeat starts a new interpreter that fits ``CINNPosteriorEstimator(max_iter=E)`` on
the harness's pairs twice and reports the CPU seconds of each fit, whether the fit
imported ``torch._dynamo`` (``torch.optim`` does on first use), and the CPU seconds of
importing it afterwards. With ``--code`` the runs alternate between this checkout and
another one (its ``skcinn`` first on the path). Writes
``benchmarks/results/first_fit_cost.json``: medians over ``--repeats``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "first_fit_cost.json"
CHILD = textwrap.dedent("""
    import json, sys, time
    sys.path[:0] = [{code!r}, {here!r}]
    import torch
    torch.set_num_threads(1)
    from sbibm_harness import TASKS, training_pairs
    import skcinn
    from skcinn import CINNPosteriorEstimator
    task = TASKS[{task!r}]()
    theta, x = training_pairs(task, {budget}, 0)
    cpu = []
    for _ in range(2):
        start = time.process_time()
        CINNPosteriorEstimator(max_iter={epochs}, random_state=0).fit(x, theta)
        cpu.append(time.process_time() - start)
    imported = "torch._dynamo" in sys.modules
    start = time.process_time()
    import torch._dynamo  # noqa: F401
    print(json.dumps({{"first_fit_cpu_s": cpu[0], "second_fit_cpu_s": cpu[1],
                      "fit_imported_dynamo": imported,
                      "dynamo_import_cpu_s": time.process_time() - start,
                      "skcinn": skcinn.__file__}}))
""")


def _run(code: str, task: str, budget: int, epochs: int) -> dict:
    script = CHILD.format(code=code, here=str(HERE), task=task, budget=budget, epochs=epochs)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tasks", nargs="+")
    parser.add_argument("--budget", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--code", help="another checkout to alternate with")
    args = parser.parse_args()
    codes = {"this checkout": str(HERE.parent)}
    if args.code:
        codes["other checkout"] = str(Path(args.code).resolve())
    results: dict = {}
    for task in args.tasks:
        runs: dict = {name: [] for name in codes}
        for _ in range(args.repeats):
            for name, code in codes.items():
                runs[name].append(_run(code, task, args.budget, args.epochs))
        results[task] = {
            name: {key: (round(statistics.median(r[key] for r in rs), 2)
                         if key.endswith("_s") else rs[0][key])
                   for key in rs[0] if key != "skcinn"}
            for name, rs in runs.items()
        }
        print(task, json.dumps(results[task]))
    OUT.write_text(json.dumps({
        "command": "python benchmarks/first_fit_cost.py " + " ".join(
            args.tasks + [f"--budget {args.budget}", f"--epochs {args.epochs}",
                          f"--repeats {args.repeats}"]
            + (["--code <another checkout>"] if args.code else [])),
        "budget": args.budget, "epochs": args.epochs, "repeats": args.repeats,
        "results": results}, indent=1))


if __name__ == "__main__":
    main()
