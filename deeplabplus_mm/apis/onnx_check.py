"""Checks of an exported file: its simplification with ONNX Runtime's
hardware-independent optimisations, and ONNX Runtime against PyTorch on
random images.
"""
import os
import os.path as osp
from typing import Dict, Sequence, Tuple

import numpy as np
import torch

from .onnx_metadata import INPUT_NAME

# --simplify-check: ONNX Runtime vs PyTorch, relative to max(1, |logits|).
CHECK_TOLERANCE = 1e-4


def simplify_onnx(path: str) -> None:
    """Rewrite ``path`` in place with ONNX Runtime's basic graph
    optimisations: constant folding, redundant node elimination and
    semantics-preserving fusions (Conv+BN, Conv+Add, Conv+Mul...). They are
    the hardware-independent level, so the result holds standard ONNX
    operators only (checked) and runs anywhere; the metadata is kept.

    Raises:
        ValueError: The result would need operators outside the standard
            ``ai.onnx`` domain.
    """
    import onnx
    import onnxruntime as ort
    original = onnx.load(path)
    out = path + '.simplified'
    try:
        options = ort.SessionOptions()
        options.graph_optimization_level = (
            ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)
        options.optimized_model_filepath = out
        ort.InferenceSession(path, options,
                             providers=['CPUExecutionProvider'])
        simplified = onnx.load(out)
    finally:
        if osp.exists(out):
            os.remove(out)
    domains = {o.domain for o in simplified.opset_import} - {'', 'ai.onnx'}
    used = {n.domain for n in simplified.graph.node} - {'', 'ai.onnx'}
    if used:
        raise ValueError('simplification introduced non-standard operators '
                         f'({sorted(used)}): keep the unsimplified export')
    del simplified.opset_import[:]
    simplified.opset_import.extend(
        o for o in original.opset_import if o.domain not in domains)
    del simplified.metadata_props[:]
    simplified.metadata_props.extend(original.metadata_props)
    simplified.doc_string = original.doc_string
    simplified.producer_name = original.producer_name
    simplified.producer_version = original.producer_version
    onnx.save_model(simplified, path)



def check_against_torch(model: torch.nn.Module, onnx_file: str,
                        shapes: Sequence[Tuple[int, int]],
                        batch: int = 1, seed: int = 0) -> Dict:
    """Run ONNX Runtime (CPU) and PyTorch on the same random images.

    Returns:
        dict: ``{'HxW': (max |diff| of the logits, max |logit|,
        fraction of equal labels)}``.
    """
    import onnxruntime as ort
    session = ort.InferenceSession(onnx_file,
                                   providers=['CPUExecutionProvider'])
    gen = torch.Generator().manual_seed(seed)
    result = {}
    for h, w in shapes:
        image = torch.rand(batch, 3, h, w, generator=gen) * 255
        with torch.no_grad():
            ref = model(image)
        ref_logits = (ref[0] if isinstance(ref, tuple) else ref).numpy()
        got = session.run(None, {INPUT_NAME: image.numpy()})
        diff = float(np.abs(got[0] - ref_logits).max())
        labels_ref = ref_logits.argmax(1)
        labels = got[1] if len(got) > 1 else got[0].argmax(1)
        result[f'{h}x{w}'] = (diff, float(np.abs(ref_logits).max()),
                              float((labels == labels_ref).mean()))
    return result

