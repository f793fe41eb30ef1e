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
