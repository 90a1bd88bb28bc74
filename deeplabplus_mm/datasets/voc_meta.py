"""PASCAL VOC's facts, in one place: class names, palette, number of
classes, ignore index, and the palette-PNG writer.

Everything in the package that speaks VOC (our datasets, the offline
preparation tools, the synthetic demo data, the submission writer, the
pictures) takes them from here. The names and colours are those of mmseg's
``PascalVOCDataset`` (a test keeps them equal), so configs using mmseg's own
VOC dataset are recognised as VOC too.

This module imports only numpy and PIL, so the offline tools can use it
without a model stack.
"""
import os
from typing import Optional, Sequence

import numpy as np
from PIL import Image

# Label 0 is the background, 1..20 the object classes, in VOC's order.
VOC_CLASSES = ('background', 'aeroplane', 'bicycle', 'bird', 'boat',
               'bottle', 'bus', 'car', 'cat', 'chair', 'cow', 'diningtable',
               'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep',
               'sofa', 'train', 'tvmonitor')
NUM_CLASSES = len(VOC_CLASSES)  # 21
# VOC's colour map (RGB), one row per class; read-only.
VOC_PALETTE = np.array(
    [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128],
     [128, 0, 128], [0, 128, 128], [128, 128, 128], [64, 0, 0], [192, 0, 0],
     [64, 128, 0], [192, 128, 0], [64, 0, 128], [192, 0, 128],
     [64, 128, 128], [192, 128, 128], [0, 64, 0], [128, 64, 0], [0, 192, 0],
     [128, 192, 0], [0, 64, 128]],
    dtype=np.uint8)
VOC_PALETTE.setflags(write=False)
# The label of VOC's object outlines ("void"), ignored by losses and metrics.
IGNORE_INDEX = 255
# The colour VOC draws "void" in (RGB).
VOID_COLOR = (224, 224, 192)
# mmseg's ``METAINFO`` of a VOC-labelled dataset (palette as lists, as
# mmseg's ``PascalVOCDataset`` has it).
VOC_METAINFO = dict(classes=VOC_CLASSES, palette=VOC_PALETTE.tolist())


def palette_array(palette: Sequence[Sequence[int]] = VOC_PALETTE
                  ) -> np.ndarray:
    """A ``[256, 3]`` uint8 RGB lookup table from class colours.

    Args:
        palette: One RGB colour per class (at most 256); VOC's by default.

    Returns:
        np.ndarray: The class colours, then black; index
        :data:`IGNORE_INDEX` is :data:`VOID_COLOR`.
    """
    table = np.zeros((256, 3), np.uint8)
    table[:len(palette)] = np.asarray(palette, np.uint8)
    table[IGNORE_INDEX] = VOID_COLOR
    return table


def save_palette_png(path: str,
                     label: np.ndarray,
                     palette: Optional[Sequence[Sequence[int]]] = None
                     ) -> None:
    """Write a label map as a palette ("P") PNG, atomically (a temp file in
    the same folder, then renamed).

    Args:
        path: Output ``.png``.
        label: ``(H, W)`` integer labels in ``0..255``.
        palette: Class colours (RGB); VOC's by default. Index
            :data:`IGNORE_INDEX` is drawn in :data:`VOID_COLOR`.

    Raises:
        ValueError: ``label`` is not 2-D or holds values outside ``0..255``.
    """
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f'{path}: a label map must be 2-D (H, W), got '
                         f'shape {label.shape}')
    if label.size and (label.min() < 0 or label.max() > 255):
        raise ValueError(f'{path}: labels must be in 0..255 for a palette '
                         f'PNG, got {label.min()}..{label.max()}')
    img = Image.fromarray(label.astype(np.uint8), mode='P')
    img.putpalette(
        palette_array(VOC_PALETTE if palette is None else palette).reshape(
            -1).tolist())
    tmp = f'{path}.tmp.png'
    img.save(tmp)
    os.replace(tmp, path)
