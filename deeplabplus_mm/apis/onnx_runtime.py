"""Run an exported ONNX model with ONNX Runtime, as :class:`Segmenter` runs
the PyTorch one.

:class:`OnnxSegmenter` is a :class:`~deeplabplus_mm.apis.Segmenter` whose
network is an ONNX Runtime session: the config's test pipeline (loading,
resizing), the test-time padding of its ``SegDataPreProcessor`` (done here,
in raw pixel values, because the graph normalises), and mmseg's own
post-processing (padding removed, flips undone, logits resized to the
original image, argmax), also under the config's test-time augmentation. So
``tools/infer.py --onnx MODEL.onnx`` writes what ``tools/infer.py`` writes.

``onnxruntime`` is imported only when an :class:`OnnxSegmenter` is made.
"""
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.model import BaseDataPreprocessor
from mmseg.models.segmentors.base import BaseSegmentor

from .onnx_metadata import INPUT_NAME, read_metadata
from .inference import Segmenter, _default_palette, load_config

__all__ = ['OnnxSegmenter', 'OnnxRuntimeSegmentor', 'RawPadPreprocessor']


def _padding(h: int, w: int, size: Optional[Sequence[int]],
             size_divisor: Optional[int]) -> List[int]:
    """(left, right, top, bottom) as mmseg's ``stack_batch`` pads."""
    if size is not None:
        return [0, max(size[-1] - w, 0), 0, max(size[-2] - h, 0)]
    if size_divisor is not None:
        return [
            0, max(size_divisor - w % size_divisor, 0), 0,
            max(size_divisor - h % size_divisor, 0)
        ]
    return [0, 0, 0, 0]


class RawPadPreprocessor(BaseDataPreprocessor):
    """``SegDataPreProcessor``'s test path without the normalisation (the
    graph normalises): channel conversion, float, and the test-time padding
    with the raw value that normalises to the config's ``pad_val``.

    Args:
        bgr_to_rgb: Reverse the channels (the loaded images are BGR).
        raw_pad_value: Per-channel value of the padding.
        test_cfg: ``size`` and/or ``size_divisor`` to pad to (mmseg's).
    """

    def __init__(self, bgr_to_rgb: bool, raw_pad_value: Sequence[float],
                 test_cfg: Optional[Dict] = None):
        super().__init__()
        self.bgr_to_rgb = bgr_to_rgb
        self.register_buffer(
            'raw_pad_value',
            torch.tensor(raw_pad_value, dtype=torch.float32).view(-1, 1, 1),
            persistent=False)
        self.test_cfg = dict(test_cfg or {})

    def forward(self, data: dict, training: bool = False) -> dict:
        if training:
            raise ValueError('ONNX models are for inference only')
        data = self.cast_data(data)
        inputs, samples = data['inputs'], data.get('data_samples')
        padded = []
        for i, image in enumerate(inputs):
            image = image.float()
            if self.bgr_to_rgb and image.shape[0] == 3:
                image = image[[2, 1, 0]]
            if self.test_cfg:
                h, w = image.shape[-2:]
                pad = _padding(h, w, self.test_cfg.get('size'),
                               self.test_cfg.get('size_divisor'))
                canvas = self.raw_pad_value.expand(
                    image.shape[0], h + pad[2] + pad[3],
                    w + pad[0] + pad[1]).clone()
                canvas[:, :h, :w] = image
                image = canvas
                if samples is not None:
                    samples[i].set_metainfo(
                        dict(img_padding_size=pad,
                             pad_shape=tuple(image.shape[-2:])))
            padded.append(image)
        shapes = {tuple(x.shape) for x in padded}
        if len(shapes) > 1:
            raise ValueError('the images of a batch must have one size, got '
                             f'{sorted(shapes)}')
        return dict(inputs=torch.stack(padded), data_samples=samples)


class _HeadInfo(nn.Module):
    """What mmseg's post-processing and TTA merge read of a decode head."""

    def __init__(self, num_classes: int, out_channels: int,
                 align_corners: bool, threshold: float):
        super().__init__()
        self.num_classes = num_classes
        self.out_channels = out_channels
        self.align_corners = align_corners
        self.threshold = threshold


class OnnxRuntimeSegmentor(BaseSegmentor):
    """An mmseg segmentor whose network is an ONNX Runtime session.

    ``test_step`` / ``predict`` behave as ``EncoderDecoder``'s with
    whole-image inference: the session computes the logits at the padded
    input size, mmseg's ``postprocess_result`` does the rest.

    Args:
        session: An ``onnxruntime.InferenceSession`` of a file written by
            :func:`~deeplabplus_mm.apis.export.export_onnx`.
        metadata: Its ``deeplabplus_mm`` metadata.
        onnx_file: Its path (for messages).
    """

    def __init__(self, session, metadata: Dict, onnx_file: str = 'ONNX'):
        pre = metadata['input']
        super().__init__(data_preprocessor=RawPadPreprocessor(
            bgr_to_rgb=pre['channel_order'] == 'RGB',
            raw_pad_value=pre['test_pad']['raw_value'],
            test_cfg={
                k: pre['test_pad'][k]
                for k in ('size', 'size_divisor') if pre['test_pad'][k]
            }))
        self.session = session
        self.onnx_file = onnx_file
        self.input_name = metadata['input'].get('name', INPUT_NAME)
        self.input_shape = session.get_inputs()[0].shape  # ints or names
        self.out_channels = int(metadata['out_channels'])
        self.num_classes = max(self.out_channels, 2)
        self.align_corners = bool(metadata['align_corners'])
        self.decode_head = _HeadInfo(self.num_classes, self.out_channels,
                                     self.align_corners,
                                     float(metadata.get('threshold', 0.3)))

    def encode_decode(self, inputs: torch.Tensor,
                      batch_img_metas: List[dict]) -> torch.Tensor:
        """Logits at the input's size, from ONNX Runtime."""
        fixed = [d if isinstance(d, int) else None for d in self.input_shape]
        for axis, (want, got) in enumerate(zip(fixed, inputs.shape)):
            if want is not None and want != got:
                raise ValueError(
                    f'{self.onnx_file} was exported for inputs of shape '
                    f'{list(self.input_shape)}, this image gives '
                    f'{list(inputs.shape)} after the test pipeline: export '
                    'with --dynamic (or --shape '
                    f'{inputs.shape[2]} {inputs.shape[3]})')
        image = np.ascontiguousarray(inputs.cpu().numpy(), dtype=np.float32)
        logits = self.session.run(None, {self.input_name: image})[0]
        return torch.from_numpy(logits)

    def predict(self, inputs: torch.Tensor, data_samples=None):
        if data_samples is not None:
            metas = [s.metainfo for s in data_samples]
        else:
            metas = [dict(ori_shape=inputs.shape[2:], img_shape=inputs.shape[2:],
                          pad_shape=inputs.shape[2:],
                          padding_size=[0, 0, 0, 0])] * inputs.shape[0]
        return self.postprocess_result(self.encode_decode(inputs, metas),
                                       data_samples)

    def _forward(self, inputs, data_samples=None):
        return self.encode_decode(inputs, [])

    def extract_feat(self, inputs):
        raise NotImplementedError('an ONNX model exposes no features')

    def loss(self, inputs, data_samples):
        raise NotImplementedError('ONNX models are for inference only')


class OnnxSegmenter(Segmenter):
    """:class:`Segmenter` with the network run by ONNX Runtime.

    Args:
        config: The config the model was exported from (its test pipeline
            and TTA settings are used).
        onnx_file: A file written by ``tools/deployment/export_onnx.py``.
        tta: Use the config's ``tta_pipeline`` and ``tta_model`` (needs a
            ``--dynamic`` export: the views have several sizes).
        threads: ONNX Runtime's intra-op threads (default: its own choice,
            one per physical core).
        providers: ONNX Runtime execution providers (default: CPU).

    Raises:
        ImportError: ``onnxruntime`` is not installed.
        ValueError: The file was not exported by our tool, or its
            normalisation or classes disagree with the config.
    """

    def __init__(self, config: Union[str, Config], onnx_file: str,
                 tta: bool = False, threads: Optional[int] = None,
                 providers: Optional[Sequence[str]] = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError('--onnx needs onnxruntime: pip install -r '
                              'requirements/onnx.txt') from None
        cfg = load_config(config)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        try:
            session = ort.InferenceSession(
                onnx_file, options,
                providers=list(providers or ['CPUExecutionProvider']))
        except Exception as e:
            raise ValueError(f'{onnx_file}: ONNX Runtime cannot load it '
                             f'({str(e).strip().splitlines()[0]})') from None
        metadata = read_metadata(onnx_file, session)
        _check_against_config(onnx_file, metadata, cfg)
        model = OnnxRuntimeSegmentor(session, metadata, onnx_file).eval()
        dataset_meta = dict(metadata.get('dataset_meta') or {})
        if not dataset_meta.get('palette'):
            dataset_meta['palette'] = _default_palette(model.num_classes)
        self.metadata = metadata
        self._setup(cfg, model, dataset_meta, tta)


def _check_against_config(onnx_file: str, metadata: Dict, cfg: Config):
    """The graph normalises with the exported mean/std and predicts the
    exported classes: the config must agree."""
    pre = cfg.model.get('data_preprocessor') or {}
    mean = pre.get('mean')
    std = pre.get('std')
    exported = metadata['input']
    if mean is not None and std is not None:
        ours = np.asarray([mean, std], np.float64)
        theirs = np.asarray([exported['mean'], exported['std']], np.float64)
        conversion = bool(pre.get('bgr_to_rgb') or pre.get('rgb_to_bgr'))
        if (ours.shape != theirs.shape
                or not np.allclose(ours, theirs, rtol=0, atol=1e-4)
                or (exported['channel_order'] == 'RGB') != conversion):
            raise ValueError(
                f'{onnx_file} normalises with mean {exported["mean"]} std '
                f'{exported["std"]} ({exported["channel_order"]}); the config '
                f'says mean {list(mean)} std {list(std)}: export it from '
                'this config')
    num_classes = cfg.model.get('decode_head', {}).get('num_classes')
    out_channels = cfg.model.get('decode_head', {}).get(
        'out_channels', num_classes)
    if out_channels is not None and out_channels != metadata['out_channels']:
        raise ValueError(f'{onnx_file} predicts {metadata["out_channels"]} '
                         f'classes, the config {out_channels}')
