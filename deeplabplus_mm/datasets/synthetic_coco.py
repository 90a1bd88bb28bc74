"""A synthetic COCO instances split, and COCO's mask encodings.

The COCO counterpart of :mod:`.synthetic`: what the COCO -> VOC conversion
reads (``annotations/instances_<split>.json`` and ``<split>/*.jpg``) without
a download. Used by ``tools/benchmarks/data.py``; the RLE encoders and the
json writer also by the tests' hand-made COCO trees.
"""
import json
import os
import os.path as osp
from typing import List

import cv2
import numpy as np

# COCO category ids VOC has, and a few it has not.
VOC_CATEGORY_IDS = [1, 2, 3, 4, 5, 6, 7, 9, 16, 17, 18, 19, 20, 21, 44, 62,
                    63, 64, 67, 72]
OTHER_CATEGORY_IDS = [8, 10, 13, 27, 28, 47, 51, 73, 84, 90]


def compressed_rle(mask: np.ndarray) -> dict:
    """COCO's compressed RLE of a boolean/0-1 mask (pycocotools)."""
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return dict(size=rle['size'], counts=rle['counts'].decode('ascii'))


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE: column-major runs, starting with zeros."""
    flat = mask.T.reshape(-1).astype(np.uint8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0] + counts
    return dict(size=list(mask.shape), counts=counts)


def save_coco_json(path: str, images: List[dict], annotations: List[dict],
                   categories: List[dict]) -> None:
    """Write an instances json (to a temporary file, then renamed)."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path + '.tmp', 'w') as f:
        json.dump(dict(images=images, annotations=annotations,
                       categories=categories), f)
    os.replace(path + '.tmp', path)


def _polygon(rng, h, w):
    """A random star-shaped polygon [x0, y0, x1, y1, ...] inside the image."""
    n = int(rng.integers(8, 61))
    cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h
    r = rng.uniform(0.05, 0.4) * min(h, w)
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = r * rng.uniform(0.5, 1.0, n)
    xs = np.clip(cx + radii * np.cos(angles), 0, w - 1)
    ys = np.clip(cy + radii * np.sin(angles), 0, h - 1)
    return np.stack([xs, ys], 1).round(2).reshape(-1).tolist()


def _rectangles(rng, h, w):
    """A mask of 1..3 random rectangles (a crowd region)."""
    mask = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        y, x = int(rng.integers(0, h - 40)), int(rng.integers(0, w - 40))
        mask[y:y + int(rng.integers(20, h // 2)),
             x:x + int(rng.integers(20, w // 2))] = 1
    return mask


def make_synthetic_coco(root: str, num_images: int,
                        split: str = 'train2017', seed: int = 0) -> int:
    """Write a COCO split under ``root`` (skipped when its json exists).

    Images of 480x640 (and a few 427x640, 640x480) with 3..12 COCO-like
    annotations each: star-shaped polygons of 8..60 vertices (a fifth in two
    parts), compressed and uncompressed RLE crowd regions, 70 % of VOC
    categories. ``categories`` is left empty (the conversion maps ids).

    Returns:
        int: The number of annotations (0 when the split existed).
    """
    ann_file = osp.join(root, 'annotations', f'instances_{split}.json')
    if osp.isfile(ann_file):
        return 0
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, split), exist_ok=True)
    images, anns = [], []
    sizes = [(480, 640)] * 8 + [(427, 640), (640, 480)]
    for i in range(1, num_images + 1):
        h, w = sizes[int(rng.integers(len(sizes)))]
        name = f'{i:012d}.jpg'
        img = np.full((h, w, 3), rng.integers(0, 256, 3), np.uint8)
        img = cv2.add(img, rng.integers(0, 30, (h, w, 3), dtype=np.uint8))
        cv2.imwrite(osp.join(root, split, name), img)
        images.append(dict(id=i, file_name=name, height=h, width=w))
        for _ in range(int(rng.integers(3, 13))):
            voc = rng.random() < 0.7
            cats = VOC_CATEGORY_IDS if voc else OTHER_CATEGORY_IDS
            cat = int(cats[int(rng.integers(len(cats)))])
            kind = rng.random()
            if kind < 0.85:
                parts = 2 if rng.random() < 0.2 else 1
                seg, crowd = [_polygon(rng, h, w) for _ in range(parts)], 0
            else:
                encode = compressed_rle if kind < 0.92 else uncompressed_rle
                seg, crowd = encode(_rectangles(rng, h, w)), 1
            anns.append(dict(id=len(anns) + 1, image_id=i, category_id=cat,
                             segmentation=seg, iscrowd=crowd, area=0.,
                             bbox=[0, 0, 1, 1]))
    save_coco_json(ann_file, images, anns, [])
    return len(anns)
