"""BLEU-n (metrics/bleu.py): hand-computed values for clipping, smoothing and brevity."""

from __future__ import annotations

import math

import pytest

from musicgan.metrics.bleu import References, mean_bleu, sentence_bleu


def test_a_hypothesis_among_the_references_scores_one():
    assert mean_bleu([[1, 2, 3, 4, 5]], [[9, 9, 9, 9, 9], [1, 2, 3, 4, 5]]) == pytest.approx(1.0)


def test_precisions_geometric_mean_with_epsilon_smoothing():
    # p1 = 3/4, p2 = 2/3, p3 = 1/2, p4 = 0 -> epsilon 0.1 / 1
    expected = math.exp((math.log(3 / 4) + math.log(2 / 3) + math.log(1 / 2) + math.log(0.1)) / 4)
    assert sentence_bleu([1, 2, 3, 4], References([[1, 2, 3, 5]], 4), 4) == pytest.approx(expected)
    assert sentence_bleu([1, 2, 3, 4], References([[1, 2, 3, 5]], 2), 2) == pytest.approx(math.sqrt(3 / 4 * 2 / 3))


def test_counts_are_clipped_by_the_largest_count_in_one_reference():
    # "1" occurs once in each reference: clipped to 1 of 4, not to the 2 the two references hold together.
    assert mean_bleu([[1, 1, 1, 1]], [[1, 2, 3, 4], [1, 5, 6, 7]], n=1) == pytest.approx(1 / 4)


def test_brevity_penalty_uses_the_closest_reference_length():
    assert mean_bleu([[1, 2]], [[1, 2, 3, 4]], n=1) == pytest.approx(math.exp(1 - 4 / 2))
    assert mean_bleu([[1, 2]], [[1, 2, 3, 4], [1, 2, 7]], n=1) == pytest.approx(math.exp(1 - 3 / 2))
    assert mean_bleu([[1, 2, 3, 4, 5, 6]], [[1, 2, 3]], n=1) == pytest.approx(0.5)  # longer: no penalty


def test_empty_inputs_are_nan_and_a_bad_order_is_refused():
    assert math.isnan(mean_bleu([], [[1, 2]]))
    assert math.isnan(mean_bleu([[1, 2]], []))
    with pytest.raises(ValueError):
        mean_bleu([[1]], [[1]], n=0)
