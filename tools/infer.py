"""Segment your own images.

    python tools/infer.py CONFIG CHECKPOINT INPUT... [--out-dir DIR] [--tta]
                          [--device cpu|cuda] [--no-fast]

INPUT: image files and/or folders (searched recursively for .jpg, .jpeg,
.png, .bmp, .tif, .tiff, .webp). For each image, writes ``<stem>.png`` (a
palette mask with the dataset's palette, VOC's for VOC-class models) and
``<stem>_overlay.jpg`` under --out-dir. Unreadable images are reported by
name and skipped; the exit status is 1 if any failed.

Like the config's test runs, the model takes the fast path (BN folded into
the convs, channels_last weights; same predictions) unless the config sets
``fast_inference = False`` or ``--no-fast`` is given.
"""
import argparse
import os
import os.path as osp
import sys

import cv2
from mmengine.utils import ProgressBar

from deeplabplus_mm.apis import Segmenter
from deeplabplus_mm.visualization import overlay, save_palette_mask, write_image

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('inputs', nargs='+', metavar='INPUT')
    parser.add_argument('--out-dir', default='work_dirs/infer')
    parser.add_argument('--tta', action='store_true',
                        help='multi-scale + flip test-time augmentation')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--no-fast', action='store_true',
                        help='the plain model: no BN folding, no '
                        'channels_last')
    # Before the fast path became the default these flags turned it on.
    parser.add_argument('--fuse-conv-bn', action='store_true',
                        help='on by default (kept for old command lines)')
    parser.add_argument('--channels-last', action='store_true',
                        help='on by default (kept for old command lines)')
    args = parser.parse_args()
    if args.no_fast and (args.fuse_conv_bn or args.channels_last):
        parser.error('--no-fast contradicts --fuse-conv-bn/--channels-last')
    return args


def list_images(inputs):
    images = []
    for item in inputs:
        if osp.isdir(item):
            for root, _, files in os.walk(item):
                images += [osp.join(root, f) for f in sorted(files)
                           if f.lower().endswith(IMAGE_EXTS)]
        elif osp.isfile(item):
            images.append(item)
        else:
            sys.exit(f'error: {item}: no such file or folder')
    return images


def main():
    args = parse_args()
    images = list_images(args.inputs)
    if not images:
        sys.exit('error: no images found in ' + ' '.join(args.inputs))
    # None: as the config says (fast unless fast_inference=False)
    fast = False if args.no_fast else (
        True if args.fuse_conv_bn or args.channels_last else None)
    segmenter = Segmenter(args.config, args.checkpoint, args.device,
                          args.tta, fuse_conv_bn=fast, channels_last=fast)
    done = [what for what, on in (('BN folded into the convs',
                                   segmenter.fuse_conv_bn),
                                  ('channels_last', segmenter.channels_last))
            if on]
    print('model: ' + (', '.join(done) if done else 'plain (--no-fast)'))
    os.makedirs(args.out_dir, exist_ok=True)
    failed = []
    progress = ProgressBar(len(images))
    for path in images:
        stem = osp.splitext(osp.basename(path))[0]
        try:
            label = segmenter(path)
            image = cv2.imread(path, cv2.IMREAD_COLOR)
            save_palette_mask(osp.join(args.out_dir, stem + '.png'), label,
                              segmenter.palette)
            write_image(osp.join(args.out_dir, stem + '_overlay.jpg'),
                        overlay(image, label, segmenter.palette))
        except Exception as e:  # report by name, go on with the others
            failed.append((path, f'{type(e).__name__}: {e}'))
        progress.update()
    print(f'\n{len(images) - len(failed)} of {len(images)} images '
          f'segmented -> {args.out_dir}')
    for path, why in failed:
        print(f'failed: {path}: {why}', file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == '__main__':
    main()
