import numpy as np
import pytest

from mer.train.metrics import (
    accuracy,
    confusion_matrix,
    per_class_f1,
    summarize,
    uar,
    uf1,
)


def test_metrics_by_hand():
    t = [0, 0, 0, 1, 1, 2]
    p = [0, 0, 1, 1, 2, 2]
    cm = confusion_matrix(t, p, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    # F1: class0 2*2/(4+1)=0.8, class1 2*1/(2+1+1)=0.5, class2 2*1/(2+1)=2/3
    assert uf1(t, p, 3) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    # recall: 2/3, 1/2, 1
    assert uar(t, p, 3) == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    assert accuracy(t, p) == pytest.approx(4 / 6)


def test_class_absent_from_truth_and_predictions_is_left_out():
    t, p = [0, 0, 1], [0, 1, 1]
    # class 2 is neither true nor predicted: not in the means
    assert np.isnan(per_class_f1(t, p, 3)[2])
    assert uf1(t, p, 3) == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert uar(t, p, 3) == pytest.approx((0.5 + 1) / 2)


def test_class_predicted_but_never_true_counts_as_zero_f1_not_in_uar():
    t, p = [0, 0], [0, 1]
    assert uf1(t, p, 2) == pytest.approx((2 / 3 + 0.0) / 2)
    assert uar(t, p, 2) == pytest.approx(0.5)


def test_summary_is_json_ready_and_rejects_out_of_range_labels():
    s = summarize([0, 1], [0, 0], 3)
    assert s["confusion"] == [[1, 0, 0], [1, 0, 0], [0, 0, 0]]
    assert s["recall_per_class"][2] is None
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        summarize([0, 3], [0, 0], 3)
