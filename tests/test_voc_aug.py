"""VOC-aug preparation (VOC 2012 + SBD -> SegmentationClassAug, trainaug.txt)
on a generated VOC tree and generated SBD ``.mat`` files."""
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io as sio
import scipy.sparse as sparse
from PIL import Image

import deeplabplus_mm.datasets  # noqa: F401  (registers our modules)
from conftest import REPO
from deeplabplus_mm.datasets import DatasetError
from deeplabplus_mm.datasets.voc_meta import VOC_PALETTE
from tools.dataset_converters._sbd_voc_aug import (VOC_AUG_SIZE,
                                                   convert_voc_aug,
                                                   read_sbd_mat,
                                                   trainaug_names)
from tools.fixtures.synthetic_voc import make_synthetic_voc

TOOL = Path(REPO) / 'tools' / 'dataset_converters' / 'voc_aug.py'

VOC_TRAIN = [f'synth_{i:05d}' for i in range(4)]
VOC_VAL = [f'synth_{i:05d}' for i in range(4, 7)]
# SBD overlaps VOC train (synth_00000) and VOC val (synth_00004/5), repeats
# sbd_a in both of its lists, and has images of its own.
SBD_TRAIN = ['sbd_a', 'sbd_b', 'synth_00000', 'synth_00004']
SBD_VAL = ['sbd_c', 'synth_00005', 'sbd_a']
SBD_ONLY_SIZES = {'sbd_a': (37, 52), 'sbd_b': (44, 41), 'sbd_c': (50, 39)}
EXPECTED_TRAINAUG = sorted(['sbd_a', 'sbd_b', 'sbd_c'] + VOC_TRAIN)


def write_sbd_mat(path, seg):
    """An SBD ``cls/*.mat`` file: struct GTcls with SBD's three fields."""
    present = np.unique(seg[(seg > 0) & (seg < 255)]).astype(np.uint8)
    boundaries = np.empty((len(present), ), dtype=object)
    for i, c in enumerate(present):
        mask = (seg == c).astype(np.uint8)
        edge = cv2.dilate(mask, np.ones((3, 3), np.uint8)) != mask
        boundaries[i] = sparse.csc_matrix(edge.astype(np.float64))
    sio.savemat(
        str(path), {
            'GTcls': {
                'Segmentation': seg.astype(np.uint8),
                'Boundaries': boundaries,
                'CategoriesPresent': present,
            }
        })


def sbd_label(rng, h, w):
    """A blocky SBD-like label map (classes 0..20, no 255, as in SBD)."""
    small = rng.integers(0, 21, size=(max(1, h // 8), max(1, w // 8)))
    return cv2.resize(
        small.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)


@pytest.fixture
def voc_sbd(tmp_path):
    """VOC2012 tree (generated) + benchmark_RELEASE with .mat files."""
    voc = tmp_path / 'VOCdevkit' / 'VOC2012'
    make_synthetic_voc(
        str(voc),
        num_train=len(VOC_TRAIN),
        num_val=len(VOC_VAL),
        size_range=(33, 48),
        max_objects=2)
    sbd = tmp_path / 'benchmark_RELEASE'
    (sbd / 'dataset' / 'cls').mkdir(parents=True)
    rng = np.random.default_rng(0)
    sbd_seg = {}
    for name in sorted(set(SBD_TRAIN) | set(SBD_VAL)):
        if name in SBD_ONLY_SIZES:
            h, w = SBD_ONLY_SIZES[name]
            img = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
            cv2.imwrite(str(voc / 'JPEGImages' / f'{name}.jpg'), img)
        else:
            h, w = Image.open(voc / 'JPEGImages' / f'{name}.jpg').size[::-1]
        sbd_seg[name] = sbd_label(rng, h, w)
        write_sbd_mat(sbd / 'dataset' / 'cls' / f'{name}.mat', sbd_seg[name])
    (sbd / 'dataset' / 'train.txt').write_text('\n'.join(SBD_TRAIN) + '\n')
    (sbd / 'dataset' / 'val.txt').write_text('\n'.join(SBD_VAL) + '\n')
    return voc, sbd, sbd_seg


def read_png(path):
    with Image.open(path) as img:
        return img.mode, img.getpalette(), np.array(img)


def run_tool(*args):
    return subprocess.run(
        [sys.executable, str(TOOL), *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120)


def test_trainaug_names_set_algebra():
    names = trainaug_names(['b', 'a', 'v1'], ['c', 'a'], ['t1', 'a'],
                           ['v1', 'v2'])
    assert names == ['a', 'b', 'c', 't1']


def test_tool_writes_masks_and_list(voc_sbd):
    voc, sbd, sbd_seg = voc_sbd
    result = run_tool('--voc', voc, '--sbd', sbd, '--nproc', 2)
    assert result.returncode == 0, result.stderr

    # The list: (SBD train + SBD val + VOC train) - VOC val, sorted, unique.
    lines = (voc / 'ImageSets/Segmentation/trainaug.txt').read_text()
    assert lines.splitlines() == EXPECTED_TRAINAUG
    assert not set(lines.split()) & set(VOC_VAL)
    assert f'trainaug: {len(EXPECTED_TRAINAUG)} images' in result.stdout
    assert 'WARNING' in result.stdout and str(VOC_AUG_SIZE) in result.stdout

    out_dir = voc / 'SegmentationClassAug'
    expected_names = set(VOC_TRAIN) | set(VOC_VAL) | set(sbd_seg)
    assert {p.stem for p in out_dir.glob('*.png')} == expected_names
    for name in sorted(expected_names):
        mode, palette, label = read_png(out_dir / f'{name}.png')
        assert mode == 'P'
        assert palette[:63] == VOC_PALETTE.reshape(-1).tolist()
        voc_mask = voc / 'SegmentationClass' / f'{name}.png'
        if voc_mask.exists():
            # VOC wins wherever it has a mask (val too), 255 outlines kept.
            expected = read_png(voc_mask)[2]
            assert (expected == 255).any()
        else:
            expected = sbd_seg[name]
        np.testing.assert_array_equal(label, expected, err_msg=name)
    # The SBD version of an overlapping image really differed.
    voc_version = read_png(out_dir / 'synth_00004.png')[2]
    assert not np.array_equal(voc_version, sbd_seg['synth_00004'])


def test_second_run_is_idempotent(voc_sbd):
    voc, sbd, _ = voc_sbd
    first = convert_voc_aug(str(voc), str(sbd), nproc=1)
    assert first.written == 10 and first.up_to_date == 0
    assert (first.voc_masks, first.sbd_masks) == (7, 3)
    outputs = sorted((voc / 'SegmentationClassAug').glob('*.png'))
    list_path = voc / 'ImageSets/Segmentation/trainaug.txt'
    mtimes = [p.stat().st_mtime_ns for p in outputs + [list_path]]

    second = convert_voc_aug(str(voc), str(sbd), nproc=1)
    assert second.written == 0 and second.up_to_date == 10
    assert [p.stat().st_mtime_ns for p in outputs + [list_path]] == mtimes
    assert second.trainaug == len(EXPECTED_TRAINAUG)

    # A source newer than its output is converted again, only that one.
    mat = sbd / 'dataset' / 'cls' / 'sbd_b.mat'
    later = (voc / 'SegmentationClassAug' / 'sbd_b.png').stat().st_mtime + 5
    os.utime(mat, (later, later))
    third = convert_voc_aug(str(voc), str(sbd), nproc=1)
    assert third.written == 1


def test_corrupt_mat_is_named_by_the_tool(voc_sbd):
    voc, sbd, _ = voc_sbd
    bad = sbd / 'dataset' / 'cls' / 'sbd_b.mat'
    bad.write_bytes(b'MATLAB 5.0 MAT-file, truncated' + b'\0' * 20)
    result = run_tool('--voc', voc, '--sbd', sbd)
    assert result.returncode != 0
    assert str(bad) in result.stderr
    assert 'Traceback' not in result.stderr
    # Nothing half-written: no list, no mask for the bad file.
    assert not (voc / 'SegmentationClassAug' / 'sbd_b.png').exists()
    assert not (voc / 'ImageSets/Segmentation/trainaug.txt').exists()


def test_missing_mat_is_named(voc_sbd):
    voc, sbd, _ = voc_sbd
    missing = sbd / 'dataset' / 'cls' / 'sbd_c.mat'
    missing.unlink()
    with pytest.raises(FileNotFoundError, match='sbd_c.mat'):
        convert_voc_aug(str(voc), str(sbd))


def test_missing_folders_are_named(voc_sbd, tmp_path):
    voc, sbd, _ = voc_sbd
    with pytest.raises(FileNotFoundError, match='benchmark_nowhere'):
        convert_voc_aug(str(voc), str(tmp_path / 'benchmark_nowhere'))
    with pytest.raises(FileNotFoundError, match='VOC_nowhere'):
        convert_voc_aug(str(tmp_path / 'VOC_nowhere'), str(sbd))
    (voc / 'SegmentationClass').rename(voc / 'SegmentationClass.off')
    with pytest.raises(FileNotFoundError, match='VOC2012/SegmentationClass'):
        convert_voc_aug(str(voc), str(sbd))
    (voc / 'SegmentationClass.off').rename(voc / 'SegmentationClass')
    # SBD given as its dataset/ folder works too.
    summary = convert_voc_aug(str(voc), str(sbd / 'dataset'))
    assert summary.trainaug == len(EXPECTED_TRAINAUG)


def test_mat_of_wrong_size_or_labels(voc_sbd):
    voc, sbd, _ = voc_sbd
    mat = sbd / 'dataset' / 'cls' / 'sbd_a.mat'
    write_sbd_mat(mat, np.zeros((10, 10), np.uint8))
    with pytest.raises(DatasetError, match='sbd_a.mat.*sbd_a.jpg'):
        convert_voc_aug(str(voc), str(sbd))
    seg = np.zeros(SBD_ONLY_SIZES['sbd_a'], np.uint8)
    seg[0, :3] = 42
    write_sbd_mat(mat, seg)
    with pytest.raises(DatasetError, match=r'sbd_a.mat: label values 42'):
        convert_voc_aug(str(voc), str(sbd))


def test_read_sbd_mat(tmp_path):
    seg = np.arange(12, dtype=np.uint8).reshape(3, 4)
    write_sbd_mat(tmp_path / 'ok.mat', seg)
    np.testing.assert_array_equal(read_sbd_mat(str(tmp_path / 'ok.mat')), seg)
    sio.savemat(str(tmp_path / 'other.mat'), {'GTinst': {'Segmentation': seg}})
    with pytest.raises(DatasetError, match='other.mat: no GTcls'):
        read_sbd_mat(str(tmp_path / 'other.mat'))
    with pytest.raises(DatasetError, match='gone.mat'):
        read_sbd_mat(str(tmp_path / 'gone.mat'))
