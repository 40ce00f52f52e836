"""fp32 ONNX → fp16 / int8 ONNX that works on real exported models, judged by a build-time fidelity check.

Why this module exists: real third-party ONNX files (PaddleOCR at opset 11-12 with weights in Constant nodes,
Silero VAD with its whole network inside If subgraphs and a recurrent state) broke every naive conversion:
per-channel QDQ needs opset 13, `quantize_dynamic` wants weights as initializers, onnxconverter-common's fp16
clamps out-of-range weights and retypes subgraph values that ONNX Runtime then refuses, and a converted file
that loads can still be silently wrong (a detector's output at cosine 0.04 against fp32). So every conversion
here (1) pre-processes the graph the way ONNX Runtime recommends (shape inference plus its basic, standard-op
graph optimisations, which fold Constant nodes into initializers and fuse BatchNormalization into Conv),
(2) adapts to the graph (opset upgrade, per-tensor fallback, If branches quantized one by one, fp16-breaking
nodes kept in fp32) and (3) measures the result against the fp32 source on the caller's feeds with ONNX
Runtime CPU. fp16 must pass that check (FP16_MIN_COSINE) or the build fails with one line saying why; an int8
file that misses it gets nodes back in fp32 until it passes, and one that never does is kept for the harness's
guard to fail with its figures.

Every public function returns a JSON-ready dict of facts for the artefact's meta.json, and raises
`ConversionError` (one line, the next step included) when a model truly cannot be converted.
"""

from model_zoo.onnx_precision.fp16 import FP16_FRAGILE_OPS, FP16_MAX, onnx_to_fp16
from model_zoo.onnx_precision.graph import ConversionError, check_onnx
from model_zoo.onnx_precision.int8 import onnx_int8_options, onnx_to_int8, onnx_to_int8_dynamic

__all__ = ["FP16_FRAGILE_OPS", "FP16_MAX", "ConversionError", "check_onnx", "onnx_int8_options", "onnx_to_fp16",
           "onnx_to_int8", "onnx_to_int8_dynamic"]
