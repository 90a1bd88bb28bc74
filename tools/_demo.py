"""The pieces of ``make demo`` (``tools/demo.py``) that are worth testing:
the derived config, reading the metrics the test runs wrote, the trivial
baseline."""
import glob
import json
import os
import os.path as osp
from typing import Dict, List, Optional

import numpy as np
from PIL import Image


def write_demo_config(path: str, base_config: str, data_root: str,
                      iters: Optional[int] = None,
                      workers: Optional[int] = None,
                      crop: Optional[int] = None) -> str:
    """A config that inherits ``base_config`` and points it at
    ``data_root`` (and, optionally, a shorter schedule, other loader
    workers or a smaller square training crop). Its test evaluator is
    :class:`~deeplabplus_mm.evaluation.PerClassIoUMetric`, so the test runs
    write the per-class IoU with the means (:func:`read_test_metrics`)."""
    root = osp.abspath(data_root)
    loaders = ('train_dataloader', 'val_dataloader', 'test_dataloader')
    cfg = {name: dict(dataset=dict(data_root=root)) for name in loaders}
    cfg['test_evaluator'] = dict(type='PerClassIoUMetric')
    if iters is not None:
        warmup, every = max(1, iters // 10), max(1, iters // 3)
        cfg['param_scheduler'] = [
            dict(type='LinearLR', start_factor=0.1, begin=0, end=warmup,
                 by_epoch=False),
            dict(type='TFPolyLR', eta_min=0.0, power=0.9, begin=warmup,
                 end=iters, by_epoch=False)
        ]
        cfg['train_cfg'] = dict(max_iters=iters, val_interval=every)
        cfg['default_hooks'] = dict(checkpoint=dict(interval=every))
    if workers is not None:
        for name in loaders:
            cfg[name].update(num_workers=workers,
                             persistent_workers=workers > 0)
    if crop is not None:
        cfg['model'] = dict(data_preprocessor=dict(size=(crop, crop)))
        cfg['train_dataloader']['dataset']['pipeline'] = _cropped_pipeline(
            base_config, crop)
    lines = ['# Written by tools/demo.py',
             f'_base_ = [{osp.abspath(base_config)!r}]']
    lines += [f'{key} = {value!r}' for key, value in cfg.items()]
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return path


def _cropped_pipeline(base_config: str, crop: int) -> List[dict]:
    """The base config's training pipeline with a ``crop`` x ``crop``
    RandomCrop (the RandomResize target scales with it)."""
    from mmengine.config import Config
    base = Config.fromfile(base_config)
    old = base.crop_size[0]
    pipeline = [dict(t) for t in base.train_dataloader.dataset.pipeline]
    for t in pipeline:
        if t['type'] == 'RandomCrop':
            t['crop_size'] = (crop, crop)
        elif t['type'] == 'RandomResize':
            t['scale'] = tuple(round(s * crop / old) for s in t['scale'])
    return pipeline


def read_test_metrics(work_dir: str) -> Dict:
    """The metrics of the latest ``tools/test.py --work-dir work_dir`` run,
    as the runner wrote them (mmengine's ``LoggerHook``:
    ``<work_dir>/<timestamp>/<timestamp>.json``).

    Args:
        work_dir: The test run's work dir.

    Returns:
        dict: ``aAcc``, ``mIoU``, ``mAcc`` and ``per_class_iou``
        (``{class: IoU}``, NaN for absent classes), in percent.

    Raises:
        FileNotFoundError: No test run wrote its metrics there.
        ValueError: The metrics lack the means or the per-class IoU (the
            test evaluator must be :class:`PerClassIoUMetric`).
    """
    runs = sorted(
        path for path in glob.glob(osp.join(work_dir, '*', '*.json'))
        if osp.basename(path) == osp.basename(osp.dirname(path)) + '.json')
    if not runs:
        raise FileNotFoundError(
            f'no test metrics (<timestamp>/<timestamp>.json) under {work_dir}')
    with open(runs[-1]) as f:
        record = json.load(f)
    missing = [key for key in ('aAcc', 'mIoU', 'mAcc', 'per_class')
               if key not in record]
    if missing or 'IoU' not in record['per_class']:
        raise ValueError(f'{runs[-1]}: no {", ".join(missing) or "IoU"} in '
                         'the test metrics (test_evaluator must be '
                         'PerClassIoUMetric)')
    return dict(aAcc=record['aAcc'], mIoU=record['mIoU'],
                mAcc=record['mAcc'],
                per_class_iou=record['per_class']['IoU'])


def trivial_miou(mask_paths: List[str],
                 num_classes: Optional[int] = None) -> float:
    """mIoU (%) of predicting background everywhere, computed as mmseg's
    IoUMetric does (classes absent from the ground truth are NaN and left
    out; the ignore index is left out). ``num_classes``: VOC's if None."""
    from deeplabplus_mm.datasets.voc_meta import IGNORE_INDEX, NUM_CLASSES
    num_classes = num_classes or NUM_CLASSES
    hist = np.zeros(num_classes, np.int64)
    for path in mask_paths:
        label = np.array(Image.open(path))
        label = label[label != IGNORE_INDEX]
        hist += np.bincount(label, minlength=num_classes)[:num_classes]
    present = hist > 0
    ious = np.zeros(num_classes)
    ious[0] = hist[0] / hist.sum()  # union of bg prediction = all pixels
    return float(100 * ious[present].mean())


def latest_scalars(work_dir: str) -> Optional[str]:
    """The newest ``vis_data/scalars.json`` of a training run."""
    runs = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                     'scalars.json')))
    return runs[-1] if runs else None


def last_checkpoint(work_dir: str) -> str:
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return f.read().strip()


def save_summary(path: str, summary: Dict) -> None:
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(summary, f, indent=2)
    os.replace(tmp, path)
