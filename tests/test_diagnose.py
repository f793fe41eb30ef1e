"""Per-stage diagnostics on hand-made traces with known answers."""
from __future__ import annotations

import numpy as np
import pytest

from openmtcnn import MTCNN, STAGES
from openmtcnn.evaluate.diagnose import OUTCOMES, lost_at, markdown, size_bucket_names, stage_table


def test_each_face_is_lost_where_its_boxes_stop():
    gt = np.array([[0, 0, 10, 10], [100, 100, 120, 120], [200, 200, 240, 240], [300, 300, 380, 380],
                   [500, 500, 700, 700]], float)
    near = gt + 0.5  # IoU well above 0.5 with its face
    trace = {
        "pnet": near[1:],  # face 0 never proposed
        "rnet": near[2:],  # face 1 rejected by R-Net
        "onet": np.vstack([near[3:], near[0]]),  # face 2 rejected by O-Net; face 0 reappearing does not count
        "final": near[4:],  # face 3 removed by the final NMS, face 4 found
    }
    np.testing.assert_array_equal(lost_at(trace, gt), [0, 1, 2, 3, 4])


def test_no_boxes_at_all_means_never_proposed():
    gt = np.array([[0, 0, 10, 10]], float)
    empty = np.zeros((0, 4))
    assert lost_at({s: empty for s in ("pnet", "rnet", "onet", "final")}, gt).tolist() == [0]


def test_table_buckets_by_height_and_totals():
    outcomes = np.array([0, 4, 4, 1, 2])
    heights = np.array([5, 15, 15, 50, 500])
    table = stage_table(outcomes, heights)
    names = size_bucket_names()
    assert list(table) == names + ["all"]
    assert table[names[0]][OUTCOMES[0]] == 1
    assert table[names[1]]["found"] == 2
    assert table[names[3]][OUTCOMES[1]] == 1 and table[names[-1]][OUTCOMES[2]] == 1
    assert sum(table["all"].values()) == 5
    md = markdown(table)
    assert md.count("\n") == len(names) + 2 and "found" in md


def test_stage_observer_matches_the_output(detector, astronaut):
    m = MTCNN()
    seen = {}
    final = m.run(astronaut, observer=lambda stage, i, c, seconds: seen.setdefault(stage, (i, c, seconds)))
    assert list(seen) == list(STAGES) and all(i == 0 and s >= 0 for i, _, s in seen.values())
    d = m.detect(astronaut)
    for got in (seen["final"][1], final):
        np.testing.assert_array_equal(got.boxes, d.boxes)
        np.testing.assert_array_equal(got.landmarks, d.landmarks)
    n = {stage: len(c.boxes) for stage, (_, c, _) in seen.items()}
    assert n["pnet"] >= n["rnet"] >= 1 and n["onet"] >= n["final"]
    for until in STAGES[:-1]:  # stopping early gives that stage's candidates, and runs no later stage
        heard = []
        c = m.run(astronaut, until=until, observer=lambda stage, *rest: heard.append(stage))
        np.testing.assert_array_equal(c.boxes, seen[until][1].boxes)
        assert heard == list(STAGES[:STAGES.index(until) + 1])
    with pytest.raises(ValueError, match="until"):
        m.run(astronaut, until="lnet")
