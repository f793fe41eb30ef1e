"""Per-stage diagnostics on hand-made traces with known answers."""
from __future__ import annotations

import numpy as np

from openmtcnn import MTCNN
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


def test_detector_traces_match_its_output(detector, astronaut):
    m = MTCNN()
    m.traces = []
    d = m.detect(astronaut)
    assert len(m.traces) == 1
    t = m.traces[0]
    np.testing.assert_allclose(t["final"], d.boxes)
    assert len(t["pnet"]) >= len(t["rnet"]) >= 1 and len(t["onet"]) >= len(t["final"])
    m.traces = None
    assert m.detect(astronaut).boxes.shape == d.boxes.shape
