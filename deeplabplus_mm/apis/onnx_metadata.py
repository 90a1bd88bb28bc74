"""What an exported file says about itself: the names of its input and
outputs, and the ``deeplabplus_mm`` metadata (JSON: the preprocessing a
caller must do, the outputs, the export settings) written into it by
:func:`~deeplabplus_mm.apis.export.export_onnx` and read by
:class:`~deeplabplus_mm.apis.OnnxSegmenter`.
"""
import json
from typing import Dict, Optional, Sequence, Tuple

INPUT_NAME = 'image'
LOGITS_NAME = 'logits'
LABELS_NAME = 'labels'
METADATA_KEY = 'deeplabplus_mm'
METADATA_FORMAT = 1


def build_metadata(model, shape: Tuple[int, int], dynamic: bool,
                   opset: int, extra: Optional[Dict] = None) -> Dict:
    """The metadata of ``model`` (a
    :class:`~deeplabplus_mm.apis.deployable.DeployableSegmentor`) exported
    at ``shape`` with ``opset``, plus the caller's ``extra`` entries."""
    import torch
    return dict(
        format=METADATA_FORMAT,
        input=dict(name=INPUT_NAME, **model.preprocessing()),
        outputs=dict(
            logits=f'{LOGITS_NAME}: float32 [N, {model.out_channels}, H, W]'
            ' at the input size',
            **({
                'labels': f'{LABELS_NAME}: int64 [N, H, W], the argmax'
            } if model.argmax else {})),
        out_channels=model.out_channels,
        align_corners=model.align_corners,
        threshold=model.threshold,
        dynamic=bool(dynamic),
        shape=None if dynamic else [int(s) for s in shape],
        traced_shape=[int(s) for s in shape],
        opset=opset,
        torch=torch.__version__,
        **(extra or {}))


def attach_metadata(proto, meta: Dict, outputs: Sequence[str]) -> None:
    """Write ``meta`` into the ``ModelProto`` (replacing any metadata) with
    a one-line description of the input and ``outputs``."""
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    proto.doc_string = (
        f'{METADATA_KEY}: input {INPUT_NAME} float32 NCHW raw '
        f'{meta["input"]["channel_order"]} 0..255 (normalised inside); '
        f'outputs {", ".join(outputs)} at the input size')
    proto.producer_name = 'deeplabplus_mm export_onnx'


def read_metadata(onnx_file: str, session=None) -> Dict:
    """The ``deeplabplus_mm`` metadata of an exported file.

    Raises:
        ValueError: The file has none (not written by :func:`export_onnx`).
    """
    if session is not None:
        props = session.get_modelmeta().custom_metadata_map
    else:
        import onnx
        props = {
            p.key: p.value
            for p in onnx.load(onnx_file, load_external_data=False)
            .metadata_props
        }
    if METADATA_KEY not in props:
        raise ValueError(f'{onnx_file}: no {METADATA_KEY!r} metadata (not '
                         'written by tools/deployment/export_onnx.py)')
    return json.loads(props[METADATA_KEY])

