"""One table of the model variants: params, int8 flash, peak RAM, MMAC per VGA frame, latency, WIDER AP.

Each row is a weight set (optionally with detector settings, ``NAME:key=value``). Sizes come from
the estimator in ``openmtcnn.compress.memory``; the R-Net and O-Net crops per frame it multiplies by
are *measured* with that weight set on WIDER val photos fitted to 640x480, so a P-Net that passes
fewer false candidates shows up in the MACs. Latency is ``bench_mtcnn`` on one such frame; AP is
the official protocol on the whole val subset. Finished rows are kept in the JSON and not redone;
``--redo latency`` times them again (on a quiet machine).

    .venv/bin/python benchmarks/variant_table.py published lite mcu --data ../shared/data --out runs/variants
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from openmtcnn import MTCNN
from openmtcnn.compress.memory import estimate
from openmtcnn.evaluate.compare import parse_model
from openmtcnn.evaluate.report import pyplot, save_figure
from openmtcnn.evaluate.speed import bench_mtcnn, fit_frame
from openmtcnn.evaluate.widerface import list_images, run_widerface
from openmtcnn.fileio import atomic_write_bytes
from openmtcnn.runtime.torch import load_net

VAL = "widerface/WIDER_val/images"
GT = "widerface/eval_tools/ground_truth"


def vga_frames(images: Path, count: int) -> list[np.ndarray]:
    """The first ``count`` val photos (sorted), fitted to 640x480."""
    keys = list_images(images)[:count]
    return [fit_frame(cv2.imread(str(images / f"{k}.jpg"))[:, :, ::-1], 640, 480) for k in keys]


def crops_per_frame(detector: MTCNN, frames: list[np.ndarray]) -> dict[str, float]:
    """Mean number of boxes entering R-Net and O-Net per frame (P-Net's and R-Net's survivors)."""
    counts = {"pnet": [], "rnet": []}
    detector.run(frames, until="rnet", observer=lambda stage, i, c, seconds: counts[stage].append(len(c.boxes)))
    return {"rnet": float(np.mean(counts["pnet"])), "onet": float(np.mean(counts["rnet"]))}


def row(spec: str, data: Path, frames: list[np.ndarray], threads: int, repeats: int, parts: set[str],
        done: dict | None = None) -> dict:
    """One table row; ``parts`` says which of "size", "latency", "ap" to (re)compute, the rest come from ``done``."""
    name, settings = parse_model(spec)
    detector = MTCNN(weights=name, threads=threads, **settings)
    r = dict(done or {}, model=spec)
    if "size" in parts or "mmac_vga" not in r:
        crops = crops_per_frame(detector, frames)
        nets = {s: load_net(name, s).net for s in ("pnet", "rnet", "onet")}
        e = estimate(nets, 640, 480, settings.get("min_face_size", 20), candidates=crops)
        r.update({"params": e["params"], "int8_kb": e["int8_bytes"] / 1024, "float32_kb": e["float32_bytes"] / 1024,
                  "peak_ram_int8_kb": e["peak_ram_int8"] / 1024, "mmac_vga": e["macs_per_frame"] / 1e6,
                  "rnet_crops": crops["rnet"], "onet_crops": crops["onet"]})
    if "latency" in parts or "latency_ms" not in r:
        latency = bench_mtcnn(detector, frames[0], repeats=repeats)
        r.update({"latency_ms": latency["median_ms"], "stages_ms": latency["stages_ms"], "threads": threads})
    if "ap" in parts and "easy" not in r:
        res = run_widerface(detector, data / VAL, data / GT)
        r.update({s: round(res[s]["ap"], 4) for s in ("easy", "medium", "hard")})
    return r


def markdown(rows: list[dict]) -> str:
    head = ("| variant | params | int8 flash KB | peak RAM KB (int8) | MMAC / VGA frame | R-Net / O-Net crops | "
            "latency ms | AP easy | AP medium | AP hard |")
    lines = [head, "|---" * 10 + "|"]
    for r in rows:
        ap = " | ".join(f"{r[k]:.4f}" if k in r else "" for k in ("easy", "medium", "hard"))
        lines.append(f"| {r['model']} | {r['params']:,} | {r['int8_kb']:.0f} | {r['peak_ram_int8_kb']:.0f} | "
                     f"{r['mmac_vga']:.0f} | {r['rnet_crops']:.0f} / {r['onet_crops']:.0f} | {r['latency_ms']:.1f} | {ap} |")
    return "\n".join(lines)


def label(spec: str) -> str:
    """A short name for a weight set path: runs/prune_rnet/step3/weights -> prune_rnet/step3."""
    return spec.removeprefix("runs/").removesuffix("/weights")


def plot(rows: list[dict], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for r in rows:
        if "medium" in r:
            ax.scatter(r["mmac_vga"], r["medium"], s=30 + r["params"] / 5000)
            ax.annotate(label(r["model"]), (r["mmac_vga"], r["medium"]), textcoords="offset points", xytext=(6, -3),
                        fontsize=8)
    ax.set_xlim(0, max(r["mmac_vga"] for r in rows) * 1.25)
    ax.set_xlabel("MMAC per 640x480 frame (measured crops)")
    ax.set_ylabel("WIDER val subset AP (medium)")
    ax.set_title("Variants: accuracy against compute (marker area ~ parameters)")
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="weight sets, optionally NAME:key=value,...")
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--out", default="runs/variants")
    ap.add_argument("--frames", type=int, default=20, help="VGA frames for the crop counts (default 20)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--no-ap", action="store_true", help="skip the WIDER evaluation")
    ap.add_argument("--redo", nargs="*", default=[], choices=["size", "latency", "ap"],
                    help="recompute these parts of rows already in the JSON (e.g. latency on a quiet machine)")
    args = ap.parse_args()
    out, data = Path(args.out), Path(args.data)
    out.mkdir(parents=True, exist_ok=True)
    table = out / "variants.json"
    done = {r["model"]: r for r in json.loads(table.read_text())} if table.is_file() else {}
    frames = vga_frames(data / VAL, args.frames)
    parts = set(args.redo) | (set() if args.no_ap else {"ap"})
    for spec in args.models:
        if spec in done and not args.redo and ("easy" in done[spec] or args.no_ap):
            continue
        if "ap" in args.redo:
            done.get(spec, {}).pop("easy", None)
        done[spec] = row(spec, data, frames, args.threads, args.repeats, parts, done.get(spec))
        print(json.dumps(done[spec]))
        atomic_write_bytes(table, (json.dumps(list(done.values()), indent=1) + "\n").encode())
    rows = list(done.values())
    atomic_write_bytes(out / "variants.md", (markdown(rows) + "\n").encode())
    plot(rows, out / "variants.png")
    print(markdown(rows))


if __name__ == "__main__":
    main()
