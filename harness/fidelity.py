"""Whether a case's outputs are within the scenario's budget or the default fidelity guard, and what the
reference's outputs say about the evaluation inputs. The statistics and the rule that judges one output are
model_zoo.fidelity's, shared with the build-time check of converted files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from model_zoo import targets
from model_zoo.fidelity import NEAR_UNIFORM_ENTROPY, mean_normalised_entropy, violation
from model_zoo.targets import ABS_ERR_FLOOR

# The default fidelity guard: what every case that is not the reference must meet when the scenario sets no
# min_cosine of its own. By precision, in cosine units (model_zoo.fidelity.judge turns the bar into the units of
# the metric that judges each output); pruned variants at most the int8 bar. fp32 is held too: a converter
# (tf2onnx, the TFLite converter) or a runtime's graph rewrite can break a model at fp32 just as a quantizer can.
DEFAULT_MIN_COSINE = {"fp32": 0.999, "fp16": targets.FP16_MIN_COSINE,  # the converters' own bars: 0.99
                      "int8_dynamic": targets.INT8_MIN_COSINE, "int8": targets.INT8_MIN_COSINE}  # 0.98
PRUNED_MIN_COSINE = 0.98
# What a user can do about inputs that do not exercise the model (the scenario keys of model_zoo.inputs)
INPUTS_HINT = ("describe what fills its inputs (data: images or documents with their range, mean and std) or give "
               "real ones (data: inputs.npz)")


def default_min_cosine(precision: str, compression: str) -> float:
    """The guard's bar for a case that sets no min_cosine."""
    bar = DEFAULT_MIN_COSINE.get(precision, PRUNED_MIN_COSINE)
    return bar if compression == "none" else min(bar, PRUNED_MIN_COSINE)


def guard_next_step(precision: str, compression: str, user_model: bool) -> str:
    """What a user can do about a case that misses the default guard: the failure line ends with it."""
    if compression != "none":
        return "next: prune less (a lower sparsity) or fine-tune longer, or set min_cosine if this error is acceptable"
    data = "real inputs (data: inputs.npz)" if user_model else "more samples (calibration.samples)"
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


def top1_accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of samples whose highest score is the label."""
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} predictions for {len(labels)} labels")
    return float(np.mean(scores.reshape(len(scores), -1).argmax(axis=1) == labels))


def uninformative_reference(reference_outputs: list[np.ndarray], names: list[str] | None = None,
                            class_outputs: list[bool] | None = None, near_uniform_exempt: bool = False) -> str | None:
    """Why the evaluation inputs cannot show what a conversion does to the model, or None.

    A model that answers the same for every input (an untrained network whose signal dies, a constant head) is
    reproduced perfectly by any conversion, broken or not: cosine 1.0 and top-1 agreement 1.0 then mean nothing.
    Outputs that stay under the absolute floor are judged by that floor alone. And class scores that stay near
    uniform (a classifier shown noise never decides) are reproduced by any conversion that keeps them flat, while
    the inputs the model was made for would show the damage. ``near_uniform_exempt``: the zoo's untrained models,
    near uniform by construction.
    """
    names = names or [f"#{i}" for i in range(len(reference_outputs))]
    present = [out for out in reference_outputs if out.size]  # an output of no values says nothing either way
    varying = [out for out in present if out.shape[0] > 1 and np.ptp(out.reshape(out.shape[0], -1), 0).max()
               > 1e-6 * max(float(np.abs(out).max()), 1e-30)]
    if present and not varying and any(out.shape[0] > 1 for out in present):
        return ("the fp32 reference gives the same outputs for every evaluation input, so these fidelity figures "
                "cannot tell a faithful conversion from a broken one")
    faint = [out for out in present if out.dtype.kind == "f" and float(np.abs(out).max()) <= ABS_ERR_FLOOR]
    if faint and len(faint) == len(present):
        return (f"the fp32 reference's outputs stay below {ABS_ERR_FLOOR:g} for every evaluation input (the model "
                f"does not respond to these inputs: {INPUTS_HINT}), so fidelity is judged by the absolute error alone")
    if near_uniform_exempt:
        return None
    for name, out, classes in zip(names, reference_outputs, class_outputs or [], strict=False):
        if classes and (entropy := mean_normalised_entropy(out)) >= NEAR_UNIFORM_ENTROPY:
            return (f"the class scores of output {name!r} stay near uniform on the evaluation inputs (mean normalised "
                    f"entropy {entropy:.2f}; 1 = every class equal): the model decides nothing on them, so a "
                    f"conversion that keeps them flat passes whatever it does to real inputs ({INPUTS_HINT})")
    return None


def budget_violations(accuracy: dict[str, Any], budget: AccuracyBudget) -> list[str]:
    """Every budget the case misses, each with the measured number beside the limit."""
    problems = []
    outputs = accuracy.get("outputs") or []
    if budget.min_cosine is not None:
        problems += [p for out in outputs if (p := violation(out, budget.min_cosine))]
    if budget.judges_tolerance:
        for out in outputs:
            if not out.get("within_tolerance", True):
                problems.append(
                    f"output {out.get('reference_name') or out['name']!r}: {out['out_of_tolerance']} element(s) "
                    f"exceed both atol {budget.atol} and rtol {budget.rtol} (max abs err {out['max_abs_err']:.3g}, "
                    f"max rel err {out['max_rel_err']:.3g})"
                )
    drop = accuracy.get("top1_drop")
    if budget.max_top1_drop is not None and drop is not None and drop > budget.max_top1_drop:
        problems.append(
            f"top-1 drop {drop:.4f} > max_top1_drop {budget.max_top1_drop} "
            f"(reference {accuracy['reference']['top1']:.4f}, this case {accuracy['top1']:.4f})"
        )
    return problems
