"""TF DeepLab's train-time scaling, padding and cropping, as its input
pipeline does them."""
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


def resize_bilinear_align_corners(img: np.ndarray,
                                  height: int,
                                  width: int,
                                  rows: Tuple[int, int] = None,
                                  cols: Tuple[int, int] = None) -> np.ndarray:
    """``tf.image.resize_bilinear(align_corners=True)`` of an HxW(xC) image
    to ``height`` x ``width``, or only its output rows ``rows = (start,
    stop)`` and columns ``cols`` (the same values: each output pixel depends
    on its own coordinates only). Float32, not rounded, with TF's float32
    operations in TF's order (``top = tl + (tr - tl) * x_lerp``, ``bottom``
    alike, ``top + (bottom - top) * y_lerp``), so bit for bit TF's result
    where TF does not fuse a multiply-add; each input row that is needed is
    interpolated along x once."""
    h, w = img.shape[:2]
    y0, y1, wy = (a[slice(*(rows or (0, height)))]
                  for a in _bilinear_weights(h, height))
    x0, x1, wx = (a[slice(*(cols or (0, width)))]
                  for a in _bilinear_weights(w, width))
    first = int(y0[0])  # both index arrays are non-decreasing
    c = int(np.prod(img.shape[2:]))
    # rows of w * c values: gather whole pixels by flat column index
    flat = img[first:int(y1[-1]) + 1].reshape(-1, w * c)
    channel = np.arange(c)
    left = np.take(flat, (x0[:, None] * c + channel).ravel(),
                   axis=1).astype(_F32, copy=False)
    xs = np.take(flat, (x1[:, None] * c + channel).ravel(),
                 axis=1).astype(_F32, copy=False)
    xs -= left
    xs *= np.repeat(wx, c)
    xs += left
    top = np.take(xs, y0 - first, axis=0)
    out = np.take(xs, y1 - first, axis=0)
    out -= top
    out *= wy[:, None]
    out += top
    return out.reshape((len(y0), len(x0)) + img.shape[2:])


def nearest_indices(in_size: int, out_size: int) -> np.ndarray:
    """Source index of each output index for TF's ``ResizeNearestNeighbor``
    with ``align_corners=True``: ``min(roundf(float32(i) * scale), in - 1)``,
    ``roundf`` rounding halves away from zero (exactly: the float32 product
    plus 0.5 is summed in float64)."""
    src = _source_coordinates(in_size, out_size).astype(np.float64)
    return np.minimum(np.floor(src + 0.5).astype(np.int64), in_size - 1)


def resize_nearest_align_corners(seg: np.ndarray,
                                 height: int,
                                 width: int,
                                 rows: Tuple[int, int] = None,
                                 cols: Tuple[int, int] = None) -> np.ndarray:
    """``tf.image.resize_nearest_neighbor(align_corners=True)`` (or its
    output ``rows`` and ``cols`` only, as above): only values of the input,
    dtype kept."""
    ys = nearest_indices(seg.shape[0], height)[slice(*(rows or (0, height)))]
    xs = nearest_indices(seg.shape[1], width)[slice(*(cols or (0, width)))]
    return np.take(np.take(seg, ys, axis=0), xs, axis=1)


def tf_scaled_size(height: int, width: int, scale: float) -> Tuple[int, int]:
    """``int32(float32([h, w]) * float32(scale))``: truncated, as TF's
    ``randomly_scale_image_and_label`` computes the new size."""
    return (int(_F32(height) * _F32(scale)), int(_F32(width) * _F32(scale)))


@TRANSFORMS.register_module()
class TFRandomScale(BaseTransform):
    """TF DeepLab's training-time resizing, padding and random crop
    (``input_preprocess.preprocess_image_and_label`` up to its flip).

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
    3. With ``crop_size=(h, w)``: padding bottom/right up to at least that
       size (``pad_to_bounding_box``: the image with ``pad_val``, TF's mean
       pixel, 127.5 for Xception and MobileNetV2 = 0 after the configs'
       normalisation; the label maps with ``seg_pad_val``), then a random
       crop of that size (``random_crop``: offsets uniform over the padded
       image). Only the crop's pixels are resized (the same values as
       resizing everything: each output pixel depends only on its own
       coordinates), so scale 2 costs no more than scale 1.

    Follow it by ``RandomFlip(prob=0.5)``: TF flips after padding and
    cropping, so a flipped crop has its padding on the left (padding only in
    the data preprocessor would always put it bottom/right). The image stays
    float32 through ``PackSegInputs`` to ``SegDataPreProcessor``.

    Required Keys: img, gt_seg_map and other ``seg_fields`` (optional)

    Modified Keys: img (float32), img_shape, gt_seg_map, seg_fields' maps

    Added Keys: scale_factor (w, h of the scaled image relative to the
    loaded one), keep_ratio (True), tf_scale (the drawn scale), and with
    ``crop_size``: pad_shape, tf_crop_offset ((y, x) in the padded image)

    Args:
        min_scale: TF's ``min_scale_factor``.
        max_scale: TF's ``max_scale_factor``.
        step: TF's ``scale_factor_step_size`` (0: continuous).
        crop_size: ``(h, w)``: TF's ``crop_size``; None: no padding, no crop.
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
                 crop_size: Optional[Sequence[int]] = None,
                 pad_val: Union[float, Sequence[float]] = 127.5,
                 seg_pad_val: int = 255,
                 resize_to_range: Optional[dict] = None) -> None:
        if not 0 < min_scale <= max_scale:
            raise ValueError('TFRandomScale: need 0 < min_scale <= max_scale, '
                             f'got {min_scale}, {max_scale}')
        if step < 0:
            raise ValueError(f'TFRandomScale: step must be >= 0, got {step}')
        if crop_size is not None and (len(crop_size) != 2
                                      or min(crop_size) < 1):
            raise ValueError('TFRandomScale: crop_size must be (h, w), '
                             f'got {crop_size}')
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
        self.crop_size = (None if crop_size is None else
                          (int(crop_size[0]), int(crop_size[1])))
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

    @cache_randomness
    def _random_offset(self, height: int, width: int) -> Tuple[int, int]:
        """Uniform offsets of the crop in the padded image."""
        return (np.random.randint(max(height, self.crop_size[0]) -
                                  self.crop_size[0] + 1),
                np.random.randint(max(width, self.crop_size[1]) -
                                  self.crop_size[1] + 1))

    def _seg_maps(self, results: dict):
        return [k for k in results.get('seg_fields', [])
                if results.get(k) is not None]

    def _resize(self, results: dict, height: int, width: int,
                rows=None, cols=None) -> None:
        results['img'] = resize_bilinear_align_corners(
            results['img'], height, width, rows, cols)
        for key in self._seg_maps(results):
            results[key] = resize_nearest_align_corners(
                results[key], height, width, rows, cols)

    def _pad(self, results: dict) -> None:
        """Bottom/right up to ``crop_size`` (a crop's part of the image)."""
        img = results['img']
        h, w = img.shape[:2]
        ch, cw = self.crop_size
        if (h, w) != (ch, cw):
            padded = np.empty((ch, cw) + img.shape[2:], _F32)
            padded[...] = np.asarray(self.pad_val, _F32)
            padded[:h, :w] = img
            results['img'] = padded
            for key in self._seg_maps(results):
                seg = results[key]
                out = np.full((ch, cw) + seg.shape[2:], self.seg_pad_val,
                              seg.dtype)
                out[:h, :w] = seg
                results[key] = out

    def transform(self, results: dict) -> dict:
        ori_h, ori_w = results['img'].shape[:2]
        if self.resize_to_range is not None:
            self._resize(results, *tf_resize_to_range(
                ori_h, ori_w, **self.resize_to_range))
        h, w = results['img'].shape[:2]
        scale = self._random_scale()
        if scale != 1.0:
            h, w = tf_scaled_size(h, w, scale)
            if min(h, w) < 1:
                raise ValueError(
                    f'{results.get("img_path", "image")}: '
                    f'{results["img"].shape[0]}x{results["img"].shape[1]} '
                    f'scaled by {scale} leaves no pixels (TFRandomScale)')
        results['tf_scale'] = scale
        results['scale_factor'] = (w / ori_w, h / ori_h)
        results['keep_ratio'] = True
        window = None
        if self.crop_size is not None:
            oy, ox = self._random_offset(h, w)
            results['tf_crop_offset'] = (oy, ox)
            # the crop's part of the scaled image; the rest is padding
            window = ((oy, min(oy + self.crop_size[0], h)),
                      (ox, min(ox + self.crop_size[1], w)))
        if scale != 1.0:
            self._resize(results, h, w, *(window or ()))
        elif window is not None:
            (y0, y1), (x0, x1) = window
            results['img'] = results['img'][y0:y1, x0:x1]
            for key in self._seg_maps(results):
                results[key] = results[key][y0:y1, x0:x1]
        # TF casts to float32 first; resized images are float32 already.
        results['img'] = np.ascontiguousarray(results['img'], _F32)
        if self.crop_size is not None:
            self._pad(results)
            results['pad_shape'] = results['img'].shape
        results['img_shape'] = results['img'].shape[:2]
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(min_scale={self.min_scale}, '
                f'max_scale={self.max_scale}, step={self.step}, '
                f'crop_size={self.crop_size}, pad_val={self.pad_val}, '
                f'seg_pad_val={self.seg_pad_val}, '
                f'resize_to_range={self.resize_to_range})')
