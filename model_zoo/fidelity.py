"""How far a model's outputs are from the fp32 reference's, and the one rule that judges it.

Two places judge outputs: the build-time check of a converted file (model_zoo.onnx_precision's searches, on its
check feeds) and the harness's fidelity guard (harness.fidelity, on the evaluation set). They used to encode the
bar twice and had drifted apart (the absolute floor applied per feed in one, over the whole output in the other);
both now call :func:`judge` on the statistics of :func:`output_fidelity`, so a conversion the build keeps is one
the guard passes on the same data.

The statistics follow the tools engineers already trust: Polygraphy's comparison (max / mean absolute error, max
relative error, an atol/rtol check that fails an element only where BOTH tolerances are exceeded) and TFLite's
inference_diff (per-output error statistics). Cosine similarity and top-1 agreement add the two numbers people
quote for quantized classifiers. NumPy only: the build process, the workers and the parent all import this.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from model_zoo.targets import ABS_ERR_FLOOR, MIN_VALUES_FOR_COSINE

# Relative error is |a - r| / |r|; where the reference is (almost) zero the ratio explodes without meaning.
REL_ERR_FLOOR = 1e-12
# Class probabilities sum to one per sample; a softmax computed in fp32 over thousands of classes is off by ~1e-6.
PROBABILITY_SUM_TOLERANCE = 1e-3
# Class scores whose mean normalised entropy (0: one class certain, 1: all classes equal) is at least this say
# nothing: a text-orientation classifier shown noise sits at 0.15-0.37 over four classes (0.95).
NEAR_UNIFORM_ENTROPY = 0.9

METRIC_NAMES = {"cosine": "cos", "rel_l2": "rel L2", "exact_match": "exact", "abs_floor": "|err|"}
SCORE_DEFINITION = ("fidelity score: per output its mean per-sample cosine to the fp32 reference, 1 − e²/2 for the "
                    f"relative L2 error e of an output of under {MIN_VALUES_FOR_COSINE} values, the share of equal "
                    f"values for an integer output, 1 for an output within {ABS_ERR_FLOOR:g} of the reference "
                    "everywhere; the case's score is its worst output's")


def output_fidelity(actual: np.ndarray, reference: np.ndarray, atol: float | None = None,
                    rtol: float | None = None, classes: bool = False) -> dict[str, Any]:
    """Error statistics of one output against the reference, on the same inputs (sample axis first).

    Cosine similarity is computed per sample over the flattened output, then averaged (``cosine``) and its
    worst sample kept (``cosine_min``): one whole-tensor cosine would let a few ruined samples hide among
    hundreds of good ones. ``top1_agreement`` only where the output holds class scores (``classes``: declared in
    the scenario or inferred by :func:`looks_like_class_scores`): the arg-max of an embedding or of landmark
    coordinates means nothing.
    """
    if actual.shape != reference.shape:
        raise ValueError(f"output shape {actual.shape} differs from the reference's {reference.shape}")
    a = actual.astype(np.float64).reshape(len(actual), -1)
    r = reference.astype(np.float64).reshape(len(reference), -1)
    abs_err = np.abs(a - r)
    rel_err = abs_err / np.maximum(np.abs(r), REL_ERR_FLOOR)
    cosines = _sample_cosines(a, r)
    ref_norm = float(np.linalg.norm(r))
    whole_err = float(np.linalg.norm(a - r))
    result: dict[str, Any] = {
        "values_per_sample": int(r.shape[1]) if r.ndim == 2 else 0,
        "rel_l2_err": whole_err / ref_norm if ref_norm > 0 else (0.0 if whole_err == 0 else float("inf")),
        "exact_match": float(np.mean(a == r)) if actual.dtype.kind in "iub" and a.size else None,
        "max_abs_err": float(abs_err.max()) if abs_err.size else 0.0,
        "mean_abs_err": float(abs_err.mean()) if abs_err.size else 0.0,
        "max_rel_err": float(rel_err.max()) if rel_err.size else 0.0,
        "cosine": float(cosines.mean()) if len(cosines) else 1.0,
        "cosine_min": float(cosines.min()) if len(cosines) else 1.0,
        "top1_agreement": None,
    }
    if classes and actual.ndim >= 2 and actual.shape[-1] > 1 and actual.size:
        # per position over the class axis (the last): a sequence of class scores (N, T, C) agrees position by position
        per_position = actual.shape[-1]
        result["top1_agreement"] = float(np.mean(actual.reshape(-1, per_position).argmax(axis=1)
                                                 == reference.reshape(-1, per_position).argmax(axis=1)))
    if atol is not None or rtol is not None:
        # An element fails only where it exceeds both tolerances (Polygraphy's rule): a large relative error
        # on a near-zero value, or a large absolute error on a huge value, is not a failure by itself.
        failing = (abs_err > (atol or 0.0)) & (rel_err > (rtol or 0.0))
        result.update(atol=atol, rtol=rtol, out_of_tolerance=int(failing.sum()),
                      within_tolerance=bool(not failing.any()))
    return result


def _sample_cosines(a: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Per-sample cosines of two (samples, values) float64 arrays.

    A sample within ABS_ERR_FLOOR of the reference everywhere agrees (cosine 1), as a whole output does in
    :func:`judge`: an OCR detector's map over a crop without text is ~1e-7 everywhere, and its cosine there is
    noise (measured: 0.0 for three of 16 document crops, in fp32 against a file that differs by 1e-6). Two all-zero
    vectors agree; one zero vector against a non-zero one does not agree at all (an output of no values: a detector
    that found nothing; two such agree)."""
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(r, axis=1)
    dots = np.sum(a * r, axis=1)
    largest = np.abs(a - r).max(axis=1, initial=0.0)
    cosines = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), np.where(largest == 0, 1.0, 0.0))
    return np.where(largest <= ABS_ERR_FLOOR, 1.0, cosines)


@dataclass(frozen=True)
class Judgement:
    """What judged one output, its figure and the bar in that figure's units, and a score comparable across
    outputs and cases: the cosine that allows the same error (see SCORE_DEFINITION)."""

    metric: str  # "cosine", "rel_l2" (outputs of few values), "exact_match" (integers), "abs_floor"
    value: float
    score: float
    bar: float | None  # in the metric's units; None where no bar was set
    ok: bool | None  # None where no bar was set

    def text(self, with_bar: bool = False) -> str:
        """"cos 0.999871", "rel L2 0.0197", "exact 0.9980", "|err| ≤ 0.0001"; with its bar where asked."""
        if self.metric == "abs_floor":
            return f"|err| ≤ {ABS_ERR_FLOOR:g}"
        figure = f"{METRIC_NAMES[self.metric]} {self.value:.6f}" if self.metric == "cosine" else \
            f"{METRIC_NAMES[self.metric]} {self.value:.4g}" if self.metric == "rel_l2" else \
            f"{METRIC_NAMES[self.metric]} {self.value:.4f}"
        if not with_bar or self.bar is None:
            return figure
        return f"{figure} {'≤' if self.metric == 'rel_l2' else '≥'} {self.bar:.4g}"


def allowed_rel_l2(min_cosine: float) -> float:
    """The relative L2 error a cosine c allows between equal-norm vectors: sqrt(2 (1 - c))."""
    return math.sqrt(max(2.0 * (1.0 - min_cosine), 0.0))


def judge(out: Mapping[str, Any], min_cosine: float | None = None) -> Judgement:
    """One output's statistics (:func:`output_fidelity`) judged by the rule that suits its kind.

    Integer and boolean outputs (class ids, masks) by the share of values equal to the reference's. An output
    within ABS_ERR_FLOOR everywhere agrees whatever its cosine (outputs in a sigmoid's tail move by tens of per
    cent between ONNX Runtime's own optimisation levels in fp32). An output of fewer than MIN_VALUES_FOR_COSINE
    values per sample (a probability, a score) by its relative L2 error over all samples, since two one-element
    vectors have cosine 1 whenever their signs agree; the rest by the mean per-sample cosine."""
    exact = out.get("exact_match")
    if exact is not None:
        return Judgement("exact_match", exact, exact, min_cosine, None if min_cosine is None else exact >= min_cosine)
    largest = out.get("max_abs_err")  # a record that states only some figures is judged by those it states
    if largest is not None and largest <= ABS_ERR_FLOOR:
        return Judgement("abs_floor", largest, 1.0, ABS_ERR_FLOOR, True)
    if (out.get("values_per_sample") or MIN_VALUES_FOR_COSINE) < MIN_VALUES_FOR_COSINE \
            and out.get("rel_l2_err") is not None:
        error = out["rel_l2_err"]
        score = float(np.clip(1.0 - error * error / 2.0, -1.0, 1.0)) if math.isfinite(error) else 0.0
        bar = None if min_cosine is None else allowed_rel_l2(min_cosine)
        return Judgement("rel_l2", error, score, bar, None if bar is None else bool(error <= bar))
    cosine = out.get("cosine")
    cosine = float("nan") if cosine is None else cosine
    score = cosine if math.isfinite(cosine) else 0.0
    return Judgement("cosine", cosine, score, min_cosine, None if min_cosine is None else bool(score >= min_cosine))


def violation(out: Mapping[str, Any], min_cosine: float) -> str | None:
    """Why one output misses the bar a min_cosine sets, in the units of the metric that judged it, or None."""
    verdict = judge(out, min_cosine)
    if verdict.ok:
        return None
    name = out.get("reference_name") or out["name"]  # the same model's failures read the same on every backend
    if verdict.metric == "exact_match":
        return (f"output {name!r}: {verdict.value:.4f} of its values equal the reference's (< {min_cosine}, the bar "
                "min_cosine sets for integer outputs)")
    if verdict.metric == "rel_l2":
        return (f"output {name!r}: relative L2 error {verdict.value:.4g} over all samples > {verdict.bar:.4g} "
                f"(what min_cosine {min_cosine} allows {out['values_per_sample']} value(s) per sample)")
    return f"output {name!r}: cosine {verdict.value:.8f} < min_cosine {min_cosine}"


def worst(outputs: Sequence[Mapping[str, Any]], min_cosine: float | None = None) -> Judgement | None:
    """The case's fidelity in one figure: its worst output's judgement (lowest score), None without outputs."""
    verdicts = [judge(out, min_cosine) for out in outputs]
    return min(verdicts, key=lambda v: v.score) if verdicts else None


def output_scores(reference: Sequence[Sequence[np.ndarray]], candidate: Sequence[Sequence[np.ndarray]],
                  names: Sequence[str]) -> dict[str, float]:
    """Per output, the score :func:`judge` gives it over check feeds (each feed one sample): the build-time check.

    A candidate with NaN/inf or another shape than the reference's scores 0."""
    return {name: b.score for name, b in output_score_bounds(reference, candidate, names, bound=False).items()}


@dataclass(frozen=True)
class ScoreBounds:
    """An output's score over check feeds and a one-sided lower confidence bound on it: what the same rule would
    give on other samples like these, at CHECK_CONFIDENCE_Z standard errors (jackknife over the feeds)."""

    score: float
    lower: float


# A file the build keeps should pass the guard 19 times in 20 (one-sided 95 %: 1.645). The guard's figure is itself
# an estimate, from other samples like the check's: the difference of the two figures has sqrt(2) times one
# set's standard error. Measured with 1.645 alone: PP-OCR's direction classifier passed its check and scored
# relative L2 0.2043 at the guard (bar 0.2), its detector 0.979 (bar 0.98).
CHECK_CONFIDENCE_Z = 1.645 * math.sqrt(2)


def output_score_bounds(reference: Sequence[Sequence[np.ndarray]], candidate: Sequence[Sequence[np.ndarray]],
                        names: Sequence[str], bound: bool = True) -> dict[str, ScoreBounds]:
    """Per output, its score over the feeds (:func:`output_scores`) and a lower bound from the spread between feeds.

    Why: a build-time check on 16 feeds that passes by a hair fails the guard on 16 others about half the time
    (measured on the corpus: PP-OCR's recogniser 0.985 on its check feeds, 0.976 at the guard; its detector
    passed its check and scored 0.83). The bound asks more of a file whose samples disagree with each other and
    little more of one whose samples all agree. The standard error is the jackknife's (each feed left out in
    turn), from per-feed sums: one more pass over the outputs, not one per feed. ``bound=False`` (the scores alone,
    :func:`output_scores`) skips it, and the lower bound is the score."""
    if len(reference) != len(candidate):
        raise ValueError(f"{len(candidate)} candidate feeds for {len(reference)} reference feeds")
    bounds: dict[str, ScoreBounds] = {}
    for k, name in enumerate(names):
        refs = [np.asarray(out[k]) for out in reference]
        cands = [np.asarray(out[k]) for out in candidate]
        if any(a.shape != b.shape for a, b in zip(refs, cands, strict=True)) or \
                any(b.dtype.kind == "f" and not np.all(np.isfinite(b)) for b in cands):
            bounds[name] = ScoreBounds(0.0, 0.0)
        elif all(a.size == 0 for a in refs):  # nothing to compare (a detector that found nothing): they agree
            bounds[name] = ScoreBounds(1.0, 1.0)
        elif len({a.shape for a in refs}) == 1:  # one array of samples: the guard's statistics exactly
            actual, expected = np.stack(cands), np.stack(refs)
            verdict = judge(output_fidelity(actual, expected))
            left_out = _left_out_scores(verdict.metric, actual, expected) if bound else np.array([])
            lower = verdict.score - CHECK_CONFIDENCE_Z * _jackknife_se(left_out)
            bounds[name] = ScoreBounds(verdict.score, max(lower, -1.0))  # a score is never under -1 (JSON: no -inf)
        else:  # feeds of several shapes (dynamic dims): each judged alone, the scores averaged
            scores = np.array([judge(output_fidelity(b[None], a[None])).score
                               for a, b in zip(refs, cands, strict=True)])
            spread = float(scores.std(ddof=1) / math.sqrt(len(scores))) if bound and len(scores) > 1 else 0.0
            bounds[name] = ScoreBounds(float(scores.mean()),
                                       max(float(scores.mean()) - CHECK_CONFIDENCE_Z * spread, -1.0))
    return bounds


def _left_out_scores(metric: str, actual: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The score ``metric`` gives with each sample left out in turn (empty where there is one sample)."""
    n = len(reference)
    if n < 2 or metric == "abs_floor":  # within the floor everywhere: within it on every subset too
        return np.array([])
    a = actual.astype(np.float64).reshape(n, -1)
    r = reference.astype(np.float64).reshape(n, -1)
    if metric == "exact_match":
        equal = np.sum(a == r, axis=1)
        return (equal.sum() - equal) / ((n - 1) * a.shape[1]) if a.shape[1] else np.ones(n)
    if metric == "rel_l2":
        err, ref = np.sum((a - r) ** 2, axis=1), np.sum(r * r, axis=1)
        rest_err, rest_ref = err.sum() - err, ref.sum() - ref
        e2 = np.where(rest_ref > 0, rest_err / np.where(rest_ref > 0, rest_ref, 1.0),
                      np.where(rest_err > 0, np.inf, 0.0))
        return np.where(np.isfinite(e2), np.clip(1.0 - e2 / 2.0, -1.0, 1.0), 0.0)  # judge's 0 for an infinite error
    cosines = _sample_cosines(a, r)
    return (cosines.sum() - cosines) / (n - 1)


def _jackknife_se(left_out: np.ndarray) -> float:
    n = len(left_out)
    if n < 2 or not np.all(np.isfinite(left_out)):
        return 0.0 if n < 2 else float("inf")
    return float(math.sqrt((n - 1) / n * np.sum((left_out - left_out.mean()) ** 2)))


# -- what the reference's outputs say about the inputs ---------------------------------------------------------


def looks_like_class_scores(reference: np.ndarray) -> bool:
    """Whether an output (samples first) holds class probabilities: floats, one axis of more than one class, and
    every sample non-negative and summing to one (a softmax). Conservative on purpose: logits cannot be told from
    an embedding by their values, so they count as class scores only where the scenario says so."""
    if reference.dtype.kind != "f" or not len(reference):
        return False
    per_sample = [d for d in reference.shape[1:] if d != 1]
    if len(per_sample) != 1 or per_sample[0] < 2:
        return False
    values = reference.astype(np.float64).reshape(len(reference), -1)
    return bool(np.all(values >= 0) and np.all(np.abs(values.sum(axis=1) - 1.0) <= PROBABILITY_SUM_TOLERANCE))


def mean_normalised_entropy(scores: np.ndarray) -> float:
    """0 when every sample picks one class for certain, 1 when every class is equally likely; logits are turned
    into probabilities by a softmax first."""
    if scores.ndim < 2 or not scores.size:
        return 0.0
    values = scores.astype(np.float64).reshape(-1, scores.shape[-1])  # per position over the class axis (the last)
    if not (np.all(values >= 0) and np.all(np.abs(values.sum(axis=1) - 1.0) <= PROBABILITY_SUM_TOLERANCE)):
        values = np.exp(values - values.max(axis=1, keepdims=True))
        values /= values.sum(axis=1, keepdims=True)
    classes = values.shape[1]
    if classes < 2:
        return 0.0
    entropy = -np.sum(np.where(values > 0, values * np.log(np.where(values > 0, values, 1.0)), 0.0), axis=1)
    return float(np.mean(entropy) / math.log(classes))
