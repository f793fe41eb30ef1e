"""Several models side by side on one dataset: one Markdown table and the plots in one folder."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from openmtcnn.fileio import atomic_write_bytes, write_json


@dataclass(frozen=True)
class Protocol:
    """How to score one model on a dataset, what to tabulate, and how to draw the comparison."""

    run: Callable[..., dict]  # (detector, out_dir) -> results
    columns: Callable[[dict], dict[str, float]]  # results -> table cells
    plot: Callable[[dict[str, dict], Path], Path | None]  # {model: results}, path -> PNG


def parse_model(spec: str) -> tuple[str, dict]:
    """'NAME[:key=value,...]' -> weight set and MTCNN settings, e.g. 'published:min_face_size=40'."""
    name, _, rest = spec.partition(":")
    settings = {}
    for item in filter(None, re.split(r",(?![^\[]*\])", rest)):  # commas outside [...]
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"bad model spec {spec!r}: settings are key=value, comma separated")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value
    return name, settings


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).name or str(name)) or "model"


def markdown_table(rows: dict[str, dict[str, float]]) -> str:
    """Models as rows, metrics as columns; numbers with four decimals."""
    cols = list(dict.fromkeys(c for r in rows.values() for c in r))
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| model | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    lines += [f"| {m} | " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for m, r in rows.items()]
    return "\n".join(lines)


def compare(models: list[str], make_detector: Callable[[str], object], protocol: Protocol,
            out_dir: str | Path, dataset: str) -> str:
    """Run every model, then write report.md, results.json and the comparison plot; return the table."""
    out = Path(out_dir)
    results = {}
    for model in models:
        results[model] = protocol.run(make_detector(model), out / slug(model))
    rows = {m: protocol.columns(r) for m, r in results.items()}
    table = markdown_table(rows)
    plot = protocol.plot(results, out / "comparison.png")
    report = f"# {dataset}: {', '.join(models)}\n\n{table}\n" + (f"\n![comparison]({plot.name})\n" if plot else "")
    atomic_write_bytes(out / "report.md", report.encode())
    write_json(out / "results.json", {"dataset": dataset, "table": rows})
    return table


def widerface_protocol(images: str | Path, gt: str | Path) -> Protocol:
    """WIDER FACE val AP per setting; PR curves of all models, one panel per setting."""
    from openmtcnn.evaluate.report import save_widerface
    from openmtcnn.evaluate.widerface import SETTINGS, run_widerface

    def run(detector, out_dir: Path) -> dict:
        results = run_widerface(detector, images, gt, out_dir)
        save_widerface(results, {}, out_dir)
        return results

    def columns(r: dict) -> dict[str, float]:
        return {f"AP {s}": r[s]["ap"] for s in SETTINGS}

    def plot(results: dict[str, dict], path: Path) -> Path | None:
        curves = {s: {m: r[s] for m, r in results.items()} for s in SETTINGS}
        return plot_panels(curves, path, "recall", "precision", "WIDER FACE val")

    return Protocol(run, columns, plot)


def landmarks_protocol(list_file: str | Path, images: str | Path) -> Protocol:
    """Landmark error (NME, failure rate, misses); CED curves of all models in one plot."""
    from openmtcnn.evaluate.landmarks import ced_errors, compare_ced, run_landmarks

    def columns(r: dict) -> dict[str, float]:
        return {"NME": r["mean_nme"], "failure rate @0.1": r["failure_rate"],
                "failure rate incl. misses": r["failure_rate_incl_misses"], "missed": r["missed"]}

    def plot(results: dict[str, dict], path: Path) -> Path | None:
        return compare_ced({m: ced_errors(r) for m, r in results.items()}, path)

    return Protocol(lambda det, out: run_landmarks(det, list_file, images, out), columns, plot)


def custom_protocol(dataset: list, iou: float = 0.5) -> Protocol:
    """Precision, recall, F1 and AP on a custom labelled set; PR curves of all models."""
    from openmtcnn.evaluate.custom import run_custom

    def columns(r: dict) -> dict[str, float]:
        return {"AP": r["ap"], "precision": r["precision"], "recall": r["recall"], "F1": r["f1"],
                "best F1": r["best_f1"]["f1"], "TP": r["tp"], "FP": r["fp"], "FN": r["fn"]}

    def plot(results: dict[str, dict], path: Path) -> Path | None:
        curves = {m: {**r["curve"], "ap": r["ap"]} for m, r in results.items()}
        return plot_panels({f"IoU {iou}": curves}, path, "recall", "precision", "custom set")

    return Protocol(lambda det, out: run_custom(det, dataset, out, iou=iou), columns, plot)


def fddb_protocol(images: str | Path, folds: str | Path) -> Protocol:
    """FDDB true positive rate at 500/1000/2000 false positives; discrete and continuous ROC of all models."""
    from openmtcnn.evaluate.fddb import run_fddb

    def columns(r: dict) -> dict[str, float]:
        return {f"TPR@{n} {k}": r["tpr_at_fp"][k][str(n)]["tpr"] for k in ("discrete", "continuous")
                for n in (500, 1000, 2000)}

    def plot(results: dict[str, dict], path: Path) -> Path | None:
        panels = {k: {m: {"recall": r["curves"]["fp"], "precision": r["curves"][f"tpr_{k}"],
                          "ap": r["tpr_at_fp"][k]["1000"]["tpr"]} for m, r in results.items()}
                  for k in ("discrete", "continuous")}
        return plot_panels(panels, path, "false positives", "true positive rate", "FDDB", "TPR@1000", xlim=None)

    return Protocol(lambda det, out: run_fddb(det, images, folds, out), columns, plot)


def plot_panels(panels: dict[str, dict[str, dict]], path: Path, xlabel: str, ylabel: str, title: str,
                score: str = "AP", xlim: tuple | None = (0, 1)) -> Path | None:
    """One subplot per panel, one curve per model (entries: x in 'recall', y in 'precision', and 'ap')."""
    from openmtcnn.evaluate.report import plot_png

    def draw(*axes) -> None:
        for ax, (panel, curves) in zip(axes, panels.items()):
            for model, c in curves.items():
                ax.plot(c["recall"], c["precision"], lw=2, label=f"{model}  {score} {c['ap']:.3f}")
            ax.set(xlabel=xlabel, ylabel=ylabel, ylim=(0, 1.01), title=f"{title}: {panel}")
            if xlim:
                ax.set_xlim(*xlim)
            ax.grid(alpha=0.3)
            ax.legend(loc="lower left", fontsize=8)

    return plot_png(path, draw, panels=len(panels), size=(5 * len(panels), 4.5), dpi=110)
