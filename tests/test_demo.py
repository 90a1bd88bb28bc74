"""`make demo`, shortened: the same tool and code path (synthetic VOC data,
tools/train.py, tools/test.py with and without --tta, pictures), fewer
iterations and images. The model must clearly learn."""
import json

import numpy as np
import pytest
from PIL import Image

from conftest import run_tool
from deeplabplus_mm.datasets.voc_meta import VOC_CLASSES
from deeplabplus_mm.visualization import read_scalars
from tools._demo import read_test_metrics, trivial_miou


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
    # the figures are the runner's: per-class IoU of every class, whose mean
    # over present classes is the mIoU (up to the 2-decimal rounding)
    for key, miou in (('per_class_iou', 'mIoU_single_scale'),
                      ('per_class_iou_tta', 'mIoU_tta')):
        assert list(summary[key]) == list(VOC_CLASSES)
        assert np.nanmean(list(summary[key].values())) == pytest.approx(
            summary[miou], abs=0.01)
    assert f"mIoU single-scale {summary['mIoU_single_scale']:.2f}" in out


def _scalars_of(train_dir):
    (path, ) = train_dir.glob('*/vis_data/scalars.json')
    return read_scalars(str(path))


def test_per_class_iou_metric_reports_the_table_it_prints():
    """PerClassIoUMetric: mmseg's IoUMetric means, plus the per-class IoU
    and Acc (percent, 2 decimals, NaN for absent classes)."""
    import torch
    from mmseg.evaluation import IoUMetric

    from deeplabplus_mm.evaluation import PerClassIoUMetric
    gt = torch.tensor([[0, 0, 1, 1, 255], [0, 2, 2, 1, 255]])
    pred = torch.tensor([[0, 1, 1, 1, 0], [0, 2, 0, 1, 1]])
    samples = [dict(pred_sem_seg=dict(data=pred[None]),
                    gt_sem_seg=dict(data=gt[None]))]
    meta = dict(classes=('background', 'cat', 'dog', 'cow'))
    got = {}
    for cls in (IoUMetric, PerClassIoUMetric):
        metric = cls(iou_metrics=['mIoU'])
        metric.dataset_meta = meta
        metric.process({}, samples)
        got[cls] = metric.evaluate(1)
    ours = got[PerClassIoUMetric]
    # mmseg's means, as the decimals it prints (mmseg's are float32)
    assert {k: ours[k] for k in ('aAcc', 'mIoU', 'mAcc')} == {
        k: float(str(v)) for k, v in got[IoUMetric].items()}
    # IoU = intersection / union: background 2/4, cat 3/4, dog 1/2; cow:
    # absent (255 ignored)
    iou = ours['per_class']['IoU']
    assert list(iou) == list(meta['classes']) and np.isnan(iou['cow'])
    assert (iou['background'], iou['cat'], iou['dog']) == (50.0, 75.0, 50.0)
    assert ours['per_class']['Acc']['dog'] == 50.0
    assert ours['mIoU'] == 58.33 and type(ours['mIoU']) is float


def test_read_test_metrics_errors_name_the_place(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        read_test_metrics(str(tmp_path))
    run = tmp_path / '20260101_000000'
    run.mkdir()
    (run / '20260101_000000.json').write_text(
        json.dumps(dict(aAcc=90.0, mIoU=50.0, mAcc=60.0)))
    with pytest.raises(ValueError, match='20260101_000000.json: no per_class'):
        read_test_metrics(str(tmp_path))


def test_trivial_miou_counts_like_iou_metric(tmp_path):
    a = np.zeros((4, 4), np.uint8)
    a[:2, :2] = 3  # 4 px of class 3
    a[3, 3] = 255  # ignored
    Image.fromarray(a).save(tmp_path / 'a.png')
    # background IoU = 11 / 15 (all non-ignored pixels); class 3 IoU = 0
    assert trivial_miou([str(tmp_path / 'a.png')]) == 100 * (11 / 15) / 2
