"""`make demo`, shortened: the same tool and code path (synthetic VOC data,
tools/train.py, tools/test.py with and without --tta, pictures), fewer
iterations and images. The model must clearly learn."""
import json

import numpy as np
from PIL import Image

from conftest import run_tool
from deeplabplus_mm.apis.demo import parse_test_output, trivial_miou
from deeplabplus_mm.visualization import read_scalars


def test_demo_pipeline_learns(tmp_path):
    work, data = tmp_path / 'demo', tmp_path / 'synthvoc'
    out = run_tool('tools/demo.py', '--work-dir', str(work), '--data-root',
                   str(data), '--num-train', '32', '--num-val', '8',
                   '--size', '65', '81', '--crop', '65', '--iters', '120',
                   '--grid-images', '3', timeout=900).stdout
    summary = json.loads((work / 'demo_summary.json').read_text())
    # pictures exist and are images of the expected layout
    grid = np.array(Image.open(summary['grid']))
    assert grid.ndim == 3 and grid.shape[0] > 3 * 160
    assert Image.open(summary['curves']).size[0] >= 500
    # the loss falls
    scalars = _scalars_of(work / 'train')
    losses = [v for _, v in scalars['loss']]
    assert np.mean(losses[-2:]) < 0.6 * np.mean(losses[:2]), losses
    # mIoU clearly beats predicting background everywhere
    masks = sorted((data / 'SegmentationClass').glob('synth_*.png'))[-8:]
    baseline = trivial_miou([str(m) for m in masks])
    assert summary['mIoU_trivial'] == baseline
    assert summary['mIoU_single_scale'] > baseline + 15, summary
    assert summary['mIoU_tta'] > baseline + 15, summary
    assert f"mIoU single-scale {summary['mIoU_single_scale']:.2f}" in out


def _scalars_of(train_dir):
    (path, ) = train_dir.glob('*/vis_data/scalars.json')
    return read_scalars(str(path))


def test_parse_test_output_reads_mmseg_table():
    text = """per class results:
+------------+-------+-------+
|   Class    |  IoU  |  Acc  |
+------------+-------+-------+
| background | 97.61 | 99.12 |
| aeroplane  |  nan  |  nan  |
|    bird    | 81.5  | 88.0  |
+------------+-------+-------+
11/25 - mmengine - INFO - Iter(test) [8/8]    aAcc: 97.1000  mIoU: 89.5500  mAcc: 93.5600  data_time: 0.0013"""
    parsed = parse_test_output(text)
    assert parsed['mIoU'] == 89.55 and parsed['aAcc'] == 97.1
    assert parsed['per_class_iou']['bird'] == 81.5
    assert np.isnan(parsed['per_class_iou']['aeroplane'])
    assert parsed['table'].count('\n') == 6


def test_trivial_miou_counts_like_iou_metric(tmp_path):
    a = np.zeros((4, 4), np.uint8)
    a[:2, :2] = 3  # 4 px of class 3
    a[3, 3] = 255  # ignored
    Image.fromarray(a).save(tmp_path / 'a.png')
    # background IoU = 11 / 15 (all non-ignored pixels); class 3 IoU = 0
    assert trivial_miou([str(tmp_path / 'a.png')]) == 100 * (11 / 15) / 2
