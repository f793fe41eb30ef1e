"""The comparison report: model specs, the table, and a real two-model run on three WIDER images."""
from __future__ import annotations

import json

import pytest

from openmtcnn.evaluate.compare import Protocol, compare, markdown_table, parse_model


def test_parse_model_specs():
    assert parse_model("published") == ("published", {})
    assert parse_model("published:min_face_size=40,thresholds=[0.5,0.6,0.7]") == (
        "published", {"min_face_size": 40, "thresholds": [0.5, 0.6, 0.7]})
    assert parse_model("runs/w:backend=onnx") == ("runs/w", {"backend": "onnx"})
    with pytest.raises(ValueError, match="key=value"):
        parse_model("published:min_face_size")


def test_markdown_table_has_a_row_per_model():
    table = markdown_table({"a": {"AP easy": 0.5, "AP hard": 0.25}, "b": {"AP easy": 1.0}})
    lines = table.splitlines()
    assert lines[0] == "| model | AP easy | AP hard |"
    assert lines[2] == "| a | 0.5000 | 0.2500 |" and lines[3] == "| b | 1.0000 |  |"


def test_compare_runs_each_model_and_writes_the_report(tmp_path):
    seen = []
    protocol = Protocol(run=lambda det, out: {"score": det},
                        columns=lambda r: {"score": r["score"]},
                        plot=lambda results, path: None)

    def make(spec):
        seen.append(spec)
        return {"m1": 0.25, "m2": 0.75}[spec]

    table = compare(["m1", "m2"], make, protocol, tmp_path, "toy")
    assert seen == ["m1", "m2"] and "| m2 | 0.7500 |" in table
    assert json.loads((tmp_path / "results.json").read_text())["table"] == {"m1": {"score": 0.25},
                                                                            "m2": {"score": 0.75}}
    assert (tmp_path / "report.md").read_text().startswith("# toy: m1, m2")


def test_compare_command_on_three_wider_images(widerface_dir, tmp_path, capsys):
    from openmtcnn.cli.main import main
    from openmtcnn.evaluate.widerface import list_images

    src = widerface_dir / "WIDER_val" / "images"
    keys = [k for k in list_images(src) if k.startswith("19--Couple/")][:3]
    images = tmp_path / "images"
    for k in keys:
        (images / k).parent.mkdir(parents=True, exist_ok=True)
        (images / f"{k}.jpg").symlink_to(src / f"{k}.jpg")
    out = tmp_path / "cmp"
    code = main(["eval", "compare", "published", "published:min_face_size=60", "--on", "widerface",
                 "--images", str(images), "--gt", str(widerface_dir / "eval_tools" / "ground_truth"),
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    rows = json.loads((out / "results.json").read_text())["table"]
    assert set(rows) == {"published", "published:min_face_size=60"}
    # a larger minimum face size cannot find more of the hard setting's small faces
    assert rows["published:min_face_size=60"]["AP hard"] <= rows["published"]["AP hard"]
    assert (out / "comparison.png").is_file() and (out / "report.md").is_file()
    assert (out / "published" / "results.json").is_file()


def test_compare_command_needs_its_dataset_paths(capsys):
    from openmtcnn.cli.main import main

    assert main(["eval", "compare", "published", "--on", "widerface"]) == 2
    assert "--images" in capsys.readouterr().err


def test_compare_on_a_custom_set_and_on_fddb(astronaut, astronaut_face, tmp_path, capsys):
    import cv2
    import numpy as np

    from openmtcnn.cli.main import main

    data = tmp_path / "set.npz"
    np.savez(data, images=astronaut[None], boxes=np.array([[0, *astronaut_face]]))
    code = main(["eval", "compare", "published", "published:thresholds=[0.6,0.7,0.99999]", "--on", "custom",
                 "--images", str(data), "--format", "npy", "--out", str(tmp_path / "c")])
    assert code == 0, capsys.readouterr().err
    rows = json.loads((tmp_path / "c" / "results.json").read_text())["table"]
    assert rows["published"]["TP"] == 1 and rows["published"]["AP"] == 1.0
    assert rows["published:thresholds=[0.6,0.7,0.99999]"]["TP"] <= 1
    assert (tmp_path / "c" / "comparison.png").is_file()

    images, folds = tmp_path / "pics", tmp_path / "folds"
    (images / "nasa").mkdir(parents=True)
    folds.mkdir()
    cv2.imwrite(str(images / "nasa" / "a.jpg"), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    x1, y1, x2, y2 = astronaut_face
    ellipse = [(y2 - y1) * 0.6, (x2 - x1) / 2, 1.5708, (x1 + x2) / 2, (y1 + y2) / 2 - (y2 - y1) * 0.1]
    (folds / "FDDB-fold-01-ellipseList.txt").write_text("nasa/a\n1\n" + " ".join(map(str, ellipse)) + " 1\n")
    code = main(["eval", "compare", "published", "--on", "fddb", "--images", str(images), "--folds", str(folds),
                 "--out", str(tmp_path / "f")])
    assert code == 0, capsys.readouterr().err
    rows = json.loads((tmp_path / "f" / "results.json").read_text())["table"]
    assert rows["published"]["TPR@500 discrete"] == 1.0
    assert main(["eval", "compare", "published", "--on", "custom", "--images", str(data)]) == 2
