"""``openmtcnn data`` / ``openmtcnn train``: usage errors, and the whole pipeline on a few real pictures."""
from __future__ import annotations

import json

from openmtcnn.cli.main import main


def test_usage_errors(tmp_path, capsys):
    assert main(["train", "pnet", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    assert "sample set" in capsys.readouterr().err
    assert main(["data", "pnet", "--wider", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "wider_face_train_bbx_gt.txt" in capsys.readouterr().err
    # --epochs: three numbers only for 'all', checked before any sample is generated
    assert main(["train", "all", "--wider", str(tmp_path), "--out", str(tmp_path / "o"), "--epochs", "4", "2"]) == 2
    assert "three (P-Net R-Net O-Net)" in capsys.readouterr().err
    assert main(["train", "rnet", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--epochs", "4", "2", "1"]) == 2
    assert "--epochs takes one number" in capsys.readouterr().err
    assert main(["train", "rnet", "--random", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "--data MINED RANDOM" in capsys.readouterr().err
    assert main(["train", "all", "--wider", str(tmp_path), "--out", str(tmp_path / "o"), "--mix", "3", "-1", "1", "2"]) == 1
    assert "mix must be four non-negative ratios" in capsys.readouterr().err
    assert main(["train", "all", "--wider", str(tmp_path), "--out", str(tmp_path / "o"),
                 "--task-weights", "1", "0.5", "-1"]) == 1
    assert "task_weights must be three non-negative weights" in capsys.readouterr().err
    assert main(["train", "all", "--wider", str(tmp_path), "--out", str(tmp_path / "o"), "--train-only", "heads.lmk"]) == 1
    assert "'heads.lmk' names no parameter" in capsys.readouterr().err
    assert main(["data", "onet", "--random", "--landmark-boxes", "--wider", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "--landmark-boxes needs --landmarks" in capsys.readouterr().err
    assert main(["data", "onet", "--neg-ratio", "0", "--wider", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "--neg-ratio must be > 0" in capsys.readouterr().err
    assert main(["data", "rnet", "--random", "--min-face", "0", "--wider", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "--min-face must be > 0" in capsys.readouterr().err
    assert main(["train", "all", "--wider", str(tmp_path), "--out", str(tmp_path / "o"), "--blur", "1.5"]) == 1
    assert "blur must be in [0, 1]" in capsys.readouterr().err


def test_data_rnet_needs_weights(training_data, tmp_path, capsys):
    code = main(["data", "rnet", "--wider", str(training_data / "widerface"), "--out", str(tmp_path / "o"), "--limit", "2"])
    assert code == 2 and "--weights" in capsys.readouterr().err


def test_train_all_runs_end_to_end_on_a_few_pictures(training_data, tmp_path, astronaut):
    import torch

    from openmtcnn import MTCNN
    from openmtcnn.weights import manifest

    out = tmp_path / "pipe"
    code = main(["train", "all", "--wider", str(training_data / "widerface"), "--landmarks", str(training_data / "cnn_facepoint"),
                 "--out", str(out), "--limit", "12", "--epochs", "1", "2", "1", "--steps", "3", "--batch-size", "32",
                 "--threads", "1", "--random", "--landmark-boxes", "--mix", "3", "2", "1", "2",
                 "--landmark-frame", "wider", "--neg-ratio", "5", "--min-face", "16", "--blur", "0.3"])
    assert code == 0
    report = json.loads((out / "pipeline.json").read_text())
    assert list(report) == ["pnet", "rnet", "onet"]
    assert report["pnet"]["samples"]["positive"] > 0 and report["pnet"]["samples"]["landmark"] > 0
    # --random: R-Net and O-Net also see jittered squares around the faces, joined with the mined sets
    assert "random_samples" not in report["pnet"]
    for stage in ("rnet", "onet"):
        assert report[stage]["random_samples"]["positive"] > 0 and report[stage]["random_samples"]["negative"] == 0
    for size in (12, 24, 48):  # landmark samples cut around the boxes the cascade detects
        settings = json.loads((out / "samples" / str(size) / "manifest.json").read_text())["settings"]
        assert settings["landmark_frame"] == "wider"
        assert size == 12 or settings["neg_ratio"] == 5.0  # the mined sets keep up to 5 negatives a positive
        assert settings.get("min_face", settings.get("crops", {}).get("min_face")) == 16.0
    assert manifest(out / "weights")["models"] == {"pnet": "pnet-lmk", "rnet": "rnet-lmk", "onet": "onet"}
    for stage, epochs in (("pnet", 1), ("rnet", 2), ("onet", 1)):
        config = torch.load(out / stage / "best.pt", weights_only=True)["config"]
        assert config["mix"] == [3, 2, 1, 2] and config["blur"] == 0.3
        assert len(json.loads((out / stage / "history.json").read_text())) == epochs
    d = MTCNN(weights=str(out / "weights")).detect(astronaut)  # barely trained, but a working detector
    assert d.boxes.shape[1:] == (4,) and d.landmarks.shape[1:] == (5, 2)
    # the same checkpoints, exported by the shipping command
    assert main(["export", "trained", str(out), "--out", str(tmp_path / "shipped"), "--note", "test"]) == 0
    shipped = manifest(tmp_path / "shipped")
    assert shipped["models"] == manifest(out / "weights")["models"] and "openmtcnn export trained" in shipped["note"]
    assert main(["export", "trained", str(tmp_path / "empty"), "--out", str(tmp_path / "x")]) == 2
    # one stage from another checkpoint (e.g. an O-Net whose landmark head was retrained)
    other = tmp_path / "onet_other.pt"
    other.write_bytes((out / "onet" / "last.pt").read_bytes())
    assert main(["export", "trained", str(out), "--use", f"onet={other}", "--out", str(tmp_path / "mixed")]) == 0
    assert manifest(tmp_path / "mixed")["sources"]["onet"] == str(other)
    assert main(["export", "trained", str(out), "--use", "lnet=x.pt", "--out", str(tmp_path / "y")]) == 2


def test_data_random_gives_positives_and_parts_to_join(training_data, tmp_path):
    from openmtcnn.data.store import SampleSet

    assert main(["data", "rnet", "--random", "--wider", str(training_data / "widerface"), "--out", str(tmp_path / "r"),
                 "--limit", "3"]) == 0
    counts = SampleSet(tmp_path / "r" / "24").counts()
    assert counts["positive"] > 0 and counts["part"] > 0 and counts["negative"] == counts["landmark"] == 0


def test_data_pnet_with_weights_mines_its_own_false_alarms(training_data, tmp_path):
    from openmtcnn.data.store import SampleSet

    assert main(["data", "pnet", "--weights", "published", "--wider", str(training_data / "widerface"),
                 "--out", str(tmp_path / "h"), "--limit", "3"]) == 0
    settings = json.loads((tmp_path / "h" / "12" / "manifest.json").read_text())["settings"]
    assert settings["method"] == "hard" and settings["tag"] == "published:pnet"
    counts = SampleSet(tmp_path / "h" / "12").counts()
    assert counts["negative"] > 0 and counts["landmark"] == 0  # P-Net's candidates, labelled; no landmark list given
    assert counts["negative"] <= 3 * (counts["positive"] + 3)  # per picture: at most 3 a positive (3 if none)
