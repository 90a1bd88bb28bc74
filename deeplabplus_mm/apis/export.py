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

``torch.onnx.export(..., dynamo=True)`` (torch.export + onnxscript) is used;
``onnx`` and ``onnxscript`` are imported only here, when exporting.
"""
import contextlib
import json
import logging
import os
import os.path as osp
import tempfile
import warnings
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    'DeployableSegmentor', 'build_deployable', 'export_onnx', 'run_export',
    'simplify_onnx', 'check_against_torch', 'read_metadata', 'default_shape',
    'METADATA_KEY', 'INPUT_NAME'
]

INPUT_NAME = 'image'
LOGITS_NAME = 'logits'
LABELS_NAME = 'labels'
METADATA_KEY = 'deeplabplus_mm'
METADATA_FORMAT = 1
# torch's dynamo exporter writes opset 18 and newer; older opsets go through
# its TorchScript exporter, down to 11 (Resize with align_corners).
DYNAMO_MIN_OPSET = 18
MIN_OPSET = 11
# --simplify-check: ONNX Runtime vs PyTorch, relative to max(1, |logits|).
CHECK_TOLERANCE = 1e-4


class DeployableSegmentor(nn.Module):
    """The graph that is exported: normalisation + network + resize.

    Args:
        segmentor: An mmseg ``EncoderDecoder`` (``extract_feat`` and a
            ``decode_head``) in eval mode.
        argmax: Also return the per-pixel class (``labels``).

    Raises:
        ValueError: The segmentor is not a single-stage encoder-decoder
            (cascade decode heads and sliding-window inference are not
            exported).
    """

    def __init__(self, segmentor: nn.Module, argmax: bool = False):
        super().__init__()
        from mmseg.models.segmentors import EncoderDecoder
        if not isinstance(segmentor, EncoderDecoder) or isinstance(
                segmentor.decode_head, nn.ModuleList):
            raise ValueError(
                f'{type(segmentor).__name__}: only EncoderDecoder segmentors '
                'with one decode head can be exported')
        mode = (segmentor.test_cfg or {}).get('mode', 'whole')
        if mode != 'whole':
            raise ValueError(f"test_cfg.mode={mode!r}: only whole-image "
                             "inference ('whole') can be exported")
        self.segmentor = segmentor
        self.argmax = argmax
        pre = segmentor.data_preprocessor
        normalize = getattr(pre, '_enable_normalize', False)
        mean = pre.mean.reshape(1, -1, 1, 1) if normalize else torch.zeros(
            1, 3, 1, 1)
        std = pre.std.reshape(1, -1, 1, 1) if normalize else torch.ones(
            1, 3, 1, 1)
        self.register_buffer('mean', mean.float().clone(), persistent=False)
        self.register_buffer('std', std.float().clone(), persistent=False)
        head = segmentor.decode_head
        self.align_corners = bool(head.align_corners)
        self.out_channels = int(head.out_channels)
        self.threshold = float(getattr(head, 'threshold', 0.3) or 0.3)
        self.eval()

    def forward(self, image: torch.Tensor):
        x = (image - self.mean) / self.std
        logits = self.segmentor.decode_head(self.segmentor.extract_feat(x))
        logits = F.interpolate(
            logits,
            size=image.shape[2:],
            mode='bilinear',
            align_corners=self.align_corners)
        if not self.argmax:
            return logits
        if self.out_channels == 1:
            labels = (logits.sigmoid() > self.threshold)[:, 0].long()
        else:
            labels = logits.argmax(dim=1)
        return logits, labels

    def preprocessing(self) -> Dict:
        """What a caller must do before the graph (JSON-ready)."""
        pre = self.segmentor.data_preprocessor
        conversion = bool(getattr(pre, 'channel_conversion', False))
        test_cfg = dict(getattr(pre, 'test_cfg', None) or {})
        size = test_cfg.get('size')
        pad_val = float(getattr(pre, 'pad_val', 0))
        return dict(
            layout='NCHW',
            dtype='float32',
            value_range=[0, 255],
            # mmcv loads images as BGR; the network sees them converted
            # when the preprocessor converts.
            channel_order='RGB' if conversion else 'BGR',
            normalization='inside the graph: (image - mean) / std',
            mean=self.mean.flatten().tolist(),
            std=self.std.flatten().tolist(),
            # SegDataPreProcessor pads after normalising, with pad_val; the
            # raw value that normalises to it, per channel:
            test_pad=dict(
                size=list(size) if size else None,
                size_divisor=test_cfg.get('size_divisor'),
                where='bottom/right',
                normalized_value=pad_val,
                raw_value=(self.mean.flatten() +
                           pad_val * self.std.flatten()).tolist()),
        )


def build_deployable(config, checkpoint: str, fuse_conv_bn: bool = False,
                     argmax: bool = False):
    """Build the config's segmentor with ``checkpoint``'s weights and wrap it
    for export.

    Returns:
        tuple: ``(DeployableSegmentor, cfg, dataset_meta)``.

    Raises:
        CheckpointMismatchError: The checkpoint does not fit the config
            (names the first missing / unexpected keys).
    """
    from ..models.utils import prepare_for_inference
    from .inference import build_segmentor, load_config
    cfg = load_config(config)
    model, dataset_meta = build_segmentor(cfg, checkpoint)
    prepare_for_inference(model, fuse_conv_bn, False)
    return DeployableSegmentor(model, argmax).eval(), cfg, dataset_meta


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


@contextlib.contextmanager
def _quiet_exporter(verbose: bool):
    """Silence the exporter's progress lines and its warnings about
    torchvision operators and deprecations (not ours to fix)."""
    if verbose:
        yield
        return
    loggers = [logging.getLogger(n) for n in ('torch.onnx', 'onnxscript')]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)
        warnings.simplefilter('ignore', DeprecationWarning)
        warnings.simplefilter('ignore', UserWarning)
        try:
            with open(os.devnull, 'w') as null, \
                    contextlib.redirect_stdout(null):
                yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def _last_line(error: BaseException) -> str:
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    return f'{type(error).__name__}: {lines[0] if lines else ""}'[:300]


def _opsets(model_proto) -> Dict[str, int]:
    return {o.domain or 'ai.onnx': o.version for o in model_proto.opset_import}


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
    import onnx
    outputs = [LOGITS_NAME] + ([LABELS_NAME] if model.argmax else [])
    what = f'opset {opset}' if opset is not None else 'the default opset'
    try:
        with _quiet_exporter(verbose), torch.no_grad():
            if opset is not None and opset < DYNAMO_MIN_OPSET:
                proto = _torchscript_export(model, path, shape, dynamic,
                                            opset, outputs)
            else:
                proto = _dynamo_export(model, shape, dynamic, opset, outputs)
    except Exception as e:
        raise ValueError(f'the model cannot be exported with {what}: '
                         f'{_last_line(e)}') from e
    written = _opsets(proto).get('ai.onnx')
    if opset is not None and written != opset:
        raise ValueError(
            f'opset {opset}: the model cannot be exported with it (the '
            f'converter stopped at opset {written})')
    meta = dict(
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
        opset=written,
        torch=torch.__version__,
        **(metadata or {}))
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    proto.doc_string = (
        f'{METADATA_KEY}: input {INPUT_NAME} float32 NCHW raw '
        f'{meta["input"]["channel_order"]} 0..255 (normalised inside); '
        f'outputs {", ".join(outputs)} at the input size')
    proto.producer_name = 'deeplabplus_mm export_onnx'
    onnx.save_model(proto, path)
    return meta


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


def default_shape(cfg) -> Tuple[int, int]:
    """The export size a config suggests: its test padding size, else its
    crop size, else 513x513."""
    pre = cfg.model.get('data_preprocessor') or {}
    for size in ((pre.get('test_cfg') or {}).get('size'), pre.get('size')):
        if size:
            return int(size[0]), int(size[1])
    return 513, 513


def run_export(config: str,
               checkpoint: str,
               out_file: str,
               shape: Optional[Tuple[int, int]] = None,
               dynamic: bool = False,
               opset: Optional[int] = None,
               fuse_conv_bn: bool = False,
               argmax: bool = False,
               simplify_check: bool = False,
               cfg_options: Optional[Dict] = None,
               verbose: bool = False,
               log=print) -> Dict:
    """``tools/deployment/export_onnx.py``: build, load, export, report.

    Returns:
        dict: The metadata written (see :func:`export_onnx`).
    """
    import time

    from mmengine.config import Config
    if not osp.isfile(config):
        raise FileNotFoundError(f'{config}: no such config file')
    # What can fail cheaply fails before the model is built.
    if shape:
        _check_shape(shape)
    _check_opset(opset)
    os.remove(_check_writable(out_file))
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    start = time.perf_counter()
    model, cfg, dataset_meta = build_deployable(cfg, checkpoint,
                                                fuse_conv_bn, argmax)
    shape = tuple(shape) if shape else default_shape(cfg)
    log(f'exporting {osp.basename(config)} with {checkpoint}: input '
        f'{"traced at " if dynamic else ""}{shape[0]}x{shape[1]}'
        f'{", dynamic batch/height/width" if dynamic else ""}'
        f'{", BN folded" if fuse_conv_bn else ""}', flush=True)
    meta = export_onnx(
        model,
        out_file,
        shape,
        dynamic,
        opset,
        metadata=dict(
            config=osp.basename(config),
            checkpoint=osp.basename(checkpoint),
            cfg_options=dict(cfg_options or {}),
            fuse_conv_bn=bool(fuse_conv_bn),
            dataset_meta=dict(
                classes=list(dataset_meta.get('classes', ())),
                palette=[list(map(int, c))
                         for c in dataset_meta.get('palette', ())])),
        simplify_check=simplify_check,
        verbose=verbose)
    size_mb = osp.getsize(out_file) / 2**20
    outputs = 'logits, labels' if argmax else 'logits'
    log(f'wrote {out_file}: {size_mb:.1f} MiB, opset {meta["opset"]}, input '
        f'image [{"N" if dynamic else 1}, 3, '
        f'{"H, W" if dynamic else f"{shape[0]}, {shape[1]}"}] raw '
        f'{meta["input"]["channel_order"]} 0..255, outputs {outputs} '
        f'({time.perf_counter() - start:.1f} s)', flush=True)
    for size, (diff, scale, agree) in meta.get('check', {}).items():
        log(f'check {size}: ONNX Runtime vs PyTorch max |diff| {diff:.3g} '
            f'(logits up to {scale:.3g}), labels equal at {agree:.4%} of '
            'pixels', flush=True)
    return meta


def _dynamo_export(model, shape, dynamic, opset, outputs):
    """``torch.onnx.export(dynamo=True)``: torch.export, then onnxscript's
    translation and optimiser. Returns the ModelProto."""
    from torch.export import Dim

    # Batch 2 when dynamic: torch.export specialises axes of size 1.
    # Dim.AUTO lets torch.export find the valid ranges itself (the network
    # needs features of at least 2x2 where it traces; the graph still runs
    # below that) in one pass; named Dims with too low a minimum make the
    # exporter trace twice. The axes are named afterwards.
    example = torch.zeros(2 if dynamic else 1, 3, *shape)
    dynamic_shapes = None
    if dynamic:
        dynamic_shapes = {'image': {0: Dim.AUTO, 2: Dim.AUTO, 3: Dim.AUTO}}
    kwargs = dict(
        input_names=[INPUT_NAME],
        output_names=outputs,
        dynamo=True,
        external_data=False,
        dynamic_shapes=dynamic_shapes,
        optimize=True)
    if opset is not None:
        kwargs['opset_version'] = opset
    program = torch.onnx.export(model, (example, ), None, **kwargs)
    proto = program.model_proto
    if dynamic:
        _name_dynamic_axes(proto)
    return proto


def _name_dynamic_axes(proto) -> None:
    """Name the input's symbolic axes batch / height / width everywhere
    (torch.export calls them s0, s1...).

    Raises:
        ValueError: An axis came out fixed: the network specialised the
            input size while being traced.
    """
    import re
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    names = {}
    for axis, name in ((0, 'batch'), (2, 'height'), (3, 'width')):
        symbol = dims[axis].dim_param
        if not symbol:
            raise ValueError(
                f'the {name} axis came out fixed ({dims[axis].dim_value}): '
                'the network specialises its input size; export without '
                '--dynamic')
        names[symbol] = name
    pattern = re.compile(r'\b(' + '|'.join(map(re.escape, names)) + r')\b')
    for info in (*proto.graph.input, *proto.graph.output,
                 *proto.graph.value_info):
        for dim in info.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_param = pattern.sub(lambda m: names[m.group(1)],
                                            dim.dim_param)


def _torchscript_export(model, path, shape, dynamic, opset, outputs):
    """torch's TorchScript exporter (opsets below 18). Returns the
    ModelProto (read back from ``path``)."""
    import onnx
    dynamic_axes = None
    if dynamic:
        axes = {0: 'batch', 2: 'height', 3: 'width'}
        dynamic_axes = {INPUT_NAME: axes, LOGITS_NAME: axes}
        if LABELS_NAME in outputs:
            dynamic_axes[LABELS_NAME] = {0: 'batch', 1: 'height', 2: 'width'}
    torch.onnx.export(
        model, (torch.zeros(1, 3, *shape), ),
        path,
        dynamo=False,
        opset_version=opset,
        input_names=[INPUT_NAME],
        output_names=outputs,
        dynamic_axes=dynamic_axes,
        do_constant_folding=True)
    return onnx.load(path)


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


def check_against_torch(model: DeployableSegmentor, onnx_file: str,
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
