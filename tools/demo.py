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
import os
import os.path as osp
import subprocess
import sys
import time

import cv2
import numpy as np
from PIL import Image

from _demo import (last_checkpoint, latest_scalars,  # this folder's helpers
                   read_test_metrics, save_summary, trivial_miou,
                   write_demo_config)
from convert_tf_checkpoint import REPO  # the tools' one definition

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
