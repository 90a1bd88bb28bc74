"""Segment your own images and videos.

    python tools/infer.py CONFIG CHECKPOINT INPUT... [--out-dir DIR] [--tta]
                          [--device cpu|cuda] [--no-fast] [--frame-masks]
                          [--onnx MODEL.onnx]

INPUT: image and video files and/or folders (searched recursively for .jpg,
.jpeg, .png, .bmp, .tif, .tiff, .webp images and .mp4, .avi, .mov, .mkv,
.webm, ... videos; a file named directly that is not an image is read as a
video: anything OpenCV decodes). For each image, writes ``<stem>.png`` (a
palette mask with the dataset's palette, VOC's for VOC-class models) and
``<stem>_overlay.jpg`` under --out-dir; for each video, frame by frame
(streamed), ``<stem>_overlay.mp4`` and with --frame-masks
``<stem>_masks/000000.png``... Unreadable inputs are reported by name and
skipped; the exit status is 1 if any failed.

--onnx MODEL.onnx runs the network exported by
tools/deployment/export_onnx.py from this config in ONNX Runtime instead of
PyTorch (same pipeline, padding and post-processing; CHECKPOINT is then not
loaded: pass the one it was exported from, or -).

Like the config's test runs, the PyTorch model takes the fast path (BN
folded into the convs, channels_last weights; same predictions) unless the
config sets ``fast_inference = False`` or ``--no-fast`` is given.
"""
import argparse
import os
import os.path as osp
import sys
import warnings
from typing import Callable, List, Sequence, Tuple

import cv2
import numpy as np

from deeplabplus_mm.apis import Segmenter, list_media
from deeplabplus_mm.apis.video import open_video, segment_video
from deeplabplus_mm.datasets.voc_meta import save_palette_png
from deeplabplus_mm.visualization import overlay, write_image


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
    # Deprecated (the fast path is the default): still turn it on, even
    # where the config turned it off.
    parser.add_argument('--fuse-conv-bn', action='store_true',
                        help=argparse.SUPPRESS)
    parser.add_argument('--channels-last', action='store_true',
                        help=argparse.SUPPRESS)
    parser.add_argument('--frame-masks', action='store_true',
                        help='videos: also write a palette mask per frame')
    parser.add_argument('--onnx', metavar='MODEL.onnx',
                        help='run this exported model in ONNX Runtime '
                        '(CPU) instead of PyTorch')
    args = parser.parse_args()
    if args.no_fast and (args.fuse_conv_bn or args.channels_last):
        parser.error('--no-fast contradicts --fuse-conv-bn/--channels-last')
    if args.fuse_conv_bn or args.channels_last:
        warnings.warn('--fuse-conv-bn and --channels-last are deprecated: '
                      'the fast path is the default (--no-fast turns it '
                      'off)', FutureWarning)
    return args


Failure = Tuple[str, str]


def segment_images(segmenter: Callable[[str], np.ndarray],
                   images: Sequence[str], out_dir: str) -> List[Failure]:
    """Write ``<stem>.png`` (palette mask) and ``<stem>_overlay.jpg`` for
    each image under ``out_dir``, with a progress bar.

    Returns:
        list: ``(path, reason)`` of the images that failed.
    """
    from mmengine.utils import ProgressBar
    if not images:
        return []
    failed = []
    progress = ProgressBar(len(images))
    for path in images:
        stem = osp.splitext(osp.basename(path))[0]
        try:
            label = segmenter(path)
            image = cv2.imread(path, cv2.IMREAD_COLOR)
            save_palette_png(osp.join(out_dir, stem + '.png'), label,
                             segmenter.palette)
            write_image(osp.join(out_dir, stem + '_overlay.jpg'),
                        overlay(image, label, segmenter.palette))
        except Exception as e:  # report by name, go on with the others
            failed.append((path, f'{type(e).__name__}: {e}'))
        progress.update()
    print(f'\n{len(images) - len(failed)} of {len(images)} images '
          f'segmented -> {out_dir}', flush=True)
    return failed


def segment_videos(segmenter: Callable[[np.ndarray], np.ndarray],
                   videos: Sequence[str], out_dir: str,
                   frame_masks: bool = False) -> List[Failure]:
    """:func:`~deeplabplus_mm.apis.video.segment_video` for each video, with
    a progress bar over its frames.

    Returns:
        list: ``(path, reason)`` of the videos that failed.
    """
    failed = []
    for path in videos:
        try:
            capture, info = open_video(path)  # fails early, by name
            capture.release()
            print(f'{path}: {info.frame_count or "unknown number of"} frames'
                  f', {info.width}x{info.height}, {info.fps:g} fps',
                  flush=True)
            result = segment_video(segmenter, path, out_dir,
                                   segmenter.palette, frame_masks)
            masks = f' + {result.masks}' if result.masks else ''
            print(f'\n{path}: {result.frames} frames segmented -> '
                  f'{result.overlay}{masks}', flush=True)
        except Exception as e:
            failed.append((path, f'{type(e).__name__}: {e}'))
            print(flush=True)
    if videos:
        print(f'{len(videos) - len(failed)} of {len(videos)} videos '
              f'segmented -> {out_dir}', flush=True)
    return failed


def main():
    args = parse_args()
    images, videos, missing = list_media(args.inputs)
    if missing:
        sys.exit(f'error: {missing[0]}: no such file or folder')
    if not images and not videos:
        sys.exit('error: no images or videos found in ' +
                 ' '.join(args.inputs))
    try:
        if args.onnx:
            from deeplabplus_mm.apis import OnnxSegmenter
            segmenter = OnnxSegmenter(args.config, args.onnx, args.tta)
            print('model: ONNX Runtime ' + args.onnx)
        else:
            # None: as the config says (fast unless fast_inference=False)
            fast = False if args.no_fast else (
                True if args.fuse_conv_bn or args.channels_last else None)
            segmenter = Segmenter(args.config, args.checkpoint, args.device,
                                  args.tta, fuse_conv_bn=fast,
                                  channels_last=fast)
            done = [what for what, on in (
                ('BN folded into the convs', segmenter.fuse_conv_bn),
                ('channels_last', segmenter.channels_last)) if on]
            print('model: ' + (', '.join(done) if done
                               else 'plain (--no-fast)'))
    except (ImportError, OSError, ValueError) as e:
        sys.exit(f'error: {e}')
    os.makedirs(args.out_dir, exist_ok=True)
    failed = segment_images(segmenter, images, args.out_dir)
    failed += segment_videos(segmenter, videos, args.out_dir,
                             args.frame_masks)
    for path, why in failed:
        print(f'failed: {path}: {why}', file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == '__main__':
    main()
