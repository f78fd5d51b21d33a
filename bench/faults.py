#!/usr/bin/env python3
"""Many kill -9 trials during rolling updates (tests/python/faults.py), half with surge, and a
summary for bench/RESULTS.md: trials, acknowledged writes, lost, invariant violations, restart
times. Run from the repository root after `cargo build --release`:

    .venv/bin/python bench/faults.py --trials 100 [--nodes 6] [--binary target/release/everynode]
"""

import argparse
import json
import os
import pathlib
import shutil
import statistics
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "python"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--nodes", type=int, default=6)
    parser.add_argument("--binary", default=str(ROOT / "target" / "release" / "everynode"))
    args = parser.parse_args()
    os.environ["EVERYNODE_BIN"] = args.binary
    from faults import rollout_with_a_kill  # after EVERYNODE_BIN is set

    results = []
    for trial in range(args.trials):
        surge = trial % 2 == 1
        data_dir = tempfile.mkdtemp(prefix="everynode-faults-")
        try:
            r = rollout_with_a_kill(data_dir, nodes=args.nodes, max_surge=1 if surge else 0,
                                    max_unavailable=0 if surge else 1, seed=trial)
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
        r["trial"], r["surge"] = trial, surge
        results.append(r)
        print(json.dumps(r), flush=True)
    restarts = [r["restart_seconds"] for r in results]
    summary = {
        "trials": len(results),
        "acknowledged_writes": sum(r["acknowledged"] for r in results),
        "lost": sum(len(r["lost"]) for r in results),
        "observations": sum(r["observations"] for r in results),
        "invariant_violations": sum(len(r["violations"]) for r in results),
        "restart_seconds_median": statistics.median(restarts),
        "restart_seconds_max": max(restarts),
    }
    print(json.dumps(summary))
    return 1 if summary["lost"] or summary["invariant_violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
