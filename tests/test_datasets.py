"""Datasets, LoadVOCAnnotations, base dataset configs, ignore label 255 and
bad input, on generated data only."""
import copy
import os
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.structures import PixelData
from mmseg.datasets import PascalVOCDataset
from mmseg.datasets.transforms import LoadAnnotations
from mmseg.evaluation import IoUMetric
from mmseg.models.decode_heads import FCNHead
from mmseg.registry import DATASETS, MODELS, TRANSFORMS
from mmseg.structures import SegDataSample
from mmseg.utils import register_all_modules
from PIL import Image

import deeplabplus_mm.datasets  # noqa: F401  (registers our modules)
from conftest import REPO
from deeplabplus_mm.datasets import (COCOVOCDataset, DatasetError,
                                     LoadVOCAnnotations, PascalVOCAugDataset)
from deeplabplus_mm.datasets.utils import read_split_names
from deeplabplus_mm.datasets.voc_meta import save_palette_png
from tools.fixtures.synthetic_voc import make_synthetic_voc

CONFIG_DIR = Path(REPO) / 'configs' / '_base_' / 'datasets'
CONFIGS = {
    'pascal_voc12.py': ('PascalVOCAugDataset', (513, 513)),
    'pascal_voc12_aug.py': ('PascalVOCAugDataset', (513, 513)),
    'coco_voc.py': ('COCOVOCDataset', (513, 513)),
    'cityscapes_769x769.py': ('CityscapesDataset', (769, 769)),
    'ade20k_513x513.py': ('ADE20KDataset', (513, 513)),
    'pascal_context.py': ('PascalContextDataset', (513, 513)),
    'pascal_context_59.py': ('PascalContextDataset59', (513, 513)),
}
VOC_LIKE = ('pascal_voc12.py', 'pascal_voc12_aug.py', 'coco_voc.py')
LOAD_CHECKED = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadVOCAnnotations'),
    dict(type='PackSegInputs')
]


@pytest.fixture(autouse=True)
def mmseg_scope():
    register_all_modules(init_default_scope=True)


@pytest.fixture
def voc(tmp_path):
    """A small VOC tree with a VOC-aug layout (copies of the masks)."""
    root = tmp_path / 'VOC2012'
    make_synthetic_voc(
        str(root), num_train=4, num_val=2, size_range=(40, 60), max_objects=3)
    shutil.copytree(root / 'SegmentationClass', root / 'SegmentationClassAug')
    split_dir = root / 'ImageSets' / 'Segmentation'
    shutil.copy(split_dir / 'train.txt', split_dir / 'trainaug.txt')
    return root


def names(root, split='trainaug'):
    return read_split_names(
        str(root / 'ImageSets' / 'Segmentation' / f'{split}.txt'))


def read_label(path):
    with Image.open(path) as img:
        return np.array(img)


def build_aug(root, pipeline=LOAD_CHECKED, **kwargs):
    return DATASETS.build(
        dict(
            type='PascalVOCAugDataset',
            data_root=str(root),
            pipeline=copy.deepcopy(pipeline),
            **kwargs))


def load_config(name, data_root=None):
    cfg = Config.fromfile(str(CONFIG_DIR / name))
    if data_root is not None:
        for loader in ('train_dataloader', 'val_dataloader'):
            cfg[loader]['dataset']['data_root'] = str(data_root)
    return cfg


# ---------------------------------------------------------------- registry


def test_modules_are_registered():
    assert DATASETS.get('PascalVOCAugDataset') is PascalVOCAugDataset
    assert DATASETS.get('COCOVOCDataset') is COCOVOCDataset
    assert TRANSFORMS.get('LoadVOCAnnotations') is LoadVOCAnnotations
    assert (PascalVOCAugDataset.METAINFO['classes'] ==
            PascalVOCDataset.METAINFO['classes'])
    assert COCOVOCDataset.METAINFO == PascalVOCDataset.METAINFO


# ---------------------------------------------------------------- datasets


def test_voc_aug_dataset_yields_samples(voc):
    dataset = build_aug(voc)
    assert len(dataset) == 4
    assert dataset.metainfo['classes'][15] == 'person'
    for i, name in enumerate(names(voc)):
        sample = dataset[i]
        gt = sample['data_samples'].gt_sem_seg.data.numpy()[0]
        expected = read_label(voc / 'SegmentationClassAug' / f'{name}.png')
        np.testing.assert_array_equal(gt, expected)
        assert (gt == 255).any()  # VOC outlines stay 255
        assert sample['inputs'].shape == (3, *expected.shape)
        assert sample['inputs'].dtype == torch.uint8


def test_voc_aug_dataset_reads_drsleep_layout(voc):
    """DrSleep's grayscale SegmentationClassAug + train_aug.txt of
    ``/JPEGImages/x.jpg /SegmentationClassAug/x.png`` pairs, no SBD."""
    drsleep = voc / 'SegmentationClassAug'
    for path in drsleep.glob('*.png'):
        Image.fromarray(read_label(path), mode='L').save(path)
    listed = names(voc, 'train') + names(voc, 'val')
    (voc / 'train_aug.txt').write_text(''.join(
        f'/JPEGImages/{n}.jpg /SegmentationClassAug/{n}.png\n'
        for n in listed))
    dataset = build_aug(voc, ann_file='train_aug.txt')
    assert len(dataset) == len(listed)
    for i, name in enumerate(listed):
        assert dataset.get_data_info(i)['seg_map_path'] == str(drsleep /
                                                               f'{name}.png')
        gt = dataset[i]['data_samples'].gt_sem_seg.data.numpy()[0]
        np.testing.assert_array_equal(
            gt, read_label(voc / 'SegmentationClass' / f'{name}.png'))


def test_voc_aug_dataset_missing_list_mentions_the_tool(voc):
    with pytest.raises(FileNotFoundError, match='voc_aug.py'):
        build_aug(voc, ann_file='ImageSets/Segmentation/nothing.txt')


# ---------------------------------------------------------------- configs


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_base_config_recipe(name):
    dataset_type, crop_size = CONFIGS[name]
    text = (CONFIG_DIR / name).read_text()
    assert not re.search(r'^\s*(import|from)\s', text, re.M)
    assert 'mmseg::' not in text
    cfg = load_config(name)
    for key in ('dataset_type', 'data_root', 'crop_size', 'train_pipeline',
                'test_pipeline', 'tta_pipeline', 'train_dataloader',
                'val_dataloader', 'test_dataloader', 'val_evaluator',
                'test_evaluator'):
        assert key in cfg, key
    assert cfg.dataset_type == dataset_type
    assert DATASETS.get(dataset_type) is not None
    assert not os.path.isabs(cfg.data_root)
    assert tuple(cfg.crop_size) == crop_size
    assert cfg.train_dataloader.dataset.type == dataset_type
    assert cfg.val_dataloader.dataset.type == dataset_type
    assert cfg.test_dataloader == cfg.val_dataloader
    assert (cfg.train_dataloader.batch_size,
            cfg.train_dataloader.num_workers) == (4, 4)
    assert cfg.val_dataloader.batch_size == 1
    assert cfg.val_evaluator == dict(type='IoUMetric', iou_metrics=['mIoU'])
    assert cfg.test_evaluator == cfg.val_evaluator

    loader = 'LoadVOCAnnotations' if name in VOC_LIKE else 'LoadAnnotations'
    # TTA: TF's multi-scale evaluation with the zoo's protocol; the model
    # makes the views, the pipeline gives one (TTA tests: test_tta_*.py)
    scales = ([0.75, 1.0, 1.25] if name.startswith('cityscapes') else
              [0.5, 0.75, 1.0, 1.25, 1.5, 1.75])
    assert cfg.tta_model.type == 'TFMultiScaleSegTTAModel'
    assert (cfg.tta_model.scales, cfg.tta_model.flip) == (scales, True)
    assert [t['type'] for t in cfg.tta_pipeline] == [
        'LoadImageFromFile', 'TestTimeAug']
    assert cfg.tta_pipeline[1]['transforms'] == [[dict(
        type=loader, **({'num_classes': 21} if name in VOC_LIKE else {}))],
                                                 [dict(type='PackSegInputs')]]
    # mmseg's protocol stays available: mmseg_tta_pipeline
    tta = cfg.mmseg_tta_pipeline[1]['transforms']
    resize_to_range = None
    if name.startswith('ade20k'):
        # TF's ADE20K recipe resizes every image to a longer side of 513
        # first (min/max_resize_value=513), in training and evaluation.
        pre = dict(type='Resize', scale=(513, 513), keep_ratio=True)
        assert cfg.test_pipeline.pop(1) == pre
        assert tta.pop(0) == [pre]
        resize_to_range = dict(min_size=513, max_size=513, factor=16)
        assert cfg.tta_model.resize_to_range == resize_to_range
    train = [t['type'] for t in cfg.train_pipeline]
    assert train == [
        'LoadImageFromFile', loader, 'TFRandomScale', 'RandomFlip',
        'PackSegInputs'
    ]
    assert 'PhotoMetricDistortion' not in text.replace(
        '# * and nothing else: PhotoMetricDistortion', '')
    # TF's random scale 0.5:0.25:2.0, padding and random crop (no
    # cat_max_ratio) before the flip (TFRandomScale: tests/test_tf_augment)
    scale = cfg.train_pipeline[2]
    assert (scale['min_scale'], scale['max_scale'], scale['step'],
            tuple(scale['crop_size'])) == (0.5, 2.0, 0.25, crop_size)
    assert scale.get('resize_to_range') == resize_to_range
    assert cfg.train_pipeline[3]['prob'] == 0.5
    assert [t['type'] for t in cfg.test_pipeline
            ] == ['LoadImageFromFile', loader, 'PackSegInputs']
    assert [t['scale_factor'] for t in tta[0]] == scales
    assert [t['prob'] for t in tta[1]] == [0., 1.]
    assert tta[2][0]['type'] == loader
    for key in ('train_pipeline', 'test_pipeline', 'tta_pipeline',
                'mmseg_tta_pipeline'):
        Compose(copy.deepcopy(cfg[key]))  # every transform is registered


def test_ade20k_pipelines_resize_longer_side_to_513(tmp_path):
    cfg = load_config('ade20k_513x513.py')
    img = np.random.default_rng(0).integers(0, 255, (300, 700, 3), np.uint8)
    cv2.imwrite(str(tmp_path / 'a.jpg'), img)
    cv2.imwrite(str(tmp_path / 'a.png'), np.full((300, 700), 5, np.uint8))
    base = dict(img_path=str(tmp_path / 'a.jpg'),
                seg_map_path=str(tmp_path / 'a.png'),
                reduce_zero_label=True, seg_fields=[])
    out = Compose(copy.deepcopy(cfg.test_pipeline))(copy.deepcopy(base))
    assert tuple(out['inputs'].shape[1:]) == (220, 513)
    assert out['data_samples'].ori_shape == (300, 700)
    tta = Compose(copy.deepcopy(cfg.mmseg_tta_pipeline))(copy.deepcopy(base))
    shapes = sorted({tuple(x.shape[1:]) for x in tta['inputs']})
    assert shapes[0] == (110, 257) and shapes[-1] == (385, 898)
    # TF's protocol: TFMultiScaleSegTTAModel resizes (resize_to_range)
    tta = Compose(copy.deepcopy(cfg.tta_pipeline))(copy.deepcopy(base))
    assert [tuple(x.shape[1:]) for x in tta['inputs']] == [(300, 700)]
    train = Compose(copy.deepcopy(cfg.train_pipeline))(copy.deepcopy(base))
    assert train['inputs'].shape[1] <= 513 and train['inputs'].shape[2] <= 513


def test_voc_configs_build_and_train(voc):
    for name in ('pascal_voc12.py', 'pascal_voc12_aug.py'):
        cfg = load_config(name, voc)
        train = DATASETS.build(cfg.train_dataloader.dataset)
        val = DATASETS.build(cfg.val_dataloader.dataset)
        assert type(train).__name__ == cfg.dataset_type
        assert len(train) == 4 and len(val) == 2
        sample = train[0]
        assert sample['inputs'].shape[0] == 3
        assert sample['inputs'].shape[1:] == \
            sample['data_samples'].gt_sem_seg.shape
        # Validation: original resolution (no Resize), masks as on disk.
        name0 = names(voc, 'val')[0]
        gt = val[0]['data_samples'].gt_sem_seg.data.numpy()[0]
        np.testing.assert_array_equal(
            gt, read_label(voc / 'SegmentationClass' / f'{name0}.png'))


# ---------------------------------------------------- ignore label 255


def striped_sample(tmp_path, h=400, w=520):
    """Image whose grey level is the label: 255 in the ignore stripes."""
    label = np.zeros((h, w), np.uint8)
    label[:, w // 4:w // 2] = 255
    label[h // 3:, w // 2:] = 15
    label[:h // 5, :w // 5] = 255
    img_path, seg_path = tmp_path / 'x.png', tmp_path / 'x_seg.png'
    cv2.imwrite(str(img_path), np.repeat(label[..., None], 3, 2))
    save_palette_png(str(seg_path), label)
    return dict(
        img_path=str(img_path),
        seg_map_path=str(seg_path),
        reduce_zero_label=False,
        seg_fields=[],
        label_map=None)


def test_ignore_label_survives_train_pipeline(tmp_path):
    base = striped_sample(tmp_path)
    cfg = load_config('pascal_voc12_aug.py')
    pipeline = Compose(copy.deepcopy(cfg.train_pipeline[:-1]))
    kernel = np.ones((5, 5), np.uint8)
    seen_255 = 0
    for seed in range(24):
        np.random.seed(seed)
        out = pipeline(copy.deepcopy(base))
        img, gt = out['img'], out['gt_seg_map']
        assert img.shape[:2] == gt.shape == (513, 513)
        assert set(np.unique(gt)) <= {0, 15, 255}
        # Away from edges, image and labels still agree: bright = ignore,
        # and the padding (image 127.5) is ignored.
        pad = img[..., 0] == 127.5
        assert (gt[pad] == 255).all()
        bright = cv2.erode((img[..., 0] == 255).astype(np.uint8), kernel)
        ignore = cv2.erode(((gt == 255) & ~pad).astype(np.uint8), kernel)
        assert (gt[bright > 0] == 255).all()
        assert (img[ignore > 0] == 255).all()
        seen_255 += int((gt == 255).sum())
    assert seen_255 > 0


def test_ignore_label_survives_photometric_and_pad(tmp_path):
    base = striped_sample(tmp_path, 60, 80)
    loaded = Compose(
        [dict(type='LoadImageFromFile'),
         dict(type='LoadVOCAnnotations')])(
             base)
    before = loaded['gt_seg_map'].copy()
    assert (before == 255).sum() == (read_label(
        base['seg_map_path']) == 255).sum()
    out = Compose([
        dict(type='PhotoMetricDistortion'),
        dict(type='Pad', size=(96, 100), pad_val=dict(img=0, seg=255)),
    ])(
        copy.deepcopy(loaded))
    gt = out['gt_seg_map']
    np.testing.assert_array_equal(gt[:60, :80], before)
    assert (gt[60:] == 255).all() and (gt[:, 80:] == 255).all()

    # SegDataPreProcessor pads to crop size: image 0 (after normalisation),
    # labels 255.
    packed = Compose([dict(type='PackSegInputs')])(loaded)
    preprocessor = MODELS.build(
        dict(
            type='SegDataPreProcessor',
            mean=[127.5] * 3,
            std=[127.5] * 3,
            bgr_to_rgb=True,
            pad_val=0,
            seg_pad_val=255,
            size=(96, 100)))
    batch = preprocessor(
        dict(inputs=[packed['inputs']], data_samples=[packed['data_samples']]),
        training=True)
    seg = batch['data_samples'][0].gt_sem_seg.data[0].numpy()
    np.testing.assert_array_equal(seg[:60, :80], before)
    assert (seg[60:] == 255).all() and (seg[:, 80:] == 255).all()
    assert (batch['inputs'][0, :, 60:] == 0).all()


def test_ignore_label_is_ignored_by_the_loss():
    torch.manual_seed(0)
    label = torch.randint(0, 21, (2, 12, 10))
    label[:, :4] = 255
    label[1, :, -3:] = 255
    valid = label != 255
    logits = torch.randn(2, 21, 12, 10, requires_grad=True)
    loss_fn = MODELS.build(dict(type='CrossEntropyLoss', avg_non_ignore=True))
    loss = loss_fn(logits, label, ignore_index=255)
    ref = F.cross_entropy(logits.permute(0, 2, 3, 1)[valid], label[valid])
    torch.testing.assert_close(loss, ref)
    loss.backward()
    grad = logits.grad.abs().sum(1)
    assert (grad[~valid] == 0).all() and (grad[valid] > 0).all()

    # Through a decode head's loss_by_feat (the head's ignore_index = 255).
    head = FCNHead(
        in_channels=4,
        channels=4,
        num_convs=1,
        num_classes=21,
        loss_decode=dict(type='CrossEntropyLoss', avg_non_ignore=True))
    assert head.ignore_index == 255
    samples = []
    for i in range(2):
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=label[i:i + 1].clone())
        samples.append(sample)
    seg_logits = logits.detach().clone().requires_grad_(True)
    losses = head.loss_by_feat(seg_logits, samples)
    torch.testing.assert_close(losses['loss_ce'], ref.detach())
    losses['loss_ce'].backward()
    grad = seg_logits.grad.abs().sum(1)
    assert (grad[~valid] == 0).all() and (grad[valid] > 0).all()
    # Changing the logits of ignored pixels changes nothing.
    changed = logits.detach().clone()
    changed[:, :, :4] = 100 * torch.randn_like(changed[:, :, :4])
    torch.testing.assert_close(
        head.loss_by_feat(changed, samples)['loss_ce'], ref.detach())


def test_ignore_label_is_ignored_by_the_metric():
    gt = torch.tensor([[0, 0, 1, 1, 255, 255], [2, 2, 1, 1, 255, 255]])
    pred = torch.tensor([[0, 1, 1, 1, 0, 2], [2, 2, 1, 0, 1, 1]])
    # Valid pixels only: IoU(0) = 1/3, IoU(1) = 3/5, IoU(2) = 1.
    expected = round((1 / 3 + 3 / 5 + 1) / 3 * 100, 2)

    def miou(prediction):
        metric = IoUMetric(iou_metrics=['mIoU'])
        metric.dataset_meta = dict(classes=('a', 'b', 'c'))
        metric.process({}, [
            dict(
                pred_sem_seg=dict(data=prediction[None]),
                gt_sem_seg=dict(data=gt[None]))
        ])
        return metric.compute_metrics(metric.results)['mIoU']

    assert miou(pred) == pytest.approx(expected)
    other = pred.clone()
    other[:, 4:] = torch.tensor([[2, 0], [0, 2]])
    assert miou(other) == pytest.approx(expected)


# ---------------------------------------------------------------- bad input


def test_missing_listed_image_is_named(voc):
    gone = names(voc)[2]
    os.remove(voc / 'JPEGImages' / f'{gone}.jpg')
    with pytest.raises(FileNotFoundError) as err:
        build_aug(voc)
    assert f'{gone}.jpg' in str(err.value)
    assert '1 of 8 files listed in' in str(err.value)
    # pascal_voc12.py (VOC's own train split) checks at start-up as well.
    cfg = load_config('pascal_voc12.py', voc)
    with pytest.raises(FileNotFoundError, match=f'{gone}.jpg'):
        DATASETS.build(cfg.train_dataloader.dataset)


def test_missing_listed_mask_is_named(voc):
    gone = names(voc)[1]
    os.remove(voc / 'SegmentationClassAug' / f'{gone}.png')
    with pytest.raises(
            FileNotFoundError, match=f'SegmentationClassAug/{gone}.png'):
        build_aug(voc)


def test_mask_of_another_size_is_named(voc):
    name = names(voc)[0]
    path = voc / 'SegmentationClassAug' / f'{name}.png'
    label = read_label(path)
    save_palette_png(str(path), label[:-3, 1:])
    dataset = build_aug(voc)
    with pytest.raises(DatasetError) as err:
        dataset[0]
    msg = str(err.value)
    assert str(path) in msg and f'{name}.jpg' in msg
    assert f'{label.shape[0] - 3}x{label.shape[1] - 1}' in msg


@pytest.mark.parametrize('value', [21, 42, 254])
def test_label_outside_classes_is_named(voc, value):
    name = names(voc)[3]
    path = voc / 'SegmentationClassAug' / f'{name}.png'
    label = read_label(path)
    label[0, 0] = value
    save_palette_png(str(path), label)
    dataset = build_aug(voc)
    with pytest.raises(
            DatasetError,
            match=rf'{re.escape(str(path))}: label values {value}'):
        dataset[3]
    dataset[0]  # the other samples are fine


def test_truncated_mask_png_is_named(voc):
    name = names(voc)[0]
    path = voc / 'SegmentationClassAug' / f'{name}.png'
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(DatasetError, match=re.escape(str(path))):
        build_aug(voc)[0]


def test_truncated_image_png_is_named(tmp_path):
    base = striped_sample(tmp_path, 30, 40)
    data = Path(base['img_path']).read_bytes()
    Path(base['img_path']).write_bytes(data[:len(data) // 2])
    with pytest.raises(Exception, match=re.escape(base['img_path'])):
        Compose(copy.deepcopy(LOAD_CHECKED))(base)


def test_colour_mask_is_rejected(voc):
    name = names(voc)[0]
    path = voc / 'SegmentationClassAug' / f'{name}.png'
    with Image.open(path) as img:
        img.convert('RGB').save(path)
    with pytest.raises(DatasetError, match=r"mode 'RGB'"):
        build_aug(voc)[0]


@pytest.mark.parametrize('kind', ['gray_jpg', 'gray_png', 'rgba_png'])
def test_gray_and_rgba_images_become_3_channel_bgr(voc, kind):
    name = names(voc)[0]
    jpg = voc / 'JPEGImages' / f'{name}.jpg'
    bgr = cv2.imread(str(jpg))
    if kind == 'gray_jpg':
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        cv2.imwrite(str(jpg), gray, [cv2.IMWRITE_JPEG_QUALITY, 100])
        expected = np.repeat(gray[..., None], 3, 2).astype(int)
        tolerance = 3
        dataset = build_aug(voc)
    else:
        png = voc / 'JPEGImages' / f'{name}.png'
        rgb = bgr[..., ::-1]
        if kind == 'gray_png':
            gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
            Image.fromarray(gray, mode='L').save(png)
            expected = np.repeat(gray[..., None], 3, 2).astype(int)
        else:
            alpha = np.full(rgb.shape[:2], 7, np.uint8)
            Image.fromarray(np.dstack([rgb, alpha]), mode='RGBA').save(png)
            expected = bgr.astype(int)
        tolerance = 0
        for other in names(voc):
            if other != name:
                shutil.copy(voc / 'JPEGImages' / f'{other}.jpg',
                            voc / 'JPEGImages' / f'{other}.png')
        dataset = build_aug(voc, img_suffix='.png')
    sample = dataset[0]
    img = sample['inputs'].permute(1, 2, 0).numpy().astype(int)
    assert img.shape == expected.shape
    assert np.abs(img - expected).max() <= tolerance
    assert sample['data_samples'].gt_sem_seg.shape == expected.shape[:2]


# ---------------------------------------------------------------- transform


def test_load_voc_annotations_matches_mmseg(tmp_path):
    base = striped_sample(tmp_path, 30, 40)
    label = read_label(base['seg_map_path'])
    for reduce_zero_label, label_map in ((False, None), (True, None), (False, {
            15: 1,
            0: 0,
            255: 255
    })):
        results = dict(
            base,
            reduce_zero_label=reduce_zero_label,
            label_map=label_map,
            ori_shape=label.shape)
        ours = LoadVOCAnnotations()(copy.deepcopy(results))
        theirs = LoadAnnotations()(copy.deepcopy(results))
        np.testing.assert_array_equal(ours['gt_seg_map'], theirs['gt_seg_map'])
        assert ours['seg_fields'] == ['gt_seg_map']
    assert (ours['gt_seg_map'] == 255).any()
    # Inference (no label map path): nothing to load, nothing fails.
    bare = dict(img_path=base['img_path'])
    assert LoadVOCAnnotations()(dict(bare)) == bare
    with pytest.raises(ValueError, match='num_classes'):
        LoadVOCAnnotations(num_classes=0)
