"""A synthetic PASCAL-VOC-layout data set that looks like a segmentation task.

Used by ``make demo`` and the tests: no download, deterministic, seconds to
generate. Images have textured backgrounds and several object classes, each
with its own shape, colour family and texture, at many sizes, overlapping
(later objects occlude earlier ones). Masks are VOC palette PNGs with thin 255
"void" bands along every object outline, as VOC draws them. Image sizes vary
and are odd or even. The layout is VOC's, so VOC dataset classes read it::

    ROOT/JPEGImages/<name>.jpg
    ROOT/SegmentationClass/<name>.png
    ROOT/ImageSets/Segmentation/{train,val}.txt
"""
import os
import os.path as osp
from typing import Dict, Sequence, Tuple

import cv2
import numpy as np

# VOC_PALETTE is re-exported for code that imported it from here; new code
# takes VOC's facts and the writer from .voc_meta.
from .voc_meta import IGNORE_INDEX, VOC_PALETTE, save_palette_png  # noqa: F401

# VOC class index -> (shape, base BGR colour, texture). Distinct on purpose:
# the task is learnable, but only from shape, colour *and* texture together
# when objects are small, occluded or cut by the image border.
OBJECT_CLASSES: Dict[int, Tuple[str, Tuple[int, int, int], str]] = {
    1: ('triangle', (40, 60, 200), 'stripes'),  # aeroplane: red
    3: ('disc', (40, 190, 60), 'dots'),  # bird: green
    7: ('box', (200, 120, 40), 'checker'),  # car: blue
    8: ('ring', (50, 200, 220), 'plain'),  # cat: yellow
    12: ('star', (190, 60, 190), 'waves'),  # dog: magenta
    15: ('ellipse', (170, 170, 170), 'noise'),  # person: grey
}


def _texture(kind: str, h: int, w: int, rng: np.random.Generator):
    """A [h, w] float pattern in [-1, 1]."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    period = rng.uniform(5, 12)
    angle = rng.uniform(0, np.pi)
    u = x * np.cos(angle) + y * np.sin(angle)
    v = -x * np.sin(angle) + y * np.cos(angle)
    if kind == 'stripes':
        return np.sign(np.sin(2 * np.pi * u / period))
    if kind == 'checker':
        return np.sign(np.sin(np.pi * u / period) * np.sin(np.pi * v / period))
    if kind == 'dots':
        return 2 * (np.hypot((u % period) - period / 2,
                             (v % period) - period / 2) < period / 4) - 1.
    if kind == 'waves':
        return np.sin(2 * np.pi * (u + 3 * np.sin(v / period)) / period)
    if kind == 'noise':
        return np.clip(rng.standard_normal((h, w)).astype(np.float32), -1, 1)
    return np.zeros((h, w), np.float32)


def _background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth colour gradient + low-frequency blobs + fine grain, BGR."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.empty((h, w, 3), np.float32)
    base = rng.uniform(60, 190, size=3)
    grad = rng.uniform(-60, 60, size=(3, 2))
    for c in range(3):
        img[..., c] = base[c] + grad[c, 0] * y / h + grad[c, 1] * x / w
    for _ in range(4):
        fy, fx = rng.uniform(0.5, 3.0, size=2)
        phase = rng.uniform(0, 2 * np.pi)
        img += (rng.uniform(-25, 25, size=3) *
                np.sin(2 * np.pi * (fy * y / h + fx * x / w) + phase)[..., None])
    img += rng.normal(0, 6, size=(h, w, 1))
    return img


def _shape_mask(shape: str, h: int, w: int, cy: float, cx: float, r: float,
                rng: np.random.Generator) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    centre = (int(round(cx)), int(round(cy)))
    angle = rng.uniform(0, 2 * np.pi)
    if shape == 'disc':
        cv2.circle(mask, centre, int(r), 1, -1)
    elif shape == 'ring':
        cv2.circle(mask, centre, int(r), 1, -1)
        cv2.circle(mask, centre, max(1, int(r * 0.55)), 0, -1)
    elif shape == 'ellipse':
        axes = (int(r), max(1, int(r * rng.uniform(0.35, 0.6))))
        cv2.ellipse(mask, centre, axes, np.degrees(angle), 0, 360, 1, -1)
    else:
        corners = {'triangle': 3, 'box': 4, 'star': 10}[shape]
        t = angle + np.arange(corners) * 2 * np.pi / corners
        radius = np.full(corners, r, np.float32)
        if shape == 'star':
            radius[1::2] *= 0.45
        if shape == 'box':
            radius *= rng.uniform(0.8, 1.2, size=corners)
        pts = np.stack([cx + radius * np.cos(t), cy + radius * np.sin(t)], 1)
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    return mask.astype(bool)


def make_sample(rng: np.random.Generator, height: int, width: int,
                max_objects: int = 5, boundary: int = 1):
    """One (BGR uint8 image, uint8 label map) pair."""
    img = _background(height, width, rng)
    label = np.zeros((height, width), np.uint8)
    classes = list(OBJECT_CLASSES)
    short = min(height, width)
    for _ in range(int(rng.integers(1, max_objects + 1))):
        cls = classes[int(rng.integers(len(classes)))]
        shape, colour, texture = OBJECT_CLASSES[cls]
        r = short * rng.uniform(0.08, 0.35)  # small to large objects
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        mask = _shape_mask(shape, height, width, cy, cx, r, rng)
        if mask.sum() < 16:
            continue
        tone = np.array(colour, np.float32) + rng.uniform(-25, 25, size=3)
        pattern = _texture(texture, height, width, rng)[..., None]
        shade = 1 + 0.15 * np.sin(np.linspace(0, np.pi, width))[None, :, None]
        obj = tone * shade + 30 * pattern
        img[mask] = obj[mask]
        label[mask] = cls  # later objects occlude earlier ones
    if boundary:
        k = np.ones((2 * boundary + 1, ) * 2, np.uint8)
        edge = cv2.dilate(label, k) != cv2.erode(label, k)
        label[edge] = IGNORE_INDEX
    img += rng.normal(0, 4, size=img.shape)  # sensor noise after painting
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), label


def make_synthetic_voc(root: str,
                       num_train: int = 120,
                       num_val: int = 30,
                       size_range: Sequence[int] = (97, 161),
                       seed: int = 0,
                       max_objects: int = 5) -> Dict[str, int]:
    """Write a VOC-layout data set under ``root`` (idempotent).

    Args:
        root: Output folder (``VOCdevkit/VOC2012``-like).
        num_train: Images in ``train.txt``.
        num_val: Images in ``val.txt``.
        size_range: Inclusive range of image heights/widths (drawn per image,
            so sizes are odd and even, portrait and landscape).
        seed: Everything is a function of it.
        max_objects: Objects per image are drawn from 1..max_objects.

    Returns:
        dict: number of images per split.
    """
    dirs = {d: osp.join(root, d) for d in
            ('JPEGImages', 'SegmentationClass', 'ImageSets/Segmentation')}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)
    splits = {'train': num_train, 'val': num_val}
    offset = 0
    for split, count in splits.items():
        names = []
        for i in range(offset, offset + count):
            name = f'synth_{i:05d}'
            names.append(name)
            img_path = osp.join(dirs['JPEGImages'], name + '.jpg')
            seg_path = osp.join(dirs['SegmentationClass'], name + '.png')
            if osp.exists(img_path) and osp.exists(seg_path):
                continue
            rng = np.random.default_rng([seed, i])
            h, w = (int(v) for v in rng.integers(size_range[0],
                                                  size_range[1] + 1, size=2))
            img, label = make_sample(rng, h, w, max_objects)
            tmp = img_path + '.tmp.jpg'
            cv2.imwrite(tmp, img, [cv2.IMWRITE_JPEG_QUALITY, 92])
            os.replace(tmp, img_path)
            save_palette_png(seg_path, label)
        offset += count
        list_path = osp.join(dirs['ImageSets/Segmentation'], split + '.txt')
        with open(list_path + '.tmp', 'w') as f:
            f.write('\n'.join(names) + '\n')
        os.replace(list_path + '.tmp', list_path)
    return splits
