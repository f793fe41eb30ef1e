"""Evaluation results as JSON and PNG plots."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Callable

from openmtcnn.fileio import atomic_write_bytes, write_json


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save_figure(fig, path: str | Path) -> Path:
    """Write a figure as PNG, atomically, and free it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    fig.clf()
    import matplotlib.pyplot as plt
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def plot_png(path: str | Path, draw: Callable[..., None], panels: int = 1, size: tuple[float, float] = (6, 5),
             dpi: int = 120) -> Path | None:
    """Make a figure of ``panels`` side-by-side axes, let ``draw(*axes)`` fill them, save it as PNG atomically.

    The part every evaluation plot shares; None (and no file) when matplotlib is not installed.
    """
    plt = pyplot()
    if plt is None:
        return None
    fig, axes = plt.subplots(1, panels, figsize=size, dpi=dpi, squeeze=False)
    draw(*axes[0])
    fig.tight_layout()
    return save_figure(fig, path)


def plot_pr(curves: dict[str, dict], path: Path, title: str) -> Path | None:
    """Precision-recall curves, one per entry (needs matplotlib; skipped without it)."""
    def draw(ax) -> None:
        for name, c in curves.items():
            ax.plot(c["recall"], c["precision"], lw=2, label=f"{name}  AP {c['ap']:.3f}")
        ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01), title=title)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left")

    return plot_png(path, draw)


def save_widerface(results: dict, settings: dict, out_dir: str | Path) -> str:
    """Write results.json and pr_curve.png; return a one-line summary."""
    from openmtcnn.evaluate.loop import failed_note

    out = Path(out_dir)
    summary = {s: round(results[s]["ap"], 4) for s in ("easy", "medium", "hard")}
    payload = {"ap": summary, "images": results["images"], "failed": results["failed"], "settings": settings,
               "curves": {s: {k: results[s][k] for k in ("precision", "recall", "faces")}
                          for s in ("easy", "medium", "hard")}}
    summary_lines = []
    if "stages" in results:
        from openmtcnn.evaluate.diagnose import markdown

        payload["stages"] = results["stages"]
        table = markdown(results["stages"])
        atomic_write_bytes(out / "stages.md", (table + "\n").encode())
        summary_lines = ["", "where the faces of the hard setting are lost:", table]
    write_json(out / "results.json", payload)
    plot_pr({s: results[s] for s in ("easy", "medium", "hard")}, out / "pr_curve.png",
            f"WIDER FACE val ({results['images']} images)")
    return "\n".join([f"AP easy {summary['easy']:.4f}  medium {summary['medium']:.4f}  hard {summary['hard']:.4f}"
                      f"  ({results['images']} images{failed_note(results)}) -> {out}/results.json, "
                      f"{out}/pr_curve.png", *summary_lines])
