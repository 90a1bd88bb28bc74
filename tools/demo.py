"""`make demo`: the whole product on an embedded default, on CPU in minutes.

1. generates a synthetic VOC-layout data set under data/synthvoc (once);
2. trains DeepLab v3+ / aligned Xception-41 with tools/train.py (progress,
   periodic validation, checkpoints);
3. tests the final checkpoint with tools/test.py, without and with --tta;
4. draws a prediction grid and the loss / mIoU curves;
5. prints where everything is and both mIoU figures.

Every step runs our real tools on the real data path (VOC dataset class,
split files, SegDataPreProcessor, TTA, IoUMetric).
"""
import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Dict, List, Optional

import cv2
import numpy as np
from PIL import Image

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(HERE)
DEFAULT_CONFIG = osp.join(
    REPO, 'configs/demo/deeplabv3plus_xception41-d16_1xb8-300it_synthvoc-97x97.py')


def parse_args():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('--config', default=DEFAULT_CONFIG)
    p.add_argument('--work-dir', default=osp.join(REPO, 'work_dirs', 'demo'))
    p.add_argument('--data-root', default=osp.join(REPO, 'data', 'synthvoc'))
    p.add_argument('--num-train', type=int, default=120)
    p.add_argument('--num-val', type=int, default=30)
    p.add_argument('--size', type=int, nargs=2, default=(97, 161),
                   metavar=('MIN', 'MAX'), help='image side range (pixels)')
    p.add_argument('--iters', type=int, default=None,
                   help='shorter schedule than the config\'s (smoke tests)')
    p.add_argument('--workers', type=int, default=None)
    p.add_argument('--crop', type=int, default=None,
                   help='square training crop (default: the config\'s)')
    p.add_argument('--grid-images', type=int, default=6)
    return p.parse_args()


def run(step, *args):
    """Run one of our tools like a user, streaming its progress."""
    print(f'\n==> {step}: python {" ".join(args)}', flush=True)
    proc = subprocess.Popen([sys.executable, *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=dict(os.environ,
                                                PYTHONUNBUFFERED='1'))
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if ' - mmengine - ' in line and ('Iter(' in line or 'mIoU' in line
                                          or 'Saving' in line):
            print(line.rstrip(), flush=True)
    if proc.wait() != 0:
        sys.stdout.write(''.join(lines[-60:]))
        sys.exit(f'{step} failed (exit {proc.returncode})')


# --- The pieces worth testing (tests/test_demo.py): the derived config,
# reading the metrics the test runs wrote, the trivial baseline.


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


def main():
    args = parse_args()
    if REPO not in sys.path:  # run as a script: tools.* from the checkout
        sys.path.insert(0, REPO)
    from deeplabplus_mm.apis import Segmenter
    from deeplabplus_mm.visualization import plot_training_curves, save_grid
    from tools.fixtures.synthetic_voc import make_synthetic_voc

    start = time.time()
    os.makedirs(args.work_dir, exist_ok=True)
    print(f'==> data: synthetic VOC layout under {args.data_root}')
    make_synthetic_voc(args.data_root, args.num_train, args.num_val,
                       size_range=args.size)
    config = write_demo_config(
        osp.join(args.work_dir, 'demo_config.py'), args.config,
        args.data_root, args.iters, workers=args.workers, crop=args.crop)

    train_dir = osp.join(args.work_dir, 'train')
    run('train', 'tools/train.py', config, '--work-dir', train_dir)
    ckpt = last_checkpoint(train_dir)
    results = {}
    for name, extra in (('single-scale', []), ('TTA', ['--tta'])):
        test_dir = osp.join(args.work_dir, f'test_{name}')
        run(f'test ({name})', 'tools/test.py', config, ckpt, '--work-dir',
            test_dir, *extra)
        results[name] = read_test_metrics(test_dir)
        per_class = results[name]['per_class_iou'].items()
        print(f'IoU per class ({name}):',
              ', '.join(f'{c} {v:.2f}' for c, v in per_class))

    # pictures: prediction grid and curves
    val_list = osp.join(args.data_root, 'ImageSets/Segmentation/val.txt')
    with open(val_list) as f:
        names = f.read().split()
    masks = [osp.join(args.data_root, 'SegmentationClass', n + '.png')
             for n in names]
    segmenter = Segmenter(config, ckpt)
    rows = []
    for name, mask in list(zip(names, masks))[:args.grid_images]:
        image_path = osp.join(args.data_root, 'JPEGImages', name + '.jpg')
        rows.append((cv2.imread(image_path), np.array(Image.open(mask)),
                     segmenter(image_path)))
    grid = osp.join(args.work_dir, 'predictions.png')
    save_grid(grid, rows, segmenter.palette)
    curves = osp.join(args.work_dir, 'curves.png')
    scalars = latest_scalars(train_dir)
    plot_training_curves(scalars, curves, 'make demo: DeepLab v3+ '
                         'Xception-41 on synthetic VOC')

    baseline = trivial_miou(masks)
    elapsed = time.time() - start
    summary = dict(
        checkpoint=ckpt, config=config, grid=grid, curves=curves,
        mIoU_single_scale=results['single-scale']['mIoU'],
        mIoU_tta=results['TTA']['mIoU'], mIoU_trivial=baseline,
        per_class_iou=results['single-scale']['per_class_iou'],
        per_class_iou_tta=results['TTA']['per_class_iou'],
        wall_time_s=round(elapsed, 1))
    save_summary(osp.join(args.work_dir, 'demo_summary.json'), summary)
    print(f"""
==> done in {elapsed / 60:.1f} min
    checkpoint   {ckpt}
    predictions  {grid}  (image | ground truth | prediction)
    curves       {curves}  (training loss, validation mIoU)
    training log {osp.dirname(osp.dirname(scalars))}
    summary      {osp.join(args.work_dir, 'demo_summary.json')}
    mIoU single-scale {summary['mIoU_single_scale']:.2f}
    mIoU with TTA     {summary['mIoU_tta']:.2f}
    (predicting background everywhere: {baseline:.2f})""")


if __name__ == '__main__':
    main()
