"""The confusion matrix eval writes: which class each ground-truth box was taken for."""
import numpy as np

from ssd_nobias.evaluation.confusion import ConfusionMatrix, box_iou
from ssd_nobias.plots import confusion_figure


def test_iou_of_boxes_in_pixels():
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 0]], float)
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10]], float)
    np.testing.assert_allclose(box_iou(a, b), [[50 / 150, 1.0], [0.0, 0.0]])


def test_each_box_counts_once_at_its_class_and_what_it_was_taken_for():
    m = ConfusionMatrix(3, score_thresh=0.5)
    gt = np.array([[0, 0, 10, 10, 0], [20, 20, 30, 30, 1], [40, 40, 50, 50, 2],
                   [60, 60, 70, 70, 2]], float)
    boxes = np.array([[0, 0, 10, 10],      # class 0 found as 0
                      [1, 1, 10, 10],      # a second detection of it: a false alarm
                      [20, 20, 30, 31],    # class 1 taken for class 2
                      [80, 80, 90, 90],    # nothing there: a false alarm of class 1
                      [40, 40, 50, 50]],   # below the score threshold: not counted
                     float)
    labels = np.array([0, 0, 2, 1, 2])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.4])
    m.update(boxes, labels, scores, gt)
    want = np.zeros((4, 4), int)
    want[0, 0] = 1
    want[3, 0] = 1          # background row: detections of nothing
    want[1, 2] = 1
    want[3, 1] = 1
    want[2, 3] = 2          # both class-2 boxes missed
    np.testing.assert_array_equal(m.counts, want)


def test_the_higher_score_takes_the_box_and_difficult_boxes_count_for_nothing():
    m = ConfusionMatrix(2, score_thresh=0.1)
    gt = np.array([[0, 0, 10, 10, 0, 0], [20, 20, 30, 30, 1, 1]], float)  # the second difficult
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]], float)
    m.update(boxes, np.array([1, 0, 1]), np.array([0.3, 0.9, 0.5]), gt)
    # 0.9 (class 0) takes the box first, 0.3 is then a false alarm; the difficult box's
    # detection is dropped and the difficult box is never missed
    np.testing.assert_array_equal(m.counts, [[1, 0, 0], [0, 0, 0], [0, 1, 0]])
    m.update(np.zeros((0, 4)), np.zeros(0), np.zeros(0), np.zeros((0, 5)))  # an empty image
    assert m.counts.sum() == 2
    record = m.to_json(["cat", "dog"])
    assert record["classes"] == ["cat", "dog", "background"] and record["counts"][0] == [1, 0, 0]


def test_the_picture_writes_each_count_and_colours_rows_by_share():
    counts = np.array([[3, 1, 0], [0, 0, 2], [1, 0, 0]])
    fig = confusion_figure(counts, ["cat", "dog"], 0.5)
    ax = fig.axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["1", "1", "2", "3"]
    np.testing.assert_allclose(ax.images[0].get_array(), [[0.75, 0.25, 0], [0, 0, 1], [1, 0, 0]])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog", "background"]
