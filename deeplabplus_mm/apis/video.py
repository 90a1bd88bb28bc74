"""Segment videos frame by frame, streaming (one frame in memory at a time).

Any file OpenCV's ``VideoCapture`` decodes is accepted (mp4, avi, mkv, mov,
webm, animated gif, ...). The overlay is written as MPEG-4 Part 2
(``mp4v`` in ``.mp4``, which every OpenCV build can encode) at the input's
frame rate, to a temp file renamed at the end; per-frame palette masks go to
a temp folder renamed at the end too, so an interrupted or failed run leaves
nothing half-written.
"""
import os
import os.path as osp
import shutil
from typing import Callable, Iterator, NamedTuple, Optional

import cv2
import numpy as np

from ..datasets.voc_meta import save_palette_png
from ..visualization import overlay

__all__ = [
    'IMAGE_EXTS', 'VIDEO_EXTS', 'VideoInfo', 'VideoResult', 'list_media',
    'open_video', 'iter_frames', 'segment_video'
]

VIDEO_EXTS = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg',
              '.mpeg', '.wmv', '.flv', '.gif', '.ts', '.3gp')
DEFAULT_FPS = 25.0


class VideoInfo(NamedTuple):
    frame_count: int  # as the container reports it (0 when unknown)
    fps: float
    width: int
    height: int


class VideoResult(NamedTuple):
    frames: int
    overlay: str
    masks: Optional[str]


def open_video(path: str):
    """``(cv2.VideoCapture, VideoInfo)``.

    Raises:
        FileNotFoundError: No such file.
        ValueError: OpenCV cannot decode it as a video.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path}: no such file')
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        capture.release()
        raise ValueError(f'{path}: OpenCV cannot decode this file as a '
                         'video')
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0)
    if not np.isfinite(fps) or fps <= 0 or fps > 1000:
        fps = DEFAULT_FPS
    info = VideoInfo(
        max(count, 0), fps, int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
        int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    return capture, info


def iter_frames(capture) -> Iterator[np.ndarray]:
    """Decoded BGR frames, one at a time; releases ``capture`` at the end."""
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield frame
    finally:
        capture.release()


def segment_video(segment: Callable[[np.ndarray], np.ndarray],
                  video: str,
                  out_dir: str,
                  palette,
                  frame_masks: bool = False,
                  progress: bool = True) -> VideoResult:
    """Segment every frame of ``video``.

    Writes ``<out_dir>/<stem>_overlay.mp4`` (class colours blended over the
    frames) and, with ``frame_masks``, ``<out_dir>/<stem>_masks/
    <frame index, 6 digits>.png`` palette masks (frame 0 is
    ``000000.png``).

    Args:
        segment: BGR frame -> label map (a :class:`Segmenter` or
            :class:`OnnxSegmenter`).
        video: The input file.
        out_dir: Output folder (created).
        palette: Class colours (RGB) for masks and overlay.
        frame_masks: Also write one palette mask per frame.
        progress: Show a progress bar over the frames (the container's
            frame count).

    Returns:
        VideoResult: Frames segmented and the paths written.

    Raises:
        ValueError: The file cannot be decoded or holds no frame.
        OSError: The overlay cannot be written.
    """
    from mmengine.utils import ProgressBar
    capture, info = open_video(video)
    os.makedirs(out_dir, exist_ok=True)
    stem = osp.splitext(osp.basename(video))[0]
    overlay_path = osp.join(out_dir, f'{stem}_overlay.mp4')
    masks_dir = osp.join(out_dir, f'{stem}_masks') if frame_masks else None
    tmp_video = osp.join(out_dir, f'.{stem}_overlay.tmp.mp4')
    tmp_masks = osp.join(out_dir, f'.{stem}_masks.tmp') if masks_dir else None
    writer = None
    frames = 0
    try:
        if tmp_masks:
            shutil.rmtree(tmp_masks, ignore_errors=True)
            os.makedirs(tmp_masks)
        bar = ProgressBar(info.frame_count) if progress else None
        for frame in iter_frames(capture):
            if writer is None:
                h, w = frame.shape[:2]
                writer = cv2.VideoWriter(tmp_video,
                                         cv2.VideoWriter_fourcc(*'mp4v'),
                                         info.fps, (w, h))
                if not writer.isOpened():
                    raise OSError(f'{overlay_path}: OpenCV cannot write an '
                                  'mp4v video there')
            label = segment(frame)
            writer.write(overlay(frame, label, palette))
            if tmp_masks:
                save_palette_png(osp.join(tmp_masks, f'{frames:06d}.png'),
                                 label, palette)
            frames += 1
            if bar is not None:
                bar.update()
        if frames == 0:
            raise ValueError(f'{video}: no frame could be decoded')
        writer.release()
        writer = None
        os.replace(tmp_video, overlay_path)
        if tmp_masks:
            if osp.isdir(masks_dir):
                shutil.rmtree(masks_dir)
            os.replace(tmp_masks, masks_dir)
    finally:
        capture.release()
        if writer is not None:
            writer.release()
        if osp.exists(tmp_video):
            os.remove(tmp_video)
        if tmp_masks and osp.isdir(tmp_masks):
            shutil.rmtree(tmp_masks, ignore_errors=True)
    return VideoResult(frames, overlay_path, masks_dir)


IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def list_media(inputs):
    """Images and videos named by ``inputs`` (files and folders).

    Folders are searched recursively: files with an image extension
    (:data:`IMAGE_EXTS`) are images, with a video extension
    (:data:`VIDEO_EXTS`) videos. A file named directly is an image when its
    extension is an image's, else a video (whatever OpenCV decodes).

    Returns:
        tuple: ``(images, videos, missing)``: lists of paths, ``missing``
        the inputs that are neither file nor folder.
    """
    images, videos, missing = [], [], []
    for item in inputs:
        if osp.isdir(item):
            for root, dirs, files in os.walk(item):
                dirs.sort()
                for name in sorted(files):
                    ext = osp.splitext(name)[1].lower()
                    if ext in IMAGE_EXTS:
                        images.append(osp.join(root, name))
                    elif ext in VIDEO_EXTS:
                        videos.append(osp.join(root, name))
        elif osp.isfile(item):
            is_image = osp.splitext(item)[1].lower() in IMAGE_EXTS
            (images if is_image else videos).append(item)
        else:
            missing.append(item)
    return images, videos, missing
