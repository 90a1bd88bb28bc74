"""TFRandomScale: TF DeepLab's train-time scaling and padding, against TF's
own output (``shared/tf_deeplab/train_augment``) and against TF's rules on
images the tests make; the shipped training pipelines around it."""
import copy
import json
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from mmseg.registry import DATASETS, MODELS, TRANSFORMS
from mmseg.utils import register_all_modules

import deeplabplus_mm  # noqa: F401  (registers our modules)
from conftest import REPO, tf_refs_folder
from deeplabplus_mm.datasets.transforms.tf_random_scale import (
    nearest_indices, resize_bilinear_align_corners)
from deeplabplus_mm.models.segmentors.tf_multiscale_tta import \
    tf_resize_to_range

DATASET_CONFIGS = osp.join(REPO, 'configs', '_base_', 'datasets')
SCALES = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]


@pytest.fixture(autouse=True)
def mmseg_scope():
    register_all_modules(init_default_scope=True)


def scale_at(s, **kwargs):
    """TFRandomScale that always draws ``s``."""
    return TRANSFORMS.build(
        dict(type='TFRandomScale', min_scale=s, max_scale=s, **kwargs))


def sample(img, label):
    return dict(img=img, gt_seg_map=label, seg_fields=['gt_seg_map'],
                img_shape=img.shape[:2], ori_shape=img.shape[:2])


def test_matches_tensorflow(tf_refs):
    """randomly_scale_image_and_label's output for a 97x121 image and label
    at the stored scales: image within 1e-3 (of 0..255), labels equal."""
    ref_dir = tf_refs_folder('train_augment')  # skips where absent
    with open(osp.join(ref_dir, 'options.json')) as f:
        options = json.load(f)
    ref = np.load(osp.join(ref_dir, 'scaled_97x121.npz'))
    img, label = ref['input_image'], ref['input_label']
    worst = 0.0
    for s in options['scales']:
        key = f'{s:.2f}'
        out = scale_at(s).transform(sample(img.copy(), label.copy()))
        assert out['img'].dtype == np.float32
        assert out['img'].shape == tuple(options['shapes'][f'image_{key}'])
        worst = max(worst, float(np.abs(out['img'] - ref[f'image_{key}'])
                                 .max()))
        np.testing.assert_array_equal(out['gt_seg_map'], ref[f'label_{key}'])
        assert out['img_shape'] == out['gt_seg_map'].shape
    print(f'max |image - TF| over scales {options["scales"]}: {worst:.3g}')
    assert worst <= 1e-3
    # mmcv's Resize (what the configs used before) is not TF's: rounded
    # sizes (49x61 at 0.5), half-pixel centres, uint8.
    mmcv = TRANSFORMS.build(dict(type='Resize', scale_factor=0.5,
                                 keep_ratio=True))
    assert mmcv.transform(sample(img.copy(), label.copy()))[
        'img'].shape == (49, 61, 3)


@pytest.mark.parametrize('size', [(97, 121), (64, 50), (5, 7)])
def test_sizes_are_truncated(size):
    h, w = size
    img = np.zeros((h, w, 3), np.uint8)
    for s in SCALES:
        out = scale_at(s).transform(sample(img.copy(), img[..., 0].copy()))
        # the scales are exact in float32, so TF's int(float32(h) * s) is
        # the floor of the exact product
        expected = (int(np.floor(h * s)), int(np.floor(w * s)))
        assert out['img'].shape[:2] == expected, s
        assert out['gt_seg_map'].shape == expected
        assert out['img_shape'] == expected
        assert out['scale_factor'] == (expected[1] / w, expected[0] / h)
        assert out['tf_scale'] == s


def test_bilinear_aligns_corners():
    """Corner pixels keep their values and a linear ramp maps to the ramp at
    the aligned source coordinates i * (in - 1) / (out - 1) (half-pixel
    sampling, mmcv's, would be off by up to half an input pixel)."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (37, 53, 3)).astype(np.uint8)
    y, x = np.mgrid[0:37, 0:53].astype(np.float64)
    ramp = np.stack([2 * y + 3 * x, 200 - 4 * y, 1.5 * x], -1)
    for s in (0.5, 0.75, 1.25, 2.0):
        out = scale_at(s).transform(sample(img.copy(), img[..., 0].copy()))
        got = out['img']
        assert got.dtype == np.float32
        for cy, cx in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
            np.testing.assert_allclose(got[cy, cx], img[cy, cx], atol=1e-3)
        oh, ow = got.shape[:2]
        sy = np.arange(oh)[:, None] * 36 / (oh - 1)
        sx = np.arange(ow)[None, :] * 52 / (ow - 1)
        expected = np.stack([2 * sy + 3 * sx, 200 - 4 * sy + 0 * sx,
                             1.5 * sx + 0 * sy], -1)
        np.testing.assert_allclose(
            resize_bilinear_align_corners(ramp.astype(np.float32), oh, ow),
            expected, atol=1e-3)
    # not rounded: interpolated values between grey levels survive
    assert (got != np.round(got)).mean() > 0.5


def test_nearest_neighbour_rounds_half_away_from_zero():
    """TF's ResizeNearestNeighbor with align_corners: roundf(i * scale),
    halves up (numpy's round would give [0, 0, 1, 2, 2])."""
    assert nearest_indices(3, 5).tolist() == [0, 1, 1, 2, 2]
    assert nearest_indices(5, 3).tolist() == [0, 2, 4]
    assert nearest_indices(4, 4).tolist() == [0, 1, 2, 3]


def test_labels_keep_their_values_and_255():
    h, w = 41, 59
    label = np.zeros((h, w), np.uint8)
    label[:, 20:] = 7
    label[10:30, 30:50] = 15
    label[:, 18:22] = 255  # a VOC-style void band
    label[5:8] = 3
    img = np.zeros((h, w, 3), np.uint8)
    for s in SCALES:
        out = scale_at(s).transform(sample(img.copy(), label.copy()))
        gt = out['gt_seg_map']
        assert gt.dtype == np.uint8
        assert set(np.unique(gt)) == {0, 3, 7, 15, 255}, s
        # every output pixel is the input pixel at the rounded aligned
        # source coordinates
        rows, cols = nearest_indices(h, gt.shape[0]), nearest_indices(
            w, gt.shape[1])
        np.testing.assert_array_equal(gt, label[np.ix_(rows, cols)])


def test_scale_one_resizes_nothing():
    img = np.random.default_rng(1).integers(0, 256, (9, 11, 3), np.uint8)
    label = np.arange(99, dtype=np.uint8).reshape(9, 11)
    out = scale_at(1.0).transform(sample(img.copy(), label.copy()))
    assert out['img'].dtype == np.float32
    np.testing.assert_array_equal(out['img'], img)
    np.testing.assert_array_equal(out['gt_seg_map'], label)


def test_random_scale_draws_tf_scales():
    t = TRANSFORMS.build(dict(type='TFRandomScale'))
    img = np.zeros((40, 40, 3), np.uint8)
    np.random.seed(0)
    drawn = [t.transform(sample(img.copy(), img[..., 0].copy()))['tf_scale']
             for _ in range(700)]
    values, counts = np.unique(drawn, return_counts=True)
    assert values.tolist() == SCALES
    assert counts.min() > 70  # about 100 each
    cont = TRANSFORMS.build(dict(type='TFRandomScale', step=0))
    drawn = [cont.transform(sample(img.copy(), img[..., 0].copy()))
             ['tf_scale'] for _ in range(50)]
    assert len(set(drawn)) == 50 and 0.5 <= min(drawn) < max(drawn) < 2.0


@pytest.mark.parametrize('bad', [
    dict(min_scale=0), dict(min_scale=2.0, max_scale=1.0), dict(step=-1),
    dict(crop_size=(513, )), dict(resize_to_range=dict(max_size=513))
])
def test_bad_arguments(bad):
    with pytest.raises(ValueError, match='TFRandomScale'):
        TRANSFORMS.build(dict(type='TFRandomScale', **bad))


def test_too_small_image_is_named():
    img = np.zeros((1, 5, 3), np.uint8)
    results = dict(sample(img, img[..., 0].copy()), img_path='tiny.png')
    with pytest.raises(ValueError, match=r'tiny.png: 1x5 scaled by 0.5 '
                       'leaves no pixels'):
        scale_at(0.5).transform(results)


def test_pads_bottom_right_with_mean_pixel_and_255():
    img = np.full((30, 40, 3), 50, np.uint8)
    label = np.full((30, 40), 4, np.uint8)
    out = scale_at(1.25, crop_size=(45, 47)).transform(sample(img, label))
    got, gt = out['img'], out['gt_seg_map']
    # scaled to 37x50, padded to 45x50, cropped to 45x47
    assert got.shape == (45, 47, 3) and gt.shape == (45, 47)
    assert out['img_shape'] == (45, 47) and out['pad_shape'] == got.shape
    assert out['tf_crop_offset'][0] == 0 and 0 <= out['tf_crop_offset'][1] <= 3
    np.testing.assert_array_equal(got[:37], 50)
    np.testing.assert_array_equal(got[37:], 127.5)
    np.testing.assert_array_equal(gt[:37], 4)
    np.testing.assert_array_equal(gt[37:], 255)


@pytest.mark.parametrize('crop', [(24, 31), (70, 20), (90, 120)])
def test_crop_is_tfs_pad_then_random_crop(crop):
    """Resizing only the crop's pixels gives exactly the crop of the whole
    resized and padded image (pad_to_bounding_box + random_crop), at offsets
    uniform over the padded image."""
    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, (37, 53, 3)).astype(np.uint8)
    label = rng.integers(0, 21, (37, 53)).astype(np.uint8)
    ch, cw = crop
    for s in SCALES:
        transform = scale_at(s, crop_size=crop)
        h, w = int(37 * s), int(53 * s)
        full = scale_at(s).transform(sample(img.copy(), label.copy()))
        ph, pw = max(h, ch), max(w, cw)
        padded = np.full((ph, pw, 3), 127.5, np.float32)
        padded[:h, :w] = full['img']
        padded_gt = np.full((ph, pw), 255, np.uint8)
        padded_gt[:h, :w] = full['gt_seg_map']
        offsets = set()
        for seed in range(30):
            np.random.seed(seed)
            out = transform.transform(sample(img.copy(), label.copy()))
            oy, ox = out['tf_crop_offset']
            offsets.add((oy, ox))
            np.testing.assert_array_equal(out['img'],
                                          padded[oy:oy + ch, ox:ox + cw])
            np.testing.assert_array_equal(out['gt_seg_map'],
                                          padded_gt[oy:oy + ch, ox:ox + cw])
        ys, xs = zip(*offsets)
        assert min(ys) >= 0 and max(ys) <= ph - ch
        assert min(xs) >= 0 and max(xs) <= pw - cw
        if pw - cw >= 2:
            assert len(set(xs)) > 1


def load_dataset_config(name):
    return Config.fromfile(osp.join(DATASET_CONFIGS, name))


@pytest.mark.parametrize('name,crop,resize_to_range', [
    ('pascal_voc12.py', 513, None),
    ('pascal_context.py', 513, None),
    ('cityscapes_769x769.py', 769, None),
    ('ade20k_513x513.py', 513, dict(min_size=513, max_size=513, factor=16)),
])
def test_shipped_pipelines_use_it(name, crop, resize_to_range):
    """Every data set's training pipeline scales as TF (0.5:0.25:2.0), pads
    to its crop and crops, then flips."""
    cfg = load_dataset_config(name)
    types = [t['type'] for t in cfg.train_pipeline]
    assert types[2:] == ['TFRandomScale', 'RandomFlip', 'PackSegInputs']
    scale = cfg.train_pipeline[2]
    assert (scale['min_scale'], scale['max_scale'], scale['step']) == (
        0.5, 2.0, 0.25)
    assert tuple(scale['crop_size']) == (crop, crop)
    assert scale.get('pad_val', 127.5) == 127.5
    assert scale.get('seg_pad_val', 255) == 255
    assert scale.get('resize_to_range') == resize_to_range
    assert cfg.train_pipeline[3]['prob'] == 0.5
    assert 'Resize' not in str(cfg.train_pipeline)


def test_ade20k_training_resizes_to_range_first():
    """TF's --min/max_resize_value=513 --resize_factor=16: a 300x700 image
    becomes 225x497 (TF's resize_to_range) before the random scale."""
    assert tf_resize_to_range(300, 700, 513, 513, 16) == (225, 497)
    cfg = load_dataset_config('ade20k_513x513.py')
    spec = dict(cfg.train_pipeline[2], min_scale=1.0, max_scale=1.0,
                crop_size=None)
    img = np.random.default_rng(0).integers(0, 256, (300, 700, 3), np.uint8)
    out = TRANSFORMS.build(spec).transform(sample(img, img[..., 0].copy()))
    assert out['img'].shape == (225, 497, 3)
    np.testing.assert_allclose(out['img'][-1, -1], img[-1, -1], atol=1e-3)
    spec.update(min_scale=0.5, max_scale=0.5)
    out = TRANSFORMS.build(spec).transform(sample(img, img[..., 0].copy()))
    assert out['img'].shape == (112, 248, 3)


def test_pipeline_pads_before_crop_and_flip(tmp_path):
    """The VOC training pipeline on a 200x300 image: every crop is 513x513;
    the padding (127.5 / 255) is bottom/right, and on the left in flipped
    crops, as TF flips after padding; larger scaled images are cropped."""
    import cv2
    h, w = 200, 300
    rng = np.random.default_rng(0)
    img = rng.integers(0, 100, (h, w, 3)).astype(np.uint8)  # never 127.5
    label = np.where(rng.random((h, w)) < 0.5, 1, 12).astype(np.uint8)
    cv2.imwrite(str(tmp_path / 'a.png'), img)
    from deeplabplus_mm.datasets.voc_meta import save_palette_png
    save_palette_png(str(tmp_path / 'a_seg.png'), label)
    cfg = load_dataset_config('pascal_voc12.py')
    pipeline = Compose(copy.deepcopy(cfg.train_pipeline[:-1]))
    seen = set()
    for seed in range(40):
        np.random.seed(seed)
        out = pipeline(dict(img_path=str(tmp_path / 'a.png'),
                            seg_map_path=str(tmp_path / 'a_seg.png'),
                            reduce_zero_label=False, seg_fields=[]))
        got, gt = out['img'], out['gt_seg_map']
        assert got.shape == (513, 513, 3) and gt.shape == (513, 513)
        assert got.dtype == np.float32
        pad = got[..., 0] == 127.5
        assert ((gt == 255) == pad).all()  # image and label padded alike
        assert (got[pad] == 127.5).all()
        sh, sw = (int(h * out['tf_scale']), int(w * out['tf_scale']))
        rows = pad.all(1)
        # bottom rows padded: scaled height < 513 for every scale here
        assert rows.sum() == 513 - sh and rows[sh:].all()
        cols = pad.all(0)
        if sw >= 513:
            assert not cols.any()  # a crop of the scaled image
        elif out['flip']:
            assert cols[:513 - sw].all() and not cols[513 - sw:].any()
        else:
            assert cols[sw:].all() and not cols[:sw].any()
        seen.add((out['flip'], sw >= 513))
    assert seen == {(False, False), (True, False), (False, True),
                    (True, True)}


def test_float_image_reaches_the_model_unrounded(synth_voc):
    """Through the dataset (VOC layout), PackSegInputs and the configs'
    SegDataPreProcessor: float32 all the way, (x - 127.5) / 127.5 of the
    scaled float image, padding 0 and labels 255 there."""
    cfg = load_dataset_config('pascal_voc12.py')
    dataset_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    dataset_cfg.update(data_root=synth_voc, data_prefix=dict(
        img_path='JPEGImages', seg_map_path='SegmentationClass'),
        ann_file='ImageSets/Segmentation/train.txt')
    dataset = DATASETS.build(dataset_cfg)
    preprocessor = MODELS.build(dict(
        type='SegDataPreProcessor', mean=[127.5] * 3, std=[127.5] * 3,
        bgr_to_rgb=True, pad_val=0, seg_pad_val=255, size=(513, 513)))
    np.random.seed(3)
    fractional = 0
    for i in range(4):
        item = dataset[i]
        inputs = item['inputs']
        assert inputs.dtype == torch.float32 and inputs.shape == (3, 513,
                                                                  513)
        fractional += int((inputs != inputs.round()).sum())
        gt = item['data_samples'].gt_sem_seg.data[0]
        assert set(gt.unique().tolist()) <= set(range(21)) | {255}
        batch = preprocessor(dict(inputs=[inputs],
                                  data_samples=[item['data_samples']]),
                             training=True)
        x = batch['inputs'][0]
        torch.testing.assert_close(x, (inputs[[2, 1, 0]] - 127.5) / 127.5,
                                   rtol=0, atol=0)
        pad = (inputs == 127.5).all(0)
        assert (x[:, pad] == 0).all() and (gt[pad] == 255).all()
        assert pad.any()  # synthetic images (61..83 px) are all padded
    assert fractional > 0
