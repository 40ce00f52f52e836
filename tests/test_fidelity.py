"""Fidelity metrics against hand-computed values, budgets, and the evaluation helpers both processes share."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.evaluation import load_arrays, match_order, normalised, run_batched, save_arrays
from harness.fidelity import (
    AccuracyBudget,
    budget_violations,
    top1_accuracy,
    uninformative_reference,
)
from model_zoo.fidelity import (
    CHECK_CONFIDENCE_Z,
    judge,
    looks_like_class_scores,
    mean_normalised_entropy,
    output_fidelity,
    output_score_bounds,
    output_scores,
    violation,
    worst,
)
from model_zoo.inputs import InputError, InputPlan, make_samples


def test_metrics_match_hand_computed_values():
    reference = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    actual = np.array([[0.5, 0.5, 0.0], [0.0, 2.0, 0.1]])
    result = output_fidelity(actual, reference, classes=True)
    # errors: [0.5, 0.5, 0, 0, 0, 0.1]
    assert result["max_abs_err"] == pytest.approx(0.5)
    assert result["mean_abs_err"] == pytest.approx(1.1 / 6)
    # relative: 0.5/1 on the first element; 0.5/0 and 0.1/0 are measured against the floor, so they dominate
    assert result["max_rel_err"] == pytest.approx(0.5 / 1e-12)
    cos0 = 0.5 / (1.0 * math.sqrt(0.5))  # [1,0,0]·[.5,.5,0] / (|r| |a|)
    cos1 = 4.0 / (2.0 * math.sqrt(4.01))
    assert result["cosine"] == pytest.approx((cos0 + cos1) / 2)
    assert result["cosine_min"] == pytest.approx(cos0)
    # argmax: sample 0 is a tie [0.5, 0.5] → index 0 (numpy takes the first), sample 1 → 1: both agree
    assert result["top1_agreement"] == 1.0
    assert "within_tolerance" not in result  # no tolerance asked, no verdict


def test_identical_outputs_are_perfect_and_zero_vectors_are_handled():
    reference = np.array([[0.0, 0.0], [3.0, -4.0]], dtype=np.float32)
    perfect = output_fidelity(reference.copy(), reference)
    assert perfect["max_abs_err"] == 0 and perfect["cosine"] == 1.0 and perfect["cosine_min"] == 1.0
    against_zero = output_fidelity(np.array([[1.0, 0.0], [3.0, -4.0]]), reference)
    assert against_zero["cosine_min"] == 0.0  # a non-zero answer where the reference is all zeros


def test_tolerance_fails_only_where_both_atol_and_rtol_are_exceeded():
    reference = np.array([[100.0, 1e-6, 1.0]])
    # element 0: abs 0.5 > atol, rel 0.005 < rtol → passes; element 1: abs 1e-6 < atol → passes however large
    # its relative error (1.0); element 2: abs 0.2 > atol and rel 0.2 > rtol → fails
    actual = np.array([[100.5, 2e-6, 1.2]])
    result = output_fidelity(actual, reference, atol=1e-3, rtol=1e-2)
    assert result["out_of_tolerance"] == 1 and result["within_tolerance"] is False
    loose = output_fidelity(actual, reference, atol=1e-3, rtol=0.5)
    assert loose["out_of_tolerance"] == 0 and loose["within_tolerance"] is True


def test_top1_accuracy_and_shape_mismatch():
    scores = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    assert top1_accuracy(scores, np.array([1, 0, 0, 0])) == 0.75
    with pytest.raises(ValueError, match="3 labels"):
        top1_accuracy(scores, np.array([1, 0, 0]))
    with pytest.raises(ValueError, match="differs from the reference"):
        output_fidelity(scores, scores[:2])


def test_budget_violations_show_the_numbers_beside_the_limits():
    accuracy = {
        "outputs": [{"name": "probs", "cosine": 0.98, "max_abs_err": 0.3, "max_rel_err": 2.0,
                     "out_of_tolerance": 7, "within_tolerance": False}],
        "top1": 0.95, "top1_drop": 0.0233, "reference": {"top1": 0.9733},
    }
    budget = AccuracyBudget(max_top1_drop=0.01, min_cosine=0.999, atol=1e-3, rtol=1e-3)
    problems = budget_violations(accuracy, budget)
    assert len(problems) == 3
    text = " | ".join(problems)
    for fragment in ("cosine 0.98000000 < min_cosine 0.999", "7 element(s) exceed both atol 0.001 and rtol 0.001",
                     "top-1 drop 0.0233 > max_top1_drop 0.01", "reference 0.9733, this case 0.9500"):
        assert fragment in text, text
    assert budget_violations(accuracy, AccuracyBudget()) == []  # no budget: report only
    assert budget_violations(accuracy, AccuracyBudget(max_top1_drop=0.05, min_cosine=0.9)) == []


def test_a_reference_that_answers_a_constant_is_flagged():
    constant = np.full((16, 1000), 1e-3, np.float32)  # an untrained net whose signal died: 1/1000 everywhere
    assert "same outputs for every evaluation input" in uninformative_reference([constant])
    varying = constant.copy()
    varying[3, 7] += 1e-4
    assert uninformative_reference([varying]) is None
    # one varying output is enough; a single sample cannot show variation, so it is not flagged
    assert uninformative_reference([constant, np.arange(32, dtype=np.float32).reshape(16, 2)]) is None
    assert uninformative_reference([constant[:1]]) is None
    assert "same outputs" in uninformative_reference([np.zeros((4, 3), np.float32)])


def test_run_batched_pads_the_last_batch_and_drops_the_padding():
    seen: list[int] = []

    def run(feeds: list[np.ndarray]) -> list[np.ndarray]:
        seen.append(len(feeds[0]))
        assert len(feeds[0]) == 4  # a session prepared for batch 4 only ever sees 4
        return [feeds[0] * 2, feeds[1].sum(axis=1, keepdims=True)]

    plans = [InputPlan("x", "float32", 0, (1,), 0, 1), InputPlan("y", "int32", 0, (3,), 0, 2)]
    x = np.arange(10, dtype=np.float32).reshape(10, 1, 1)  # 10 samples, each keeping its batch axis of 1
    y = np.ones((10, 1, 3), dtype=np.int32)
    doubled, sums = run_batched(run, plans, [x, y], 4, reference_batch=1, unit_shapes=[(1, 1), (1, 1)])
    assert seen == [4, 4, 4]
    np.testing.assert_array_equal(doubled, x * 2)
    np.testing.assert_array_equal(sums, np.full((10, 1, 1), 3))


def test_a_recurrent_state_is_batched_on_its_own_axis_and_compared_per_sample():
    """A VAD-like model: audio batched on axis 0, a state [2, B, 4] batched on axis 1, a scalar sample rate. A case at
    batch 3 must give, sample by sample, what the reference gave at batch 1."""
    plans = [InputPlan("audio", "float32", 0, (5,), -1, 1), InputPlan("state", "float32", 1, (2, 4), 0, 1),
             InputPlan("sr", "int64", None, (), 0, 0, np.asarray(16000, np.int64))]
    arrays = make_samples(plans, 7, seed=3)
    assert [a.shape for a in arrays] == [(7, 1, 5), (7, 2, 1, 4), ()]

    def model(feeds: list[np.ndarray]) -> list[np.ndarray]:
        audio, state, sr = feeds
        assert sr == 16000 and state.shape[1] == audio.shape[0]
        new_state = state * 0.5 + audio.sum(axis=1)[None, :, None]
        return [audio.mean(axis=1, keepdims=True), new_state]

    reference = run_batched(model, plans, arrays, 1)
    assert [r.shape for r in reference] == [(7, 1, 1), (7, 2, 1, 4)]
    at_three = run_batched(model, plans, arrays, 3, reference_batch=1, unit_shapes=[r.shape[1:] for r in reference])
    for got, want in zip(at_three, reference, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    with pytest.raises(InputError, match="no single batch axis"):  # an output pooled over the batch
        run_batched(lambda f: [f[0].sum(keepdims=True)], plans, arrays, 3, 1, [(1, 1)])


def test_inputs_match_by_name_across_formats_else_by_position():
    assert normalised("serving_default_tokens:0") == "tokens"
    assert match_order(["serving_default_b:0", "serving_default_a:0"], ["a", "b"], "input") == [1, 0]
    assert match_order(["x"], ["y"], "input") == [0]
    assert match_order(["p", "q"], ["a", "b"], "output") == [0, 1]
    with pytest.raises(ValueError, match="2 input"):
        match_order(["a", "b"], ["a"], "input")


def test_arrays_round_trip_with_names_and_labels(tmp_path):
    path = tmp_path / "set.npz"
    save_arrays(path, ["ids:0", "mask"], [np.arange(6).reshape(2, 3), np.ones((2, 3), bool)], labels=np.array([1, 0]))
    names, arrays, extra = load_arrays(path)
    assert names == ["ids:0", "mask"] and arrays[1].dtype == bool
    np.testing.assert_array_equal(extra["labels"], [1, 0])


def test_top1_agreement_only_for_outputs_that_hold_class_scores():
    """An embedding's or a landmark's arg-max means nothing: top-1 agreement is given where the output is class
    scores, declared (classes=True) or inferred from a softmax's values; logits are not inferred (they cannot be told
    from an embedding by their values)."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(16, 10))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert output_fidelity(logits, logits)["top1_agreement"] is None
    assert output_fidelity(logits, logits, classes=True)["top1_agreement"] == 1.0
    assert looks_like_class_scores(probabilities.astype(np.float32))
    assert looks_like_class_scores(probabilities[:, None, :])  # a unit axis kept: [N, 1, C]
    assert not looks_like_class_scores(logits)
    assert not looks_like_class_scores(np.abs(logits) / np.linalg.norm(logits, axis=1, keepdims=True))  # embedding
    assert not looks_like_class_scores(probabilities.reshape(16, 2, 5) / 1.0)  # two axes of values: no classes
    assert not looks_like_class_scores(np.ones((16, 1)))  # one value is no choice


def test_each_output_is_judged_by_the_metric_that_suits_it_and_says_so():
    """The figure shown is the one that judged: cosine for vectors, relative L2 for outputs of under 4 values
    (a wake-word score at 0.0197 is not "cos 1.000000"), exact share for integers, the floor for faint outputs;
    the score turns each into the cosine that allows the same error, so cases compare on one scale."""
    score = np.array([[0.5], [0.8], [0.1]])
    stats = output_fidelity(score * 1.02, score)
    assert stats["cosine"] == 1.0  # what used to be shown
    verdict = judge(stats, 0.98)
    assert (verdict.metric, verdict.ok) == ("rel_l2", True)
    assert verdict.value == pytest.approx(0.02) and verdict.bar == pytest.approx(math.sqrt(0.04))
    assert verdict.score == pytest.approx(1 - 0.02**2 / 2)
    assert verdict.text(with_bar=True) == "rel L2 0.02 ≤ 0.2"
    vectors = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    bent = judge(output_fidelity(np.array([[1.0, 0.2, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]), vectors), 0.999)
    assert bent.metric == "cosine" and not bent.ok and bent.text(with_bar=True).startswith("cos 0.990")
    ids = judge(output_fidelity(np.array([[1, 2], [3, 5]]), np.array([[1, 2], [3, 4]])), 0.98)
    assert (ids.metric, ids.value, ids.ok) == ("exact_match", 0.75, False)
    faint = judge(output_fidelity(vectors * 1e-6, vectors[::-1] * 1e-6), 0.98)
    assert (faint.metric, faint.ok, faint.score) == ("abs_floor", True, 1.0)
    assert worst([{**stats, "name": "p"}, {**output_fidelity(vectors, vectors), "name": "v"}]).metric == "rel_l2"
    assert violation({**output_fidelity(score * 1.3, score), "name": "p"}, 0.98).startswith(
        "output 'p': relative L2 error 0.3 over all samples > 0.2")


def test_the_build_time_check_and_the_guard_give_one_verdict():
    """model_zoo.fidelity.output_scores (the searches' check over feeds) is the guard's rule on the same data."""
    rng = np.random.default_rng(1)
    reference = [[rng.normal(size=(1, 8)), np.array([[0.5]])] for _ in range(6)]
    candidate = [[ref[0] + rng.normal(scale=0.3, size=(1, 8)), ref[1] * 1.05] for ref in reference]
    scores = output_scores(reference, candidate, ["v", "p"])
    for k, name in enumerate(["v", "p"]):
        guard = judge(output_fidelity(np.stack([c[k] for c in candidate]), np.stack([r[k] for r in reference])))
        assert scores[name] == pytest.approx(guard.score)
    assert output_scores([[np.ones(4)]], [[np.array([np.nan, 1, 1, 1])]], ["x"]) == {"x": 0.0}
    assert output_scores([[np.ones(4)]], [[np.ones(3)]], ["x"]) == {"x": 0.0}



def _jackknife(values: list[float]) -> float:
    """The jackknife standard error of a statistic from its leave-one-out values, written out for the test."""
    n, mean = len(values), sum(values) / len(values)
    return math.sqrt((n - 1) / n * sum((v - mean) ** 2 for v in values))


def test_the_check_bound_asks_more_of_samples_that_disagree_with_each_other():
    """Same mean cosine, two spreads: the bound sits CHECK_CONFIDENCE_Z jackknife errors under the score."""
    rng = np.random.default_rng(2)
    reference = [rng.normal(size=(1, 64)) for _ in range(16)]
    steady = [[r + 0.2 * rng.normal(size=r.shape)] for r in reference]
    uneven = [[r + (0.05 if k % 2 else 0.45) * rng.normal(size=r.shape)] for k, r in enumerate(reference)]
    bounds = {name: output_score_bounds([[r] for r in reference], cand, ["y"])["y"]
              for name, cand in (("steady", steady), ("uneven", uneven))}
    for name, cand in (("steady", steady), ("uneven", uneven)):
        cosines = [float(np.dot(c[0].ravel(), r.ravel()) / np.linalg.norm(c[0]) / np.linalg.norm(r))
                   for c, r in zip(cand, reference, strict=True)]
        assert bounds[name].score == pytest.approx(np.mean(cosines))
        left_out = [(sum(cosines) - c) / 15 for c in cosines]
        assert bounds[name].lower == pytest.approx(bounds[name].score - CHECK_CONFIDENCE_Z * _jackknife(left_out))
    assert bounds["steady"].score - bounds["steady"].lower < bounds["uneven"].score - bounds["uneven"].lower


def test_the_check_bound_of_a_small_output_sees_the_sample_that_carries_its_error():
    """A one-value output judged by relative L2 over all samples: one sample with a large value and error in 16
    sets the figure, and leaving it out moves the figure a lot: the bound is far under the score."""
    reference = [[np.array([[0.01]])] for _ in range(15)] + [[np.array([[0.5]])]]
    candidate = [[np.array([[0.0101]])] for _ in range(15)] + [[np.array([[0.45]])]]
    bounds = output_score_bounds(reference, candidate, ["p"])["p"]
    error = math.sqrt((15 * 1e-4**2 + 0.05**2) / (15 * 0.01**2 + 0.25))
    assert bounds.score == pytest.approx(1 - error**2 / 2)
    assert bounds.lower < bounds.score - 0.005
    flat = output_score_bounds(reference[:15], candidate[:15], ["p"])["p"]  # every sample alike: no spread at all
    assert flat.lower == pytest.approx(flat.score)


def test_a_sample_within_the_floor_everywhere_agrees():
    """An OCR detector's map over a crop without text is ~1e-7 everywhere: that sample's cosine is noise, so a
    sample within ABS_ERR_FLOOR of the reference counts as agreeing; the other samples are judged as before."""
    rng = np.random.default_rng(4)
    blank = rng.uniform(0, 1e-7, (1, 100))
    text = rng.uniform(0, 1, (1, 100))
    reference = np.stack([blank, text])
    candidate = np.stack([blank[:, ::-1], text * 0.9 + 0.01])
    stats = output_fidelity(candidate, reference)
    changed = candidate[1].ravel()
    text_cosine = float(np.dot(changed, text.ravel()) / np.linalg.norm(changed) / np.linalg.norm(text))
    assert stats["cosine"] == pytest.approx((1.0 + text_cosine) / 2)
    shifted = output_fidelity(np.stack([blank + 1e-3, text]), reference)  # a blank sample off by 1e-3: judged
    assert shifted["cosine_min"] < 0.9

def test_near_uniform_class_scores_are_a_warning_except_for_untrained_zoo_models():
    """A text-orientation classifier shown noise sits at 0.15-0.37 over four classes: its class scores say nothing,
    and the record says so with the key to use; decided scores, non-class outputs and the zoo's untrained models
    (flat by construction) get no warning."""
    rng = np.random.default_rng(2)
    flat = rng.uniform(0.15, 0.37, size=(16, 4))
    flat /= flat.sum(axis=1, keepdims=True)
    decided = np.full((16, 4), 0.02)
    decided[np.arange(16), rng.integers(0, 4, 16)] = 0.94
    assert mean_normalised_entropy(flat) > 0.9 > mean_normalised_entropy(decided)
    warning = uninformative_reference([flat], ["probs"], [True])
    assert warning and "class scores of output 'probs' stay near uniform" in warning and "data: images" in warning
    assert uninformative_reference([decided], ["probs"], [True]) is None
    assert uninformative_reference([flat], ["probs"], [False]) is None
    assert uninformative_reference([flat], ["probs"], [True], near_uniform_exempt=True) is None
