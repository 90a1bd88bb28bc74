"""TF DeepLab's train-time scaling and padding, as its input pipeline does it."""
from typing import Optional, Sequence, Tuple, Union

import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness
from mmseg.registry import TRANSFORMS

from ...models.segmentors.tf_multiscale_tta import tf_resize_to_range

_F32 = np.float32


def _source_coordinates(in_size: int, out_size: int) -> np.ndarray:
    """TF's source coordinates with ``align_corners=True``: ``float32(i) *
    scale`` with the float32 ``scale = (in - 1) / float(out - 1)``
    (``CalculateResizeScale``, ``LegacyScaler``)."""
    scale = (_F32(in_size - 1) / _F32(out_size - 1) if out_size > 1 else
             _F32(in_size) / _F32(out_size))
    return np.arange(out_size, dtype=_F32) * scale


def _bilinear_weights(in_size: int, out_size: int):
    """Lower and upper source index and float32 weight of each output index
    (``compute_interpolation_weights`` of TF's ``ResizeBilinear``)."""
    src = _source_coordinates(in_size, out_size)
    floor = np.floor(src)
    lower = np.maximum(floor.astype(np.int64), 0)
    upper = np.minimum(np.ceil(src).astype(np.int64), in_size - 1)
    return lower, upper, src - floor


def resize_bilinear_align_corners(img: np.ndarray, height: int,
                                  width: int) -> np.ndarray:
    """``tf.image.resize_bilinear(align_corners=True)`` of an HxW(xC) image:
    float32, not rounded, with TF's float32 operations in TF's order (``top =
    tl + (tr - tl) * x_lerp``, ``bottom`` alike, ``top + (bottom - top) *
    y_lerp``), so bit for bit TF's result where TF does not fuse a
    multiply-add; each input row is interpolated along x once."""
    h, w = img.shape[:2]
    y0, y1, wy = _bilinear_weights(h, height)
    x0, x1, wx = _bilinear_weights(w, width)
    flat = img.reshape(h, w, -1)
    left = np.take(flat, x0, axis=1).astype(_F32, copy=False)
    rows = np.take(flat, x1, axis=1).astype(_F32, copy=False)
    rows -= left
    rows *= wx[:, None]
    rows += left
    rows = rows.reshape(h, -1)
    top = np.take(rows, y0, axis=0)
    out = np.take(rows, y1, axis=0)
    out -= top
    out *= wy[:, None]
    out += top
    return out.reshape((height, width) + img.shape[2:])


def nearest_indices(in_size: int, out_size: int) -> np.ndarray:
    """Source index of each output index for TF's ``ResizeNearestNeighbor``
    with ``align_corners=True``: ``min(roundf(float32(i) * scale), in - 1)``,
    ``roundf`` rounding halves away from zero (exactly: the float32 product
    plus 0.5 is summed in float64)."""
    src = _source_coordinates(in_size, out_size).astype(np.float64)
    return np.minimum(np.floor(src + 0.5).astype(np.int64), in_size - 1)


def resize_nearest_align_corners(seg: np.ndarray, height: int,
                                 width: int) -> np.ndarray:
    """``tf.image.resize_nearest_neighbor(align_corners=True)``: only values
    of the input, dtype kept."""
    rows = nearest_indices(seg.shape[0], height)
    cols = nearest_indices(seg.shape[1], width)
    return np.take(np.take(seg, rows, axis=0), cols, axis=1)


def tf_scaled_size(height: int, width: int, scale: float) -> Tuple[int, int]:
    """``int32(float32([h, w]) * float32(scale))``: truncated, as TF's
    ``randomly_scale_image_and_label`` computes the new size."""
    return (int(_F32(height) * _F32(scale)), int(_F32(width) * _F32(scale)))


@TRANSFORMS.register_module()
class TFRandomScale(BaseTransform):
    """TF DeepLab's training-time resizing and padding
    (``input_preprocess.preprocess_image_and_label`` up to its random crop).

    1. Optionally ``resize_to_range`` (TF's ``min/max_resize_value`` and
       ``resize_factor``; the ADE20K recipe): the size of
       :func:`~deeplabplus_mm.models.segmentors.tf_multiscale_tta.
       tf_resize_to_range`, image bilinear and labels nearest neighbour,
       both with ``align_corners``.
    2. A random scale (``get_random_scale``): one of ``min_scale,
       min_scale + step, ..., max_scale`` with equal probability (``step=0``:
       uniform in ``[min_scale, max_scale)``; ``min_scale == max_scale``:
       always that scale). The new size is ``int(float32(h) * s)``
       (truncated, 48x60 for 97x121 at 0.5, where mmcv's ``Resize`` rounds
       to 49x61); the image is resized bilinearly with ``align_corners``
       (corner pixels keep their values) to a float32 image that is not
       rounded, the label maps (``seg_fields``) nearest neighbour with
       ``align_corners`` (only values of the input, 255 kept). At scale 1
       nothing is resized (TF's resize would be the identity there).
    3. With ``pad_to_size=(h, w)`` (the crop size), padding bottom/right up
       to at least that size (``pad_to_bounding_box``): the image with
       ``pad_val`` (TF's mean pixel, 127.5 for Xception and MobileNetV2: 0
       after the configs' normalisation), the label maps with
       ``seg_pad_val``.

    Follow it by ``RandomCrop(crop_size)`` (uniform offsets, as TF's
    ``random_crop``) and ``RandomFlip(prob=0.5)``: padding first, then the
    crop and the flip, as TF does, so a flipped crop has its padding on the
    left. (Padding only in the data preprocessor would always put it
    bottom/right, after the flip.) The image stays float32 through
    ``PackSegInputs`` to ``SegDataPreProcessor``.

    Required Keys: img, gt_seg_map and other ``seg_fields`` (optional)

    Modified Keys: img (float32), img_shape, gt_seg_map, seg_fields' maps

    Added Keys: scale_factor (w, h: relative to the loaded image), keep_ratio
    (True), tf_scale (the drawn scale), pad_shape (with ``pad_to_size``)

    Args:
        min_scale: TF's ``min_scale_factor``.
        max_scale: TF's ``max_scale_factor``.
        step: TF's ``scale_factor_step_size`` (0: continuous).
        pad_to_size: ``(h, w)`` to pad up to (the crop size), or None.
        pad_val: Image padding value, a number or one per channel in the
            image's channel order (BGR when loaded by ``LoadImageFromFile``).
        seg_pad_val: Label padding value (the ignore index).
        resize_to_range: ``dict(min_size=, max_size=, factor=)``, TF's
            ``min_resize_value``, ``max_resize_value``, ``resize_factor``,
            applied first; None: no such resize.
    """

    def __init__(self,
                 min_scale: float = 0.5,
                 max_scale: float = 2.0,
                 step: float = 0.25,
                 pad_to_size: Optional[Sequence[int]] = None,
                 pad_val: Union[float, Sequence[float]] = 127.5,
                 seg_pad_val: int = 255,
                 resize_to_range: Optional[dict] = None) -> None:
        if not 0 < min_scale <= max_scale:
            raise ValueError('TFRandomScale: need 0 < min_scale <= max_scale, '
                             f'got {min_scale}, {max_scale}')
        if step < 0:
            raise ValueError(f'TFRandomScale: step must be >= 0, got {step}')
        if pad_to_size is not None and (len(pad_to_size) != 2 or
                                        min(pad_to_size) < 1):
            raise ValueError('TFRandomScale: pad_to_size must be (h, w), '
                             f'got {pad_to_size}')
        if resize_to_range is not None and (
                set(resize_to_range) - {'min_size', 'max_size', 'factor'}
                or 'min_size' not in resize_to_range):
            raise ValueError('TFRandomScale: resize_to_range takes min_size '
                             f'and optionally max_size, factor; got '
                             f'{resize_to_range}')
        self.min_scale, self.max_scale, self.step = min_scale, max_scale, step
        if min_scale == max_scale:
            self.scales = [float(_F32(min_scale))]
        elif step > 0:
            # get_random_scale: tf.lin_space(min, max, int((max-min)/step+1))
            num = int((max_scale - min_scale) / step + 1)
            self.scales = [float(s) for s in np.linspace(
                min_scale, max_scale, num).astype(_F32)]
        else:
            self.scales = None
        self.pad_to_size = (None if pad_to_size is None else
                            (int(pad_to_size[0]), int(pad_to_size[1])))
        self.pad_val = pad_val
        self.seg_pad_val = seg_pad_val
        self.resize_to_range = resize_to_range

    @cache_randomness
    def _random_scale(self) -> float:
        if self.scales is None:
            return float(_F32(np.random.uniform(self.min_scale,
                                                self.max_scale)))
        if len(self.scales) == 1:
            return self.scales[0]
        return self.scales[np.random.randint(len(self.scales))]

    def _resize(self, results: dict, height: int, width: int) -> None:
        results['img'] = resize_bilinear_align_corners(
            results['img'], height, width)
        for key in results.get('seg_fields', []):
            if results.get(key) is not None:
                results[key] = resize_nearest_align_corners(
                    results[key], height, width)

    def _pad(self, results: dict) -> None:
        img = results['img']
        h, w = img.shape[:2]
        th, tw = max(h, self.pad_to_size[0]), max(w, self.pad_to_size[1])
        if (th, tw) != (h, w):
            padded = np.empty((th, tw) + img.shape[2:], _F32)
            padded[...] = np.asarray(self.pad_val, _F32)
            padded[:h, :w] = img
            results['img'] = padded
            for key in results.get('seg_fields', []):
                seg = results.get(key)
                if seg is not None:
                    out = np.full((th, tw) + seg.shape[2:], self.seg_pad_val,
                                  seg.dtype)
                    out[:h, :w] = seg
                    results[key] = out
        results['pad_shape'] = results['img'].shape

    def transform(self, results: dict) -> dict:
        ori_h, ori_w = results['img'].shape[:2]
        if self.resize_to_range is not None:
            self._resize(results, *tf_resize_to_range(
                ori_h, ori_w, **self.resize_to_range))
        scale = self._random_scale()
        if scale != 1.0:
            self._resize(results, *tf_scaled_size(
                *results['img'].shape[:2], scale))
        # TF casts to float32 first; resized images are float32 already.
        results['img'] = results['img'].astype(_F32, copy=False)
        h, w = results['img'].shape[:2]
        results['tf_scale'] = scale
        results['scale_factor'] = (w / ori_w, h / ori_h)
        results['keep_ratio'] = True
        if self.pad_to_size is not None:
            self._pad(results)
        results['img_shape'] = results['img'].shape[:2]
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(min_scale={self.min_scale}, '
                f'max_scale={self.max_scale}, step={self.step}, '
                f'pad_to_size={self.pad_to_size}, pad_val={self.pad_val}, '
                f'seg_pad_val={self.seg_pad_val}, '
                f'resize_to_range={self.resize_to_range})')
