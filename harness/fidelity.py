"""How far a case's outputs are from the fp32 reference's, and whether that is within the scenario's budget.

The metrics follow the tools engineers already trust: Polygraphy's comparison (max / mean absolute error,
max relative error, and an atol/rtol check that fails an element only where BOTH tolerances are exceeded)
and TFLite's inference_diff (per-output error statistics). Cosine similarity and top-1 agreement add the two
numbers people actually quote for quantized classifiers. Pure NumPy: the parent process computes these from
the outputs the workers saved, so nothing here touches a runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from model_zoo import targets

# Relative error is |a - r| / |r|; where the reference is (almost) zero the ratio explodes without meaning.
REL_ERR_FLOOR = 1e-12

# The default fidelity guard: what every case that is not the reference must meet when the scenario sets no
# min_cosine of its own. Mean per-sample cosine per output, by precision; pruned variants at most the int8 bar.
# fp32 is held too: a converter (tf2onnx, the TFLite converter) or a runtime's graph rewrite can break a model
# at fp32 just as a quantizer can.
DEFAULT_MIN_COSINE = {"fp32": 0.999, "fp16": targets.FP16_MIN_COSINE,  # the converters' own bars: 0.99
                      "int8_dynamic": targets.INT8_MIN_COSINE, "int8": targets.INT8_MIN_COSINE}  # 0.98
PRUNED_MIN_COSINE = 0.98
# Outputs with fewer values than this per sample (a score, a probability) make a per-sample cosine meaningless
# (two one-element vectors agree whenever their signs do): they are judged by the relative L2 error of the whole
# output over all samples, held to the error a cosine c allows between equal-norm vectors, sqrt(2 (1 - c)).
MIN_VALUES_FOR_COSINE = targets.MIN_VALUES_FOR_COSINE  # 4: the build-time check's rule too
# Differences this small are never a fidelity failure, whatever the cosine says. Where a model's outputs sit in
# the tail of a sigmoid or softmax for every evaluation input (an OCR detector shown noise answers ~1e-7
# everywhere), the fp32 reference itself moves by tens of per cent between ONNX Runtime's graph optimisation
# levels (measured: cosine 0.79 with |error| <= 9e-8), and a cosine of such values judges rounding, not the model.
ABS_ERR_FLOOR = targets.ABS_ERR_FLOOR  # 1e-4: one floor for the build-time check and this guard


def default_min_cosine(precision: str, compression: str) -> float:
    """The guard's bar for a case that sets no min_cosine."""
    bar = DEFAULT_MIN_COSINE.get(precision, PRUNED_MIN_COSINE)
    return bar if compression == "none" else min(bar, PRUNED_MIN_COSINE)


def guard_next_step(precision: str, compression: str, user_model: bool) -> str:
    """What a user can do about a case that misses the default guard: the failure line ends with it."""
    if compression != "none":
        return "next: prune less (a lower sparsity) or fine-tune longer, or set min_cosine if this error is acceptable"
    data = "real inputs (calibration: {source: inputs.npz})" if user_model else "more samples (calibration.samples)"
    if precision == "int8":
        return f"next: calibrate on {data}, try int8_dynamic or fp16, or set min_cosine if this error is acceptable"
    if precision == "int8_dynamic":
        return f"next: try int8 (static, calibrated on {data}) or fp16, or set min_cosine if this error is acceptable"
    if precision == "fp16":
        return "next: keep this model in fp32, or set min_cosine if this error is acceptable"
    return "next: check the converter's log for this model, or set min_cosine if this error is acceptable"


@dataclass(frozen=True)
class AccuracyBudget:
    """Limits a case must meet; ``None`` means "report, do not judge"."""

    max_top1_drop: float | None = None
    min_cosine: float | None = None
    atol: float | None = None
    rtol: float | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> AccuracyBudget:
        return cls(**(data or {}))

    @property
    def judges_tolerance(self) -> bool:
        return self.atol is not None or self.rtol is not None


def output_fidelity(actual: np.ndarray, reference: np.ndarray, atol: float | None = None,
                    rtol: float | None = None) -> dict[str, Any]:
    """Error statistics of one output against the reference, on the same inputs (sample axis first).

    Cosine similarity is computed per sample over the flattened output, then averaged (``cosine``) and its
    worst sample kept (``cosine_min``): one whole-tensor cosine would let a few ruined samples hide among
    hundreds of good ones. ``top1_agreement`` is given for classifier-shaped outputs (N, C) with C > 1.
    """
    if actual.shape != reference.shape:
        raise ValueError(f"output shape {actual.shape} differs from the reference's {reference.shape}")
    a = actual.astype(np.float64).reshape(len(actual), -1)
    r = reference.astype(np.float64).reshape(len(reference), -1)
    abs_err = np.abs(a - r)
    rel_err = abs_err / np.maximum(np.abs(r), REL_ERR_FLOOR)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(r, axis=1)
    dots = np.sum(a * r, axis=1)
    # Two all-zero vectors agree perfectly; one zero vector against a non-zero one does not agree at all.
    cosines = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), np.where(abs_err.max(axis=1) == 0, 1.0, 0.0))
    ref_norm = float(np.linalg.norm(r))
    whole_err = float(np.linalg.norm(a - r))
    result: dict[str, Any] = {
        "values_per_sample": int(r.shape[1]) if r.ndim == 2 else 0,
        "rel_l2_err": whole_err / ref_norm if ref_norm > 0 else (0.0 if whole_err == 0 else float("inf")),
        "exact_match": float(np.mean(a == r)) if actual.dtype.kind in "iub" and a.size else None,
        "max_abs_err": float(abs_err.max()) if abs_err.size else 0.0,
        "mean_abs_err": float(abs_err.mean()) if abs_err.size else 0.0,
        "max_rel_err": float(rel_err.max()) if rel_err.size else 0.0,
        "cosine": float(cosines.mean()),
        "cosine_min": float(cosines.min()),
        "top1_agreement": None,
    }
    classes = [d for d in actual.shape[1:] if d != 1]  # a sample of class scores, batch axis of 1 kept or not
    if len(classes) == 1 and classes[0] > 1 and actual.dtype.kind == "f":
        result["top1_agreement"] = float(np.mean(a.argmax(axis=1) == r.argmax(axis=1)))
    if atol is not None or rtol is not None:
        # An element fails only where it exceeds both tolerances (Polygraphy's rule): a large relative error
        # on a near-zero value, or a large absolute error on a huge value, is not a failure by itself.
        failing = (abs_err > (atol or 0.0)) & (rel_err > (rtol or 0.0))
        result.update(atol=atol, rtol=rtol, out_of_tolerance=int(failing.sum()),
                      within_tolerance=bool(not failing.any()))
    return result


def top1_accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of samples whose highest score is the label."""
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} predictions for {len(labels)} labels")
    return float(np.mean(scores.reshape(len(scores), -1).argmax(axis=1) == labels))


def uninformative_reference(reference_outputs: list[np.ndarray]) -> str | None:
    """Why the reference cannot judge a conversion, or None.

    A model that answers the same for every input (an untrained network whose signal dies, a constant head)
    is reproduced perfectly by any conversion, broken or not: cosine 1.0 and top-1 agreement 1.0 then mean
    nothing, and the record must say so rather than let them pass for evidence.
    """
    varying = [out for out in reference_outputs if out.shape[0] > 1 and np.ptp(out.reshape(out.shape[0], -1), 0).max()
               > 1e-6 * max(float(np.abs(out).max()), 1e-30)]
    if varying or not any(out.shape[0] > 1 for out in reference_outputs):
        faint = [i for i, out in enumerate(reference_outputs)
                 if out.dtype.kind == "f" and out.size and float(np.abs(out).max()) <= ABS_ERR_FLOOR]
        if faint and len(faint) == len(reference_outputs):
            return (f"the fp32 reference's outputs stay below {ABS_ERR_FLOOR:g} for every evaluation input (the model "
                    "does not respond to these inputs: describe their range or values), so fidelity is judged by the "
                    "absolute error alone")
        return None
    return ("the fp32 reference gives the same outputs for every evaluation input, so these fidelity figures cannot "
            "tell a faithful conversion from a broken one")


def _output_name(out: dict[str, Any]) -> str:
    """The reference's name for an output: backends rename outputs (TFLite's ``StatefulPartitionedCall:0``),
    and the same model's failures should read the same on every backend."""
    return out.get("reference_name") or out["name"]


def cosine_violation(out: dict[str, Any], min_cosine: float) -> str | None:
    """Why one output misses a cosine bar, by the rule that suits its kind (see MIN_VALUES_FOR_COSINE), or None."""
    name = _output_name(out)
    if out.get("exact_match") is None and out["max_abs_err"] <= ABS_ERR_FLOOR:
        return None
    if out.get("exact_match") is not None:  # integer / boolean outputs: class ids, indices, masks
        if out["exact_match"] < min_cosine:
            return (f"output {name!r}: {out['exact_match']:.4f} of its values equal the reference's "
                    f"(< {min_cosine}, the bar min_cosine sets for integer outputs)")
        return None
    if out.get("values_per_sample", MIN_VALUES_FOR_COSINE) < MIN_VALUES_FOR_COSINE:
        allowed = float(np.sqrt(2.0 * (1.0 - min_cosine)))
        if not out["rel_l2_err"] <= allowed:
            return (f"output {name!r}: relative L2 error {out['rel_l2_err']:.4g} over all samples > {allowed:.4g} "
                    f"(what min_cosine {min_cosine} allows {out['values_per_sample']} value(s) per sample)")
        return None
    if not out["cosine"] >= min_cosine:
        return f"output {name!r}: cosine {out['cosine']:.8f} < min_cosine {min_cosine}"
    return None


def budget_violations(accuracy: dict[str, Any], budget: AccuracyBudget) -> list[str]:
    """Every budget the case misses, each with the measured number beside the limit."""
    problems = []
    outputs = accuracy.get("outputs") or []
    if budget.min_cosine is not None:
        problems += [p for out in outputs if (p := cosine_violation(out, budget.min_cosine))]
    if budget.judges_tolerance:
        for out in outputs:
            if not out.get("within_tolerance", True):
                problems.append(
                    f"output {_output_name(out)!r}: {out['out_of_tolerance']} element(s) exceed both "
                    f"atol {budget.atol} and rtol {budget.rtol} (max abs err {out['max_abs_err']:.3g}, max rel err "
                    f"{out['max_rel_err']:.3g})"
                )
    drop = accuracy.get("top1_drop")
    if budget.max_top1_drop is not None and drop is not None and drop > budget.max_top1_drop:
        problems.append(
            f"top-1 drop {drop:.4f} > max_top1_drop {budget.max_top1_drop} "
            f"(reference {accuracy['reference']['top1']:.4f}, this case {accuracy['top1']:.4f})"
        )
    return problems
