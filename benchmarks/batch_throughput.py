"""Images/s of ``openmtcnn batch`` on the WIDER FACE val photos: local with 1 and 2 workers, Ray with 2, in one run.

    .venv/bin/python benchmarks/batch_throughput.py ../shared/data/widerface --out runs/batch_throughput.json
    .venv/bin/python benchmarks/batch_throughput.py ../shared/data/widerface --limit 10 --out /tmp/smoke.json

FOLDER is the WIDER FACE folder (its WIDER_val/images is used) or any folder of images. Each run is
``run_batch`` into a fresh output folder, CPU only, one thread per worker. ``images_per_s`` counts the
whole run (listing, starting workers or Ray, writing Parquet); ``after_first_result_images_per_s`` the
images after the first chunk's, over the time after it came back (the steady rate, without start-up).
The rows of every run are compared with the first's: ``same_rows`` says whether they are identical.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

RUNS = (("local", 1), ("local", 2), ("ray", 2))


def photos(folder: Path, limit: int | None) -> list[str]:
    """The image files to run on, sorted, at most ``limit``."""
    from openmtcnn.detect.image import image_files

    root = folder / "WIDER_val" / "images" if (folder / "WIDER_val" / "images").is_dir() else folder
    if not root.is_dir():
        sys.exit(f"not a folder: {root}")
    files = [str(p) for p in image_files(root)][:limit]
    if not files:
        sys.exit(f"no images under {root}")
    return files


def one_run(files: list[str], out: Path, engine: str, workers: int, args: argparse.Namespace) -> tuple[dict, object]:
    """One engine's summary with its rates, and the rows it wrote."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from openmtcnn.batch import BatchConfig, run_batch

    cfg = BatchConfig(engine=engine, workers=workers, threads=1, device="cpu", shard_size=args.shard_size,
                      batch_size=args.batch_size, progress=False)
    s = run_batch(files, out, cfg)
    steady = s["seconds"] - (s["first_result_seconds"] or 0)
    after = round(max(s["images"] - args.batch_size, 0) / steady, 3) if steady > 0 else None
    s.update(workers=workers, images_per_s=round(s["images"] / s["seconds"], 3), after_first_result_images_per_s=after)
    return s, pa.concat_tables([pq.read_table(p) for p in sorted(out.glob("part-*.parquet"))])


def versions() -> dict:
    """The packages the figures depend on."""
    import onnxruntime
    import pyarrow

    import openmtcnn

    found = {"openmtcnn": openmtcnn.__version__, "onnxruntime": onnxruntime.__version__, "pyarrow": pyarrow.__version__}
    try:
        import ray

        found["ray"] = ray.__version__
    except ImportError:
        found["ray"] = None
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path, help="the WIDER FACE folder (or any folder of images)")
    p.add_argument("--limit", type=int, help="only the first N photos (sorted): a smoke run")
    p.add_argument("--shard-size", type=int, default=100, help="images per Parquet file (default 100)")
    p.add_argument("--batch-size", type=int, default=8, help="images per detect call (default 8)")
    p.add_argument("--out", type=Path, default=Path("runs/batch_throughput.json"))
    args = p.parse_args()
    files = photos(args.folder, args.limit)
    runs, first = [], None
    with tempfile.TemporaryDirectory(prefix="batch_throughput.") as tmp:
        for engine, workers in RUNS:
            if engine == "ray" and versions()["ray"] is None:
                runs.append({"engine": engine, "workers": workers, "skipped": "no Ray: pip install 'openmtcnn[scale]'"})
                continue
            summary, rows = one_run(files, Path(tmp) / f"{engine}{workers}", engine, workers, args)
            first = rows if first is None else first
            summary["same_rows"] = rows.equals(first)
            del summary["out"]
            runs.append(summary)
            print(f"{engine} x{workers}: {summary['images']} images in {summary['seconds']:.1f} s, "
                  f"{summary['images_per_s']:.2f} images/s ({summary['after_first_result_images_per_s']} after the "
                  f"first result), same rows: {summary['same_rows']}", flush=True)
    rate = {(r["engine"], r["workers"]): r.get("images_per_s") for r in runs}
    ratios = {"local2_over_local1": rate[("local", 2)] / rate[("local", 1)],
              "ray2_over_local2": rate[("ray", 2)] / rate[("local", 2)] if rate[("ray", 2)] else None}
    report = {"images": len(files), "folder": str(args.folder), "shard_size": args.shard_size,
              "batch_size": args.batch_size, "cpus": os.cpu_count(),
              "machine": platform.processor() or platform.machine(),
              "python": platform.python_version(), "versions": versions(), "when": time.strftime("%Y-%m-%d %H:%M:%S"),
              "runs": runs, "ratios": {k: None if v is None else round(v, 3) for k, v in ratios.items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"ratios: {report['ratios']} -> {args.out}")


if __name__ == "__main__":
    main()
