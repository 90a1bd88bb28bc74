"""TensorFlow DeepLab's multi-scale + flip evaluation as an mmseg TTA model."""
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from torch import Tensor

from ...archs.layers import scale_dimension
from .seg_tta import AccumulatingSegTTAModel, _without_maps

_STRIDES = (1, 2, 4, 8, 16, 32, 64)


def tf_resize_to_range(height: int,
                       width: int,
                       min_size: float,
                       max_size: Optional[float] = None,
                       factor: Optional[int] = None) -> Tuple[int, int]:
    """The output size of TF DeepLab's ``preprocess_utils.resize_to_range``.

    Computed in float32 as TF computes it: the image is scaled so that its
    shorter side is ``min_size`` unless the longer one would then exceed
    ``max_size`` (then the longer side becomes ``max_size``), and both sides
    are rounded up to a multiple of ``factor`` plus one. With a ``factor``,
    TF first lowers ``max_size`` by ``factor`` (``513`` -> ``497`` for
    ``factor=16``), so that the rounding up cannot pass ``max_size``: TF's
    ADE20K evaluation (``--min_resize_value=513 --max_resize_value=513
    --resize_factor=16``) gives a longer side of 497 (513 where float32
    rounding lifts it over 497) and a shorter side of 16k+1.

    Args:
        height: Image height.
        width: Image width.
        min_size: TF's ``min_resize_value``.
        max_size: TF's ``max_resize_value`` (None: no limit).
        factor: TF's ``resize_factor`` (None: no rounding).

    Returns:
        tuple[int, int]: The new (height, width).
    """
    f32 = np.float32
    min_size = f32(min_size)
    if max_size is not None:
        max_size = f32(max_size)
        if factor is not None:
            max_size = (max_size + (factor - (max_size - 1) % factor) % factor
                        - factor)
    orig_h, orig_w = f32(height), f32(width)
    large_scale = min_size / min(orig_h, orig_w)
    new = [int(np.ceil(orig_h * large_scale)),
           int(np.ceil(orig_w * large_scale))]
    if max_size is not None:
        small_scale = max_size / max(orig_h, orig_w)
        small = [int(np.ceil(orig_h * small_scale)),
                 int(np.ceil(orig_w * small_scale))]
        if f32(max(new)) > max_size:
            new = small
    if factor is not None:
        new = [n + (factor - (n - 1) % factor) % factor for n in new]
    return new[0], new[1]


def _resize(x: Tensor, size: Sequence[int]) -> Tensor:
    """``tf.image.resize_bilinear(align_corners=True)`` of an NCHW tensor."""
    size = tuple(int(s) for s in size)
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode='bilinear', align_corners=True)


@MODELS.register_module()
class TFMultiScaleSegTTAModel(AccumulatingSegTTAModel):
    """TF DeepLab's multi-scale + flip evaluation
    (``model.predict_labels_multi_scale`` as the model zoo's ``eval.py``
    runs it), in mmseg's TTA mechanism.

    Per image, as TensorFlow computes it:

    1. (``resize_to_range`` only, TF's ``min/max_resize_value`` and
       ``resize_factor``: ADE20K) resize the image as
       :func:`tf_resize_to_range` says, bilinear with ``align_corners``,
       in float32.
    2. Pad bottom/right to the evaluation crop: the model's
       ``data_preprocessor`` does it (normalise, then pad with ``pad_val``
       up to ``test_cfg.size``; 0 after normalisation is TF's mean-pixel
       127.5 padding). The padded size is TF's ``eval_crop_size``.
    3. For each scale ``s`` in order, the padded image and (``flip``) its
       left-right mirror (the whole padded image: the padding is then on
       the left): resize to ``scale_dimension(crop, s)`` (bilinear,
       ``align_corners``; none for ``s == 1``) and run the network at that
       size, so the image pooling and the decoder see the view's own size.
    4. Resize the logits to ``scale_dimension(crop, max(1, s) /
       logits_output_stride)``, mirror the flipped view's back at that
       resolution, resize to the crop (two successive ``align_corners``
       resizes, as TF does), softmax (sigmoid for one output channel).
    5. Mean over the views (one running sum per image), argmax, crop away
       the padding; predictions for images resized in step 1 or by the
       pipeline are brought to ``ori_shape`` (the mean probabilities are
       resized bilinearly with ``align_corners``, then the argmax taken).

    The ``tta_pipeline`` gives one view per image (no resize, no flip):
    the views are made here, from the padded image. The merged sample
    keeps what :class:`AccumulatingSegTTAModel`'s does: the meta
    information, the ground truth, the mean probabilities (``seg_logits``,
    at ``ori_shape``) and the prediction.

    Images larger than the crop: TF's evaluation fails on them (its
    ``set_shape`` to the crop); here the preprocessor leaves such a side
    unpadded, so the crop becomes ``max(crop, image)`` per side for that
    image, which is TF's protocol with ``eval_crop_size`` raised to cover
    it, and a warning says so once.

    Args:
        module: The segmentor (an ``EncoderDecoder``: ``_forward`` gives
            the decode head's logits).
        scales: TF's ``eval_scales`` (the zoo: ``[0.5, 0.75, 1.0, 1.25,
            1.5, 1.75]`` for VOC / ADE20K, ``[0.75, 1.0, 1.25]`` for
            Cityscapes).
        flip: TF's ``add_flipped_images``.
        resize_to_range: ``dict(min_size=, max_size=, factor=)``, TF's
            ``min_resize_value``, ``max_resize_value``, ``resize_factor``
            (ADE20K: 513, 513, 16); None: no resize.
        logits_output_stride: The decode head's output stride (TF's
            ``decoder_output_stride``, or ``output_stride`` without a
            decoder); None: read from each view's input and logits sizes.
        probs_dir: Also write each image's mean probabilities to
            ``<probs_dir>/<image stem>.npy`` (float32, C x H x W at
            ``ori_shape``); None: do not.
        data_preprocessor: Used only for a module without its own
            preprocessor (see :class:`AccumulatingSegTTAModel`); the
            module's preprocessor normalises and pads.
    """

    def __init__(self,
                 module,
                 scales: Sequence[float] = (1.0, ),
                 flip: bool = False,
                 resize_to_range: Optional[dict] = None,
                 logits_output_stride: Optional[int] = None,
                 probs_dir: Optional[str] = None,
                 data_preprocessor=None):
        super().__init__(module=module, data_preprocessor=data_preprocessor)
        scales = [float(s) for s in scales]
        if not scales or any(s <= 0 for s in scales):
            raise ValueError(f'TFMultiScaleSegTTAModel: scales must be a '
                             f'non-empty list of positive numbers, got '
                             f'{scales}')
        if resize_to_range is not None:
            unknown = set(resize_to_range) - {'min_size', 'max_size',
                                              'factor'}
            if unknown or 'min_size' not in resize_to_range:
                raise ValueError(
                    'TFMultiScaleSegTTAModel: resize_to_range takes '
                    'min_size (required), max_size and factor, got '
                    f'{dict(resize_to_range)}')
            resize_to_range = dict(resize_to_range)
        if logits_output_stride is not None and logits_output_stride < 1:
            raise ValueError('TFMultiScaleSegTTAModel: logits_output_stride '
                             f'must be >= 1, got {logits_output_stride}')
        self.scales = scales
        self.flip = bool(flip)
        self.resize_to_range = resize_to_range
        self.logits_output_stride = logits_output_stride
        self.probs_dir = probs_dir
        self._warned_oversize = False

    @property
    def num_views(self) -> int:
        return len(self.scales) * (2 if self.flip else 1)

    @torch.no_grad()
    def test_step(self, data) -> List[SegDataSample]:
        inputs, samples = _one_view(data)
        padded = [self._pad(img, sample)
                  for img, sample in zip(inputs, samples)]
        samples = [sample for _, sample, _ in padded]
        # Images padded to the same size (all of them, normally) run as
        # one batch per view.
        groups: Dict[tuple, List[int]] = {}
        for idx, (x, _, _) in enumerate(padded):
            groups.setdefault(tuple(x.shape[-2:]), []).append(idx)
        results: List[Optional[SegDataSample]] = [None] * len(samples)
        for idxs in groups.values():
            batch = torch.cat([padded[i][0] for i in idxs])
            mean = self.mean_probabilities(batch)
            del batch
            for row, i in enumerate(idxs):
                results[i] = self._finish(samples[i], mean[row],
                                          padded[i][2])
            del mean
        return results

    def merge_preds(self, data_samples_list):
        raise NotImplementedError(
            'TFMultiScaleSegTTAModel makes its views itself from the padded '
            'image (test_step); it cannot merge views predicted elsewhere. '
            "Use AccumulatingSegTTAModel for mmseg's protocol.")

    def mean_probabilities(self, inputs: Tensor) -> Tensor:
        """The mean over the views of the per-view probabilities, over the
        whole padded images.

        Args:
            inputs: Normalised images padded to the crop, N x 3 x H x W.

        Returns:
            Tensor: N x C x H x W, TF's ``tf.reduce_mean`` of the stacked
            softmaxes in ``predict_labels_multi_scale``.
        """
        crop = tuple(inputs.shape[-2:])
        total = None
        for scale in self.scales:
            size = [scale_dimension(c, scale) for c in crop]
            for flipped in ((False, True) if self.flip else (False, )):
                view = inputs.flip(-1) if flipped else inputs
                if scale != 1.0:
                    view = F.interpolate(view, size=size, mode='bilinear',
                                         align_corners=True)
                logits = self.module._forward(view)
                target = self._logits_size(crop, scale, view.shape[-2:],
                                           logits.shape[-2:])
                del view
                logits = _resize(logits, target)
                if flipped:
                    logits = logits.flip(-1)
                probs = self._batch_probabilities(_resize(logits, crop))
                del logits
                if total is None:
                    total = probs
                else:
                    total += probs
                del probs  # this view's maps go before the next one
        return total.div_(self.num_views)

    def _batch_probabilities(self, logits: Tensor) -> Tensor:
        if self.module.out_channels > 1:
            return logits.softmax(dim=1)
        return logits.sigmoid()

    def _logits_size(self, crop, scale, view_size, logits_size):
        """TF's ``multi_scale_logits`` target: ``scale_dimension(crop,
        max(1, s) / logits_output_stride)`` per side."""
        stride = self.logits_output_stride
        if stride is None:
            stride = _logits_stride(crop, scale, view_size, logits_size)
        return tuple(scale_dimension(c, max(1.0, scale) / stride)
                     for c in crop)

    def _pad(self, img: Tensor, sample: SegDataSample):
        """The image normalised and padded to the crop by the module's
        preprocessor (after TF's ``resize_to_range`` when set): 1 x 3 x H x
        W, the sample as the preprocessor returns it (on the device, with
        the padding in its meta information) and the size the image
        occupies in the padded one."""
        preprocessor = self.module.data_preprocessor
        if self.resize_to_range is not None:
            size = tf_resize_to_range(*img.shape[-2:], **self.resize_to_range)
            img = preprocessor.cast_data(img).float()
            img = F.interpolate(img[None], size=size, mode='bilinear',
                                align_corners=True)[0]
        region = tuple(img.shape[-2:])
        data = preprocessor(dict(inputs=[img], data_samples=[sample]), False)
        test_cfg = getattr(preprocessor, 'test_cfg', None) or {}
        crop = test_cfg.get('size')
        if crop is not None and not self._warned_oversize and (
                region[0] > crop[0] or region[1] > crop[1]):
            self._warned_oversize = True
            print_log(
                f'TFMultiScaleSegTTAModel: {sample.metainfo.get("img_path")}'
                f' is {region[0]}x{region[1]}, larger than the evaluation '
                f'crop {crop[0]}x{crop[1]} (data_preprocessor.test_cfg.size)'
                ': TF would fail; such images are evaluated with the crop '
                'enlarged to cover them (said once)',
                logger='current', level=30)
        return data['inputs'], data['data_samples'][0], region

    def _finish(self, sample: SegDataSample, mean: Tensor,
                region: Tuple[int, int]) -> SegDataSample:
        mean = mean[:, :region[0], :region[1]]
        ori_shape = tuple(sample.metainfo.get('ori_shape', region))
        if ori_shape != region:
            mean = _resize(mean[None], ori_shape)[0]
        mean = mean.contiguous()
        if self.probs_dir is not None:
            self._save_probabilities(sample, mean)
        return self._merged(_without_maps(sample), mean)

    def _save_probabilities(self, sample: SegDataSample,
                            mean: Tensor) -> None:
        img_path = sample.metainfo.get('img_path')
        if not img_path:
            raise ValueError('TFMultiScaleSegTTAModel: probs_dir needs the '
                             'samples\' img_path to name the files')
        os.makedirs(self.probs_dir, exist_ok=True)
        stem = osp.splitext(osp.basename(img_path))[0]
        path = osp.join(self.probs_dir, stem + '.npy')
        tmp = path + '.tmp'
        with open(tmp, 'wb') as f:
            np.save(f, mean.float().cpu().numpy())
        os.replace(tmp, path)


def _logits_stride(crop, scale, view_size, logits_size) -> int:
    """The output stride ``p`` for which TF's ``scale_dimension(n, 1/p)``
    gives the network's logits size for this view; an error where none or
    several strides with different targets fit."""
    fits = [
        p for p in _STRIDES
        if all(scale_dimension(n, 1.0 / p) == m
               for n, m in zip(view_size, logits_size))
    ]
    targets = {
        tuple(scale_dimension(c, max(1.0, scale) / p) for c in crop)
        for p in fits
    }
    if len(targets) != 1:
        raise ValueError(
            'TFMultiScaleSegTTAModel: cannot tell the logits output stride '
            f'from a {tuple(view_size)} input giving {tuple(logits_size)} '
            'logits (TF: int((n - 1) / stride + 1)); set '
            'logits_output_stride')
    return fits[0]


def _one_view(data) -> Tuple[list, list]:
    """The images and samples of a TTA batch of one view per image (or of
    a plain test batch)."""
    if not isinstance(data, dict) or 'inputs' not in data:
        raise TypeError('TFMultiScaleSegTTAModel: the batch must be a dict '
                        f'with inputs and data_samples, got '
                        f'{type(data).__name__}')
    inputs, samples = data['inputs'], data.get('data_samples')
    if len(inputs) and isinstance(inputs[0], (list, tuple)):
        if len(inputs) != 1:
            raise ValueError(
                f'TFMultiScaleSegTTAModel: the tta_pipeline gives '
                f'{len(inputs)} views per image; this model makes the '
                'scaled and flipped views itself from the padded image, so '
                'the pipeline must give one (see tta_pipeline in '
                "configs/_base_/datasets/pascal_voc12.py), or use mmseg's "
                'protocol with AccumulatingSegTTAModel')
        inputs, samples = inputs[0], samples[0] if samples else None
    if not len(inputs):
        raise ValueError('TFMultiScaleSegTTAModel: the batch holds no images')
    if samples is None or len(samples) != len(inputs):
        raise ValueError('TFMultiScaleSegTTAModel: every image needs its '
                         'data sample (meta information)')
    return list(inputs), list(samples)
