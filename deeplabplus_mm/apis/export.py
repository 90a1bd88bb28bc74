"""Export a segmentor to ONNX: raw pixels in, logits at the input size out.

The exported graph (:class:`DeployableSegmentor`) is the whole network of
``EncoderDecoder.encode_decode`` for one input tensor:

* input ``image``: float32 ``[N, 3, H, W]``, raw pixel values 0..255 in the
  channel order the network was trained on (RGB for every config here:
  their ``SegDataPreProcessor`` has ``bgr_to_rgb=True``);
* the config's normalisation ``(image - mean) / std`` **inside the graph**
  (our Xception configs: ``x / 127.5 - 1``, TF's preprocessing);
* backbone, neck (if any), decode head;
* the final bilinear resize of the logits to ``H x W`` with the head's
  ``align_corners`` (True for our DeepLab v3+ head: TF's
  ``resize_bilinear(align_corners=True)``);
* output ``logits``: float32 ``[N, num_classes, H, W]``; with ``argmax`` also
  ``labels``: int64 ``[N, H, W]`` (the predicted class of each pixel).

What stays the caller's job is what the config's test pipeline does before
the network: resizing (e.g. ADE20K's longer side 513) and the test-time
padding of ``data_preprocessor.test_cfg`` (the VOC configs pad bottom/right to
513x513 with the value that normalises to 0, i.e. 127.5, which the image
pooling averages in, as TF's evaluation does). Both are written into the
file's metadata (key ``deeplabplus_mm``, JSON) and done by
:class:`~deeplabplus_mm.apis.OnnxSegmenter`.

With ``dynamic=True`` the batch, height and width axes are symbolic: every
size in the graph (the image pooling's broadcast, the decoder's resize to the
low-level feature, the final resize) is computed from the input's shape, as
TF's ``scale_dimension`` sizes are (they coincide for the explicit padding of
the aligned Xception, see shared/tf_deeplab/README.md).

``torch.onnx.export(..., dynamo=True)`` (torch.export + onnxscript) is used
(:mod:`.onnx_exporters`); ``onnx`` and ``onnxscript`` are imported only when
exporting. The wrapper: :mod:`.deployable`; the metadata:
:mod:`.onnx_metadata`; simplification and the check against PyTorch:
:mod:`.onnx_check`. ``tools/deployment/export_onnx.py`` is the command.
"""
import os
import os.path as osp
import tempfile
from typing import Dict, Optional, Tuple

import torch

from .deployable import DeployableSegmentor, build_deployable, default_shape
from .onnx_check import CHECK_TOLERANCE, check_against_torch, simplify_onnx
from .onnx_exporters import (DYNAMO_MIN_OPSET, MIN_OPSET, dynamo_export,
                             last_line, opsets, quiet_exporter,
                             torchscript_export)
from .onnx_metadata import (INPUT_NAME, LABELS_NAME, LOGITS_NAME,
                            METADATA_KEY, attach_metadata, build_metadata,
                            read_metadata)

__all__ = [
    'DeployableSegmentor', 'build_deployable', 'export_onnx',
    'check_export_args', 'simplify_onnx', 'check_against_torch',
    'read_metadata', 'default_shape', 'METADATA_KEY', 'INPUT_NAME'
]


def _check_shape(shape) -> Tuple[int, int]:
    h, w = (int(s) for s in shape)
    if h < 2 or w < 2:
        raise ValueError(f'--shape {h} {w}: height and width must be >= 2')
    return h, w


def _check_opset(opset: Optional[int]) -> None:
    """Raises ValueError for an opset the model cannot be exported with."""
    import onnx
    max_opset = onnx.defs.onnx_opset_version()
    if opset is not None and not MIN_OPSET <= opset <= max_opset:
        raise ValueError(
            f'opset {opset}: the model cannot be exported with it: it needs '
            f'Resize with align_corners (opset >= {MIN_OPSET}) and onnx '
            f'{onnx.__version__} knows opsets up to {max_opset}')


def _check_writable(out_file: str) -> str:
    """Create ``out_file``'s folder; return a fresh temp file beside it.

    Raises:
        OSError: The folder cannot be made or written to, or ``out_file`` is
            a folder.
    """
    if osp.isdir(out_file):
        raise IsADirectoryError(f'{out_file}: is a folder, not a file name')
    folder = osp.dirname(osp.abspath(out_file))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=osp.basename(out_file) + '.', suffix='.tmp', dir=folder)
    except OSError as e:
        raise OSError(f'{out_file}: cannot write there '
                      f'({e.strerror or e})') from None
    os.close(fd)
    return tmp


def check_export_args(out_file: str,
                      shape: Optional[Tuple[int, int]] = None,
                      opset: Optional[int] = None) -> None:
    """What :func:`export_onnx` would refuse, checked before a model is
    built: ``shape`` (if given), ``opset``, and that ``out_file`` can be
    written (nothing is left there).

    Raises:
        OSError: ``out_file`` cannot be written.
        ValueError: Bad ``shape`` or an ``opset`` the model cannot be
            exported with.
    """
    if shape:
        _check_shape(shape)
    _check_opset(opset)
    os.remove(_check_writable(out_file))


def export_onnx(model: DeployableSegmentor,
                out_file: str,
                shape: Tuple[int, int] = (513, 513),
                dynamic: bool = False,
                opset: Optional[int] = None,
                metadata: Optional[Dict] = None,
                simplify_check: bool = False,
                verbose: bool = False) -> Dict:
    """Export ``model`` to ``out_file`` (written atomically).

    Args:
        model: The :class:`DeployableSegmentor` (eval mode).
        out_file: The ``.onnx`` file; its folder is created. A temp file
            beside it is renamed at the end: nothing is left half-written.
        shape: ``(H, W)`` of the example input: the fixed input size, or with
            ``dynamic`` only the size the graph is traced at.
        dynamic: Symbolic batch, height and width axes.
        opset: ONNX opset (default: the exporter's, 18). 18 and newer use
            torch's dynamo exporter (``torch.export``), 11..17 (e.g. for
            TensorRT 8) torch's TorchScript exporter; an opset the model
            cannot be expressed in is an error.
        metadata: Extra JSON-able entries for the ``deeplabplus_mm``
            metadata (config, checkpoint, dataset meta...).
        simplify_check: Before the file is renamed into place, simplify it
            (:func:`simplify_onnx`) and compare ONNX Runtime with ``model``
            on random images (:func:`check_against_torch`): at ``shape``,
            and with ``dynamic`` also at a second size and batch 2.
        verbose: Show the exporter's own progress and warnings.

    Returns:
        dict: The metadata written into the file; with ``simplify_check``
        also ``'check'``: the comparison's figures.

    Raises:
        OSError: ``out_file`` cannot be written.
        ValueError: Bad ``shape``, an ``opset`` the model cannot be
            exported with, or (``simplify_check``) ONNX Runtime disagrees
            with PyTorch.
    """
    import onnx
    h, w = _check_shape(shape)
    _check_opset(opset)
    # torch's TorchScript exporter restores the wrapper's mode on all
    # children afterwards: a wrapper in training mode would leave BN there.
    model.eval()
    tmp = _check_writable(out_file)
    try:
        meta = _export_to(model, tmp, (h, w), dynamic, opset, metadata,
                          verbose)
        onnx.checker.check_model(tmp, full_check=True)
        if simplify_check:
            simplify_onnx(tmp)
            onnx.checker.check_model(tmp, full_check=True)
            shapes = [(h, w)]
            if dynamic:  # another size, and a batch of 2
                shapes.append((max(2, h * 3 // 4 + 1), max(2, w + w // 3)))
            meta['check'] = check_against_torch(
                model, tmp, shapes, batch=2 if dynamic else 1)
            for size, (diff, scale, _) in meta['check'].items():
                if diff > CHECK_TOLERANCE * max(1.0, scale):
                    raise ValueError(
                        f'ONNX Runtime disagrees with PyTorch at {size}: max '
                        f'|diff| {diff:.3g} with logits up to {scale:.3g}')
        os.replace(tmp, out_file)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    return meta


def _export_to(model, path, shape, dynamic, opset, metadata, verbose):
    """Export with the exporter ``opset`` calls for, write the metadata into
    the file at ``path``; returns the metadata."""
    import onnx
    outputs = [LOGITS_NAME] + ([LABELS_NAME] if model.argmax else [])
    what = f'opset {opset}' if opset is not None else 'the default opset'
    try:
        with quiet_exporter(verbose), torch.no_grad():
            if opset is not None and opset < DYNAMO_MIN_OPSET:
                proto = torchscript_export(model, path, shape, dynamic,
                                           opset, outputs)
            else:
                proto = dynamo_export(model, shape, dynamic, opset, outputs)
    except Exception as e:
        raise ValueError(f'the model cannot be exported with {what}: '
                         f'{last_line(e)}') from e
    written = opsets(proto).get('ai.onnx')
    if opset is not None and written != opset:
        raise ValueError(
            f'opset {opset}: the model cannot be exported with it (the '
            f'converter stopped at opset {written})')
    meta = build_metadata(model, shape, dynamic, written, metadata)
    attach_metadata(proto, meta, outputs)
    onnx.save_model(proto, path)
    return meta
