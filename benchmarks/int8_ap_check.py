"""The int8 accuracy check: WIDER FACE AP of int8 runs against the float run, per subset, within a tolerance.

Reads the results.json that ``openmtcnn eval widerface`` writes; exits 1 when any run drops more
than --tolerance on any subset.

    .venv/bin/python benchmarks/int8_ap_check.py runs/wider_default runs/wider_int8 [more runs ...] --tolerance 0.01
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SUBSETS = ("easy", "medium", "hard")


def load_ap(run: str) -> dict[str, float]:
    return json.loads((Path(run) / "results.json").read_text())["ap"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("float_run", help="folder of the float weights' eval (results.json)")
    ap.add_argument("runs", nargs="+", help="folders of the int8 evals")
    ap.add_argument("--tolerance", type=float, default=0.01)
    args = ap.parse_args()
    ref = load_ap(args.float_run)
    print(f"{'run':40s} " + "  ".join(f"{s:>16s}" for s in SUBSETS) + "  within")
    print(f"{args.float_run:40s} " + "  ".join(f"{ref[s]:16.4f}" for s in SUBSETS))
    ok_all = True
    for run in args.runs:
        got = load_ap(run)
        ok = all(ref[s] - got[s] <= args.tolerance for s in SUBSETS)
        ok_all &= ok
        print(f"{run:40s} " + "  ".join(f"{got[s]:.4f} ({got[s] - ref[s]:+.4f})" for s in SUBSETS) +
              f"  {'yes' if ok else 'NO'}")
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
