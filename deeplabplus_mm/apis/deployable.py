"""The graph that is exported to ONNX: the config's normalisation, the
network and the final resize to the input size, as one module
(:class:`DeployableSegmentor`), and how a config suggests its export size.
What the graph takes and returns: :mod:`deeplabplus_mm.apis.export`.
"""
from typing import Dict, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


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



def default_shape(cfg) -> Tuple[int, int]:
    """The export size a config suggests: its test padding size, else its
    crop size, else 513x513."""
    pre = cfg.model.get('data_preprocessor') or {}
    for size in ((pre.get('test_cfg') or {}).get('size'), pre.get('size')):
        if size:
            return int(size[0]), int(size[1])
    return 513, 513

