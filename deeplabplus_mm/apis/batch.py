"""``tools/infer.py``'s work: many images and videos, failures reported by
name and skipped, progress shown."""
import os.path as osp
from typing import Callable, List, Sequence, Tuple

import cv2
import numpy as np

from ..datasets.voc_meta import save_palette_png
from ..visualization import overlay, write_image
from .video import open_video, segment_video

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
