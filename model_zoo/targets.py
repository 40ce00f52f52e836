"""What the converters aim for and how long they may search: one home for the bars that the build-time check
(model_zoo.onnx_precision) and the harness's fidelity guard (harness.fidelity) must share, in a module light
enough for the engine and the worker to import (the converters themselves load onnx and ONNX Runtime)."""

# Mean per-feed cosine every output of an fp16 file must keep against fp32, or nodes go back to fp32.
FP16_MIN_COSINE = 0.99
# A feed whose outputs differ by no more than this anywhere agrees, whatever its cosine: outputs in the tail of a
# sigmoid (an OCR detector shown noise answers ~1e-7) move by tens of per cent between ONNX Runtime's own graph
# optimisation levels in fp32. The harness's fidelity guard uses the same floor (harness.fidelity).
ABS_ERR_FLOOR = 1e-4
# The harness's default guard for int8 and int8_dynamic, recorded as the check's pass/fail in meta.json.
INT8_MIN_COSINE = 0.98
# What the int8 node search aims at on its check feeds: three quarters of the guard's error budget (1 - c), because
# the guard judges other samples. Measured without the margin: Basic Pitch passed the build-time check and scored
# 0.9799 at the guard; Silero VAD's speech probability at relative L2 0.09-0.12 on check feeds scored 0.20-0.25.
INT8_SEARCH_MIN_COSINE = 1.0 - (1.0 - INT8_MIN_COSINE) * 3 / 4
# Outputs with fewer values than this per feed are judged by their relative L2 error (model_zoo.fidelity.judge); the
# harness's guard uses the same rule (harness.fidelity).
MIN_VALUES_FOR_COSINE = 4
# Wall-clock budget of the automatic fp16 search; when it runs out, the last configuration that passed
# (more nodes in fp32) is kept, so the search never fails for want of time.
FP16_SEARCH_SECONDS = 300.0
# Wall-clock budget of the int8 node search; out of time, the last configuration that passed is kept.
INT8_SEARCH_SECONDS = 240.0
