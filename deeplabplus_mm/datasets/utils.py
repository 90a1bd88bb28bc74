"""Checks and small file helpers shared by our datasets, transforms and
the dataset converters (``tools/dataset_converters/``).

Everything here is a pure function of its arguments (plus the files it is
told to read or write) and raises an error that names the offending file:

* :func:`decode_label_map` / :func:`read_label_map`: a label PNG (palette or
  grayscale) to an ``(H, W)`` uint8 array; colour, truncated or otherwise
  unreadable files are rejected.
* :func:`check_label_values`: labels must be class indices or the ignore
  index (255 stays 255, it is never clamped to background).
* :func:`read_split_names`: a split list of image names; also reads
  DrSleep-style lists of ``/JPEGImages/x.jpg /SegmentationClassAug/x.png``
  pairs.
* :func:`find_missing_files` / :func:`format_missing`: which listed files do
  not exist, as a readable message.
* :func:`is_up_to_date`, :func:`write_text_atomic`, :func:`image_size` and
  :func:`run_parallel`: idempotent, atomic, parallel work for the dataset
  converters.
"""
import io
import os
import os.path as osp
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.utils import track_parallel_progress, track_progress
from PIL import Image

from .voc_meta import IGNORE_INDEX

# PIL modes that hold one label per pixel. Palette PNGs (VOC, our tools) are
# read as palette indices, never as colours.
_LABEL_MODES = ('P', 'L', 'I', 'I;16', 'I;16B', 'I;16L')
_IMAGE_EXTS = ('.jpg', '.jpeg', '.png')


class DatasetError(ValueError):
    """A data file is missing, unreadable or holds invalid content."""


def decode_label_map(data: bytes, path: str) -> np.ndarray:
    """Decode the bytes of a label PNG into an ``(H, W)`` uint8 label map.

    Palette PNGs give their palette indices, grayscale PNGs their values;
    both are what VOC and SBD-derived masks (ours or DrSleep's) use.

    Args:
        data: The file's bytes.
        path: The file's path, for error messages only.

    Returns:
        np.ndarray: ``(H, W)`` uint8 labels.

    Raises:
        DatasetError: The file is not a decodable image (empty, truncated,
            corrupt), is a colour image, or holds values above 255.
    """
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            mode = img.mode
            label = np.array(img)
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError...
        raise DatasetError(
            f'{path}: cannot decode label map ({type(e).__name__}: {e}); '
            'the file is truncated or corrupt') from e
    if mode not in _LABEL_MODES or label.ndim != 2:
        raise DatasetError(
            f'{path}: label map has image mode {mode!r} '
            f'(shape {label.shape}); expected a single-channel label PNG '
            '(palette "P" or grayscale "L") holding class indices, not a '
            'colour rendering of the labels')
    if label.dtype != np.uint8:
        if label.size and (label.min() < 0 or label.max() > 255):
            raise DatasetError(
                f'{path}: label values span {label.min()}..{label.max()}, '
                'outside the uint8 range of class indices')
        label = label.astype(np.uint8)
    return label


def read_label_map(path: str) -> np.ndarray:
    """Read a label PNG from disk; see :func:`decode_label_map`.

    Raises:
        DatasetError: The file is missing or invalid.
    """
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as e:
        raise DatasetError(f'{path}: cannot read label map ({e})') from e
    return decode_label_map(data, path)


def check_label_values(label: np.ndarray,
                       path: str,
                       num_classes: int,
                       ignore_index: int = IGNORE_INDEX) -> None:
    """Check that every label is a class index or the ignore index.

    Args:
        label: uint8 label map.
        path: File it came from, for the error message.
        num_classes: Valid labels are ``0 .. num_classes - 1``.
        ignore_index: The one other valid value.

    Raises:
        DatasetError: Naming the file and the offending values.
    """
    counts = np.bincount(label.ravel(), minlength=256)
    valid = np.zeros(len(counts), bool)
    valid[:num_classes] = True
    valid[ignore_index] = True
    bad = np.flatnonzero(counts * ~valid)
    if len(bad):
        shown = ', '.join(f'{v} ({counts[v]} px)' for v in bad[:8])
        more = f' and {len(bad) - 8} more' if len(bad) > 8 else ''
        raise DatasetError(
            f'{path}: label values {shown}{more} are neither classes '
            f'0..{num_classes - 1} nor the ignore index {ignore_index}')


def read_split_names(path: str) -> List[str]:
    """Read a split list: one image name per line.

    Blank lines are skipped. Lines with whitespace-separated paths (DrSleep's
    ``train_aug.txt``: ``/JPEGImages/x.jpg /SegmentationClassAug/x.png``)
    or a single image path give the stem of their first path, so such lists
    work unchanged.

    Raises:
        FileNotFoundError: The list does not exist.
        DatasetError: The list holds no names.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'split list {path} not found')
    names = []
    with open(path) as f:
        for line in f:
            fields = line.split()
            if not fields:
                continue
            first = fields[0]
            stem, ext = osp.splitext(osp.basename(first))
            if len(fields) > 1 or ext.lower() in _IMAGE_EXTS:
                first = stem
            names.append(first)
    if not names:
        raise DatasetError(f'{path}: split list is empty')
    return names


def find_missing_files(paths: Iterable[str]) -> List[str]:
    """The paths, in order, that are not existing files."""
    return [p for p in paths if not osp.isfile(p)]


def format_missing(missing: Sequence[str],
                   total: int,
                   source: str,
                   hint: str = '',
                   shown: int = 5) -> str:
    """A message listing the first few missing files."""
    lines = [
        f'{len(missing)} of {total} files listed in {source} are '
        f'missing, e.g.:'
    ]
    lines += [f'  {p}' for p in missing[:shown]]
    if len(missing) > shown:
        lines.append(f'  ... and {len(missing) - shown} more')
    if hint:
        lines.append(hint)
    return '\n'.join(lines)


def is_up_to_date(output: str, inputs: Sequence[str]) -> bool:
    """Whether ``output`` exists and is at least as new as all ``inputs``."""
    try:
        out_mtime = os.stat(output).st_mtime_ns
    except FileNotFoundError:
        return False
    return all(os.stat(p).st_mtime_ns <= out_mtime for p in inputs)


def write_text_atomic(path: str, text: str) -> bool:
    """Write ``text`` to ``path`` through a temporary file in the same folder.

    An unchanged file is left alone (its mtime too).

    Returns:
        bool: Whether the file was (re)written.
    """
    if osp.isfile(path):
        with open(path) as f:
            if f.read() == text:
                return False
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'w') as f:
        f.write(text)
    os.replace(tmp, path)
    return True


def image_size(path: str) -> Tuple[int, int]:
    """``(height, width)`` of an image file, from its header only.

    Raises:
        DatasetError: The file is missing or not an image.
    """
    try:
        with Image.open(path) as img:
            width, height = img.size
    except Exception as e:
        raise DatasetError(
            f'{path}: cannot read image header ({type(e).__name__}: {e})'
        ) from e
    return height, width


def first_existing_dir(root: Optional[str],
                       candidates: Sequence[str]) -> Optional[str]:
    """The first of ``candidates`` (relative to ``root``) that is a folder."""
    for cand in candidates:
        if osp.isdir(osp.join(root or '', cand)):
            return cand
    return None


def run_parallel(func: Callable, tasks: Sequence, nproc: int = 1) -> list:
    """``[func(t) for t in tasks]`` with a progress bar, on ``nproc``
    processes when ``nproc > 1`` (mmengine's progress trackers)."""
    if not tasks:
        return []
    if nproc > 1:
        return track_parallel_progress(
            func, list(tasks), nproc=min(nproc, len(tasks)), chunksize=4)
    return track_progress(func, list(tasks))
