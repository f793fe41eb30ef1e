"""Print the package's room-to-room import edges with counts (the graph ``tests/test_layers.py`` checks).

Imports at any depth count, function-local ones too. Edges that go up the room order are marked
``UP``; the rooms and the parsing live in ``tests/test_layers.py``, so the two never disagree.

    .venv/bin/python benchmarks/import_graph.py            # counts per room pair
    .venv/bin/python benchmarks/import_graph.py --files    # and each import line behind them
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_layers import LEVEL, import_edges, room_counts, upward  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", action="store_true", help="list the import lines under each room pair")
    args = parser.parse_args()

    edges = import_edges()
    bad = set(upward(edges))
    counts = room_counts(edges)
    order = sorted(counts, key=lambda pair: (LEVEL.get(pair[0], len(LEVEL)), LEVEL.get(pair[1], len(LEVEL)), pair))
    width = max(len(f"{a} -> {b}") for a, b in order) if order else 0
    for src, dst in order:
        rows = [e for e in edges if e[2] == src and e[3] == dst]
        mark = "  UP" if any(e in bad for e in rows) else ""
        print(f"{f'{src} -> {dst}':<{width}}  {counts[src, dst]:4d}{mark}")
        if args.files:
            for file, line, _, _, target in rows:
                print(f"    {file}:{line}  {target}")
    inside = sum(1 for e in edges if e[2] == e[3])
    print(f"{len(edges)} imports: {len(edges) - inside} between rooms, {inside} within a room, {len(bad)} upward")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
