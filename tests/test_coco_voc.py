"""COCO -> VOC relabelling, its class map and the COCO-VOC dataset, on a
hand-made COCO instances json."""
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from mmengine.config import Config
from mmseg.datasets import PascalVOCDataset
from mmseg.registry import DATASETS
from mmseg.utils import register_all_modules
from PIL import Image
from pycocotools import mask as mask_utils

import deeplabplus_mm.datasets  # noqa: F401  (registers our modules)
from conftest import REPO
from deeplabplus_mm.datasets import (COCO_TO_VOC, VOC_COCO_CLASSES,
                                     COCOVOCDataset, DatasetError)
from deeplabplus_mm.datasets.voc_meta import VOC_PALETTE
from tools.dataset_converters._coco_to_voc import (Instance,
                                                   convert_coco_to_voc,
                                                   rasterize)
from tools.fixtures.synthetic_coco import (compressed_rle, save_coco_json,
                                           uncompressed_rle)

TOOL = Path(REPO) / 'tools' / 'dataset_converters' / 'coco_voc.py'

# COCO 2017's own ids and names of the categories VOC has (from COCO's
# instances json), written out independently of the package's table.
COCO_CATEGORIES = {
    1: 'person',
    2: 'bicycle',
    3: 'car',
    4: 'motorcycle',
    5: 'airplane',
    6: 'bus',
    7: 'train',
    9: 'boat',
    16: 'bird',
    17: 'cat',
    18: 'dog',
    19: 'horse',
    20: 'sheep',
    21: 'cow',
    44: 'bottle',
    62: 'chair',
    63: 'couch',
    64: 'potted plant',
    67: 'dining table',
    72: 'tv'
}
VOC_TO_COCO_NAME = {
    'aeroplane': 'airplane',
    'bicycle': 'bicycle',
    'bird': 'bird',
    'boat': 'boat',
    'bottle': 'bottle',
    'bus': 'bus',
    'car': 'car',
    'cat': 'cat',
    'chair': 'chair',
    'cow': 'cow',
    'diningtable': 'dining table',
    'dog': 'dog',
    'horse': 'horse',
    'motorbike': 'motorcycle',
    'person': 'person',
    'pottedplant': 'potted plant',
    'sheep': 'sheep',
    'sofa': 'couch',
    'train': 'train',
    'tvmonitor': 'tv'
}
VOC_CLASSES = PascalVOCDataset.METAINFO['classes']
PERSON, DOG, CAT, BUS, CAR, SHEEP = 15, 12, 8, 6, 7, 17
CUP, UMBRELLA = 47, 28  # COCO categories VOC does not have
MIN_PIXELS = 200


def rect(h, w, top, bottom, left, right):
    """Boolean (h, w) mask of rows top..bottom, cols left..right."""
    m = np.zeros((h, w), bool)
    m[top:bottom + 1, left:right + 1] = True
    return m


def polygon_mask(poly, h, w):
    """How pycocotools rasterises a polygon (the reference)."""
    rles = mask_utils.frPyObjects([poly], h, w)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def make_coco(root, split, image_subdir):
    """A COCO tree for ``split`` with five images; returns the expected
    masks of the kept images and the expected dropped stems."""
    images, anns, expected = [], [], {}
    next_id = iter(range(100, 1000))

    def add(image_id, category, segmentation, iscrowd=0, ann_id=None):
        anns.append(
            dict(
                id=next(next_id) if ann_id is None else ann_id,
                image_id=image_id,
                category_id=category,
                segmentation=segmentation,
                iscrowd=iscrowd,
                area=0.0,
                bbox=[0, 0, 1, 1]))

    # Image 1 (40x50): everything at once. Hand-made painting order, largest
    # first: person polygon, person crowd, umbrella crowd, dog, cup, then
    # cat (id 15) and bus (id 16) of equal area, bus on top (higher id).
    h, w = 40, 50
    person_poly = [2., 2., 45., 2., 45., 35., 2., 35.]
    person = polygon_mask(person_poly, h, w)
    crowd_person = rect(h, w, 25, 38, 20, 48)
    crowd_umbrella = rect(h, w, 0, 3, 0, 49)
    dog = rect(h, w, 10, 19, 5, 19)
    cup_poly = [30., 10., 38., 10., 38., 18., 30., 18.]
    cup = polygon_mask(cup_poly, h, w)
    cat = rect(h, w, 28, 33, 22, 27)
    bus = rect(h, w, 30, 35, 24, 29)
    areas = [
        m.sum()
        for m in (person, crowd_person, crowd_umbrella, dog, cup, cat, bus)
    ]
    assert areas == sorted(areas, reverse=True) and areas[-1] == areas[-2]
    add(1, 1, [person_poly], ann_id=10)
    add(1, 18, compressed_rle(dog), ann_id=11)
    add(1, CUP, [cup_poly], ann_id=12)
    add(1, 1, uncompressed_rle(crowd_person), iscrowd=1, ann_id=13)
    add(1, UMBRELLA, uncompressed_rle(crowd_umbrella), iscrowd=1, ann_id=14)
    add(1, 6, uncompressed_rle(bus), ann_id=16)  # listed before the cat
    add(1, 17, compressed_rle(cat), ann_id=15)
    label = np.zeros((h, w), np.uint8)
    for mask, value in ((person, PERSON), (crowd_person, 255), (crowd_umbrella,
                                                                0), (dog, DOG),
                        (cup, 0), (cat, CAT), (bus, BUS)):
        label[mask] = value
    # Spot checks of the hand painting itself.
    assert label[14, 34] == 0  # the cup occludes the person
    assert label[2, 10] == 0  # so does the umbrella crowd
    assert label[37, 40] == 255 and label[31, 25] == BUS
    assert label[29, 23] == CAT and label[20, 30] == PERSON
    expected['000000000001'] = label
    images.append((1, h, w))

    # Image 2 (30x30): a small car (< MIN_PIXELS) and a big person crowd
    # region (255 is not counted) -> dropped.
    add(2, 3, [[3., 3., 10., 3., 10., 10., 3., 10.]])
    add(2, 1, compressed_rle(rect(30, 30, 12, 29, 0, 29)), iscrowd=1)
    images.append((2, 30, 30))

    # Image 3 (20x25): only a non-VOC object -> dropped.
    add(3, CUP, compressed_rle(rect(20, 25, 0, 19, 0, 24)))
    images.append((3, 20, 25))

    # Image 4 (36x28): a sheep as uncompressed RLE, a degenerate polygon
    # (2 points, cannot be rasterised) and an empty polygon list.
    sheep = rect(36, 28, 5, 30, 3, 20)
    add(4, 20, uncompressed_rle(sheep))
    add(4, 17, [[1., 1., 5., 5.]])
    add(4, 18, [])
    expected['000000000004'] = np.where(sheep, SHEEP, 0).astype(np.uint8)
    images.append((4, 36, 28))

    # Image 5 (24x24): no annotations -> dropped.
    images.append((5, 24, 24))

    img_dir = root / image_subdir
    img_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for image_id, h, w in images:
        cv2.imwrite(
            str(img_dir / f'{image_id:012d}.jpg'),
            rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    categories = [
        dict(id=i, name=n, supercategory='x')
        for i, n in COCO_CATEGORIES.items()
    ]
    categories += [
        dict(id=CUP, name='cup', supercategory='kitchen'),
        dict(id=UMBRELLA, name='umbrella', supercategory='acc')
    ]
    save_coco_json(
        str(root / 'annotations' / f'instances_{split}.json'),
        [dict(id=i, file_name=f'{i:012d}.jpg', height=h, width=w)
         for i, h, w in images], anns, categories)
    dropped = ['000000000002', '000000000003', '000000000005']
    return expected, dropped


def read_png(path):
    with Image.open(path) as img:
        return img.mode, img.getpalette(), np.array(img)


def check_outputs(out_root, split, expected, dropped):
    mask_dir = out_root / 'voc_masks' / split
    assert sorted(p.stem for p in mask_dir.glob('*.png')) == sorted(expected)
    for stem, label in expected.items():
        mode, palette, got = read_png(mask_dir / f'{stem}.png')
        assert mode == 'P'
        assert palette[:63] == VOC_PALETTE.reshape(-1).tolist()
        np.testing.assert_array_equal(got, label, err_msg=stem)
    for stem in dropped:
        assert not (mask_dir / f'{stem}.png').exists()
    lines = (out_root / 'voc_lists' / f'{split}.txt').read_text()
    assert lines == ''.join(f'{s}\n' for s in sorted(expected))


def test_class_map_names_and_ids():
    assert [voc for voc, _, _ in VOC_COCO_CLASSES] == list(VOC_CLASSES[1:])
    for voc, coco_name, coco_id in VOC_COCO_CLASSES:
        assert VOC_TO_COCO_NAME[voc] == coco_name
        assert COCO_CATEGORIES[coco_id] == coco_name
        assert COCO_TO_VOC[coco_id] == VOC_CLASSES.index(voc)
    assert sorted(COCO_TO_VOC) == sorted(COCO_CATEGORIES)
    assert sorted(COCO_TO_VOC.values()) == list(range(1, 21))


def test_rasterize_paints_largest_first(tmp_path):
    expected, _ = make_coco(tmp_path, 'train2017', 'train2017')
    coco = json.loads(
        (tmp_path / 'annotations/instances_train2017.json').read_text())
    instances = [
        Instance(a['id'], a['category_id'], bool(a['iscrowd']),
                 a['segmentation']) for a in coco['annotations']
        if a['image_id'] == 1
    ]
    np.testing.assert_array_equal(
        rasterize(instances, 40, 50), expected['000000000001'])
    # The order of the annotations in the json does not matter.
    np.testing.assert_array_equal(
        rasterize(instances[::-1], 40, 50), expected['000000000001'])


def test_convert_split_folder_layout_and_idempotence(tmp_path):
    expected, dropped = make_coco(tmp_path, 'train2017', 'train2017')
    summary = convert_coco_to_voc(
        str(tmp_path), 'train2017', min_pixels=MIN_PIXELS, nproc=1)
    check_outputs(tmp_path, 'train2017', expected, dropped)
    assert summary.kept == sorted(expected)
    assert summary.dropped == dropped
    assert (summary.written, summary.up_to_date) == (2, 0)
    hist = sum(
        np.bincount(m.ravel(), minlength=256) for m in expected.values())
    np.testing.assert_array_equal(summary.class_pixels, hist[:21])
    assert summary.ignore_pixels == hist[255]
    assert summary.class_images[PERSON] == 1
    assert summary.class_images[SHEEP] == 1
    assert summary.class_images[CAR] == 0
    report = summary.report()
    assert 'kept 2 images, dropped 3' in report
    assert f'sheep {" " * 7}{1:>8} images {hist[SHEEP]:>14} pixels' in report

    # Second run: nothing rewritten, same outputs.
    mask_dir = tmp_path / 'voc_masks' / 'train2017'
    paths = sorted(mask_dir.glob('*.png'))
    mtimes = [p.stat().st_mtime_ns for p in paths]
    again = convert_coco_to_voc(
        str(tmp_path), 'train2017', min_pixels=MIN_PIXELS, nproc=1)
    assert (again.written, again.up_to_date) == (0, 2)
    assert [p.stat().st_mtime_ns for p in paths] == mtimes
    check_outputs(tmp_path, 'train2017', expected, dropped)

    # A higher threshold drops the sheep image and removes its old mask.
    n_sheep = int((expected['000000000004'] == SHEEP).sum())
    n_voc_1 = int(((expected['000000000001'] >= 1) &
                   (expected['000000000001'] <= 20)).sum())
    assert n_sheep < n_voc_1
    third = convert_coco_to_voc(
        str(tmp_path), 'train2017', min_pixels=n_sheep + 1, nproc=1)
    assert third.kept == ['000000000001']
    check_outputs(tmp_path, 'train2017',
                  {'000000000001': expected['000000000001']},
                  dropped + ['000000000004'])


def test_tool_images_folder_layout(tmp_path):
    coco_root = tmp_path / 'coco'
    out_root = tmp_path / 'out'
    expected, dropped = make_coco(coco_root, 'val2017', 'images/val2017')
    result = subprocess.run([
        sys.executable,
        str(TOOL), '--coco',
        str(coco_root), '--split', 'val2017', '--out-root',
        str(out_root), '--min-pixels',
        str(MIN_PIXELS), '--nproc', '2'
    ],
                            cwd=REPO,
                            capture_output=True,
                            text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    check_outputs(out_root, 'val2017', expected, dropped)
    assert not (coco_root / 'voc_masks').exists()
    assert 'kept 2 images, dropped 3' in result.stdout
    assert 'images containing the class, pixels' in result.stdout


def test_default_min_pixels_drops_small_images(tmp_path):
    expected, dropped = make_coco(tmp_path, 'train2017', 'train2017')
    summary = convert_coco_to_voc(str(tmp_path), 'train2017')
    # Image 1 has > 1000 VOC pixels, the sheep image fewer.
    assert int((expected['000000000004'] == SHEEP).sum()) < 1000
    assert summary.kept == ['000000000001']


def test_bad_inputs_are_named(tmp_path):
    make_coco(tmp_path, 'train2017', 'train2017')
    split = str(tmp_path)
    with pytest.raises(FileNotFoundError, match='instances_val2017.json'):
        convert_coco_to_voc(split, 'val2017')
    # Image of another size than the json says.
    img = tmp_path / 'train2017' / '000000000004.jpg'
    cv2.imwrite(str(img), np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(DatasetError, match='000000000004.jpg: image is 10x10'):
        convert_coco_to_voc(split, 'train2017', nproc=1)
    # Missing image.
    img.unlink()
    with pytest.raises(FileNotFoundError, match='000000000004.jpg'):
        convert_coco_to_voc(split, 'train2017', nproc=1)
    # No image folder in either layout.
    (tmp_path / 'train2017').rename(tmp_path / 'elsewhere')
    with pytest.raises(FileNotFoundError, match='images/train2017'):
        convert_coco_to_voc(split, 'train2017', nproc=1)
    (tmp_path / 'elsewhere').rename(tmp_path / 'train2017')
    cv2.imwrite(str(img), np.zeros((36, 28, 3), np.uint8))
    # A json whose VOC-mapped category ids are not COCO's.
    ann_file = tmp_path / 'annotations' / 'instances_train2017.json'
    coco = json.loads(ann_file.read_text())
    coco['categories'][0]['name'] = 'pedestrian'
    ann_file.write_text(json.dumps(coco))
    with pytest.raises(DatasetError, match="category id 1 is 'pedestrian'"):
        convert_coco_to_voc(split, 'train2017', nproc=1)
    coco['categories'][0]['name'] = 'person'
    # An RLE of another size than its image.
    coco['annotations'][1]['segmentation']['size'] = [7, 7]
    ann_file.write_text(json.dumps(coco))
    with pytest.raises(DatasetError, match='annotation 11: RLE size'):
        convert_coco_to_voc(split, 'train2017', nproc=1)
    ann_file.write_text('{"images": [')
    with pytest.raises(DatasetError, match='not a valid json'):
        convert_coco_to_voc(split, 'train2017', nproc=1)


@pytest.mark.parametrize('image_subdir', ['train2017', 'images/train2017'])
def test_dataset_reads_converted_layout(tmp_path, image_subdir):
    register_all_modules(init_default_scope=True)
    expected, _ = make_coco(tmp_path, 'train2017', image_subdir)
    convert_coco_to_voc(str(tmp_path), 'train2017', min_pixels=MIN_PIXELS)
    dataset = DATASETS.build(
        dict(
            type='COCOVOCDataset',
            data_root=str(tmp_path),
            split='train2017',
            pipeline=[
                dict(type='LoadImageFromFile'),
                dict(type='LoadVOCAnnotations'),
                dict(type='PackSegInputs')
            ]))
    assert isinstance(dataset, COCOVOCDataset)
    assert len(dataset) == 2
    assert dataset.metainfo['classes'] == VOC_CLASSES
    for i, stem in enumerate(sorted(expected)):
        info = dataset.get_data_info(i)
        assert info['img_path'] == os.path.join(
            str(tmp_path), image_subdir, f'{stem}.jpg')
        sample = dataset[i]
        gt = sample['data_samples'].gt_sem_seg.data.numpy()[0]
        np.testing.assert_array_equal(gt, expected[stem])
        assert tuple(sample['inputs'].shape) == (3, *expected[stem].shape)
    # A listed image that went missing is reported at construction.
    os.remove(os.path.join(str(tmp_path), image_subdir, '000000000004.jpg'))
    with pytest.raises(FileNotFoundError, match='000000000004.jpg'):
        DATASETS.build(
            dict(
                type='COCOVOCDataset',
                data_root=str(tmp_path),
                split='train2017'))


def test_base_config_builds_on_converted_data(tmp_path):
    register_all_modules(init_default_scope=True)
    make_coco(tmp_path, 'train2017', 'train2017')
    make_coco(tmp_path, 'val2017', 'images/val2017')
    for split in ('train2017', 'val2017'):
        convert_coco_to_voc(str(tmp_path), split, min_pixels=MIN_PIXELS)
    cfg = Config.fromfile(
        str(Path(REPO) / 'configs' / '_base_' / 'datasets' / 'coco_voc.py'))
    for loader in ('train_dataloader', 'val_dataloader'):
        cfg[loader]['dataset']['data_root'] = str(tmp_path)
    train = DATASETS.build(cfg.train_dataloader.dataset)
    val = DATASETS.build(cfg.val_dataloader.dataset)
    assert len(train) == len(val) == 2
    assert val.get_data_info(0)['img_path'].endswith(
        'images/val2017/000000000001.jpg')
    np.random.seed(0)
    sample = train[0]
    gt = sample['data_samples'].gt_sem_seg.data.numpy()[0]
    assert sample['inputs'].shape[1:] == gt.shape
    assert set(np.unique(gt)) <= {0, PERSON, DOG, CAT, BUS, 255}
    val_gt = val[0]['data_samples'].gt_sem_seg.data.numpy()[0]
    assert val_gt.shape == (40, 50) and (val_gt == 255).any()
