"""Relabel COCO instance annotations with the 20 PASCAL VOC classes.

Reads ``COCO_ROOT/annotations/instances_SPLIT.json`` and writes, under
``OUT`` (the COCO root by default)::

    OUT/voc_masks/SPLIT/<image stem>.png   # VOC palette PNGs
    OUT/voc_lists/SPLIT.txt                # kept stems, sorted

Each instance mask is decoded exactly as pycocotools decodes it (polygons,
uncompressed and compressed RLE; polygons with fewer than three points are
skipped, pycocotools cannot rasterise them). The COCO categories of
:data:`~deeplabplus_mm.datasets.coco_voc.COCO_TO_VOC` get their VOC label,
every other category is background 0; crowd regions of VOC categories are
255 (ignore), crowd regions of other categories 0. All annotations, crowd
ones included, are painted largest first (area = pixel count of the decoded
mask, ties by annotation id) so that smaller objects stay on top: a small
non-VOC object on a VOC one occludes it with 0. Images with fewer than
``min_pixels`` pixels of VOC classes 1..20 (255 not counted) are dropped
and get no mask.

The images (``COCO_ROOT/SPLIT/`` or ``COCO_ROOT/images/SPLIT/``) are only
checked: they must exist and match the annotation's height and width.
Masks newer than the annotation file and their image are re-read, not
re-made. Entry point: :func:`convert_coco_to_voc`; the command:
``tools/dataset_converters/coco_voc.py``.
"""
import json
import os
import os.path as osp
from dataclasses import dataclass, field
from functools import partial
from typing import Iterable, List, NamedTuple, Optional, Tuple

import numpy as np
from pycocotools import mask as mask_utils

from deeplabplus_mm.datasets.coco_voc import COCO_TO_VOC, VOC_COCO_CLASSES
from deeplabplus_mm.datasets.utils import (DatasetError, find_missing_files,
                                           first_existing_dir, format_missing,
                                           image_size, is_up_to_date,
                                           read_label_map, run_parallel,
                                           write_text_atomic)
from deeplabplus_mm.datasets.voc_meta import (IGNORE_INDEX, NUM_CLASSES,
                                              VOC_CLASSES, save_palette_png)


class Instance(NamedTuple):
    """The fields of one COCO annotation that the masks depend on."""
    id: int
    category_id: int
    iscrowd: bool
    segmentation: object


class ImageTask(NamedTuple):
    """One COCO image to relabel (a worker's input)."""
    stem: str
    image: str
    height: int
    width: int
    instances: Tuple[Instance, ...]
    output: str
    ann_file: str


@dataclass
class COCOVOCSummary:
    """What :func:`convert_coco_to_voc` did.

    ``class_pixels[c]`` / ``class_images[c]``: pixels of VOC label ``c`` and
    images containing it, over the kept images.
    """
    split: str
    min_pixels: int
    kept: List[str]
    dropped: List[str]
    written: int
    up_to_date: int
    mask_dir: str
    list_path: str
    class_pixels: np.ndarray = field(repr=False)
    class_images: np.ndarray = field(repr=False)
    ignore_pixels: int = 0

    def report(self) -> str:
        """Counts and the class histogram, as printed by the tool."""
        lines = [
            f'COCO {self.split} -> VOC: kept {len(self.kept)} images, '
            f'dropped {len(self.dropped)} (fewer than {self.min_pixels} '
            f'pixels of VOC classes)',
            f'masks: {self.mask_dir} ({self.written} written, '
            f'{self.up_to_date} up to date); list: {self.list_path}',
            'class histogram over kept images (images containing the class, '
            'pixels):',
        ]
        for label, name in enumerate(VOC_CLASSES):
            lines.append(f'  {label:2d} {name:<12} '
                         f'{int(self.class_images[label]):>8} images '
                         f'{int(self.class_pixels[label]):>14} pixels')
        lines.append(f'  {IGNORE_INDEX} ignore (crowd)   '
                     f'{self.ignore_pixels:>14} pixels')
        return '\n'.join(lines)


def ann_to_rle(segmentation, height: int, width: int, where: str = ''):
    """An annotation's segmentation as a compressed RLE, as pycocotools'
    ``COCO.annToRLE`` makes it; ``None`` for an empty polygon list.

    Raises:
        DatasetError: Unknown format or an RLE of another size.
    """
    if isinstance(segmentation, list):
        polygons = [p for p in segmentation if len(p) >= 6]
        if not polygons:
            return None
        return mask_utils.merge(
            mask_utils.frPyObjects(polygons, height, width))
    is_rle = isinstance(segmentation, dict) and all(
        k in segmentation for k in ('counts', 'size'))
    if is_rle:
        if list(segmentation['size']) != [height, width]:
            raise DatasetError(
                f'{where}: RLE size {list(segmentation["size"])} differs '
                f'from the image size [{height}, {width}]')
        if isinstance(segmentation['counts'], list):
            return mask_utils.frPyObjects(segmentation, height, width)
        return segmentation
    raise DatasetError(f'{where}: unknown segmentation format '
                       f'{type(segmentation).__name__}')


def rasterize(instances: Iterable[Instance],
              height: int,
              width: int,
              where: str = '') -> np.ndarray:
    """Paint instances into a VOC label map, largest first.

    Args:
        instances: Annotations of one image.
        height: Image height.
        width: Image width.
        where: Prefix of error messages (file, image).

    Returns:
        np.ndarray: ``(height, width)`` uint8 VOC labels (255 = ignore).
    """
    layers = []
    for inst in instances:
        rle = ann_to_rle(inst.segmentation, height, width,
                         f'{where} annotation {inst.id}')
        if rle is None:
            continue
        # RLE area == pixel count of the decoded mask.
        area = int(mask_utils.area(rle))
        if area:
            voc = COCO_TO_VOC.get(inst.category_id, 0)
            value = (IGNORE_INDEX if voc else 0) if inst.iscrowd else voc
            layers.append((-area, inst.id, value, rle))
    label = np.zeros((height, width), np.uint8)
    for _, _, value, rle in sorted(layers, key=lambda x: x[:2]):
        label[mask_utils.decode(rle).astype(bool)] = value
    return label


def voc_pixels(hist: np.ndarray) -> int:
    """Pixels of VOC classes 1..20 in a 256-bin label histogram."""
    return int(hist[1:NUM_CLASSES].sum())


def convert_image(task: ImageTask,
                  min_pixels: int) -> Tuple[str, Optional[np.ndarray], str]:
    """Relabel one image (a worker of :func:`convert_coco_to_voc`).

    Returns:
        tuple: ``(stem, histogram or None if dropped, status)`` with status
        ``'written'``, ``'up-to-date'`` or ``'dropped'``.
    """
    label = None
    if is_up_to_date(task.output, [task.ann_file, task.image]):
        try:
            label = read_label_map(task.output)
        except DatasetError:
            label = None
        if label is not None and label.shape != (task.height, task.width):
            label = None
    status = 'up-to-date'
    if label is None:
        size = image_size(task.image)
        if size != (task.height, task.width):
            raise DatasetError(
                f'{task.image}: image is {size[0]}x{size[1]} (HxW) but '
                f'{task.ann_file} says {task.height}x{task.width}')
        label = rasterize(task.instances, task.height, task.width,
                          f'{task.ann_file}: image {task.stem}')
        status = 'written'
    hist = np.bincount(label.ravel(), minlength=256)
    if voc_pixels(hist) < min_pixels:
        _remove_stale(task.output)
        return task.stem, None, 'dropped'
    if status == 'written':
        save_palette_png(task.output, label)
    return task.stem, hist, status


def _remove_stale(path: str) -> None:
    """Remove a mask that a run with another threshold left behind."""
    if osp.isfile(path):
        os.remove(path)


def load_instances_json(ann_file: str) -> dict:
    """Load and sanity-check a COCO instances json.

    Raises:
        FileNotFoundError: The file is missing.
        DatasetError: Not json, lacks images/annotations, or a VOC-mapped
            category id carries another COCO name.
    """
    if not osp.isfile(ann_file):
        raise FileNotFoundError(f'COCO annotation file {ann_file} not found')
    try:
        with open(ann_file) as f:
            coco = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise DatasetError(f'{ann_file}: not a valid json file ({e})') from e
    if not (isinstance(coco, dict) and 'images' in coco
            and 'annotations' in coco):
        raise DatasetError(f'{ann_file}: expected a COCO instances json '
                           'with "images" and "annotations"')
    expected = {coco_id: name for _, name, coco_id in VOC_COCO_CLASSES}
    for cat in coco.get('categories', []):
        want = expected.get(cat.get('id'))
        if want is not None and cat.get('name') != want:
            raise DatasetError(
                f'{ann_file}: category id {cat["id"]} is '
                f'{cat.get("name")!r}, expected {want!r}; the VOC class map '
                'assumes COCO 2014/2017 category ids')
    return coco


def plan_tasks(coco: dict, ann_file: str, image_dir: str,
               mask_dir: str) -> List[ImageTask]:
    """One :class:`ImageTask` per image of the json, sorted by stem."""
    by_image = {}
    where = ann_file
    try:
        for img in coco['images']:
            where = f'{ann_file}: image {img.get("id")}'
            by_image[img['id']] = (img, [])
        for ann in coco['annotations']:
            where = f'{ann_file}: annotation {ann.get("id")}'
            if ann.get('image_id') not in by_image:
                raise DatasetError(f'{where}: image_id {ann.get("image_id")}'
                                   ' is not among the images')
            by_image[ann['image_id']][1].append(
                Instance(ann['id'], ann['category_id'],
                         bool(ann.get('iscrowd', 0)), ann['segmentation']))
    except (KeyError, TypeError) as e:
        raise DatasetError(f'{where}: missing or bad field {e}') from e
    tasks = []
    for img, instances in by_image.values():
        stem = osp.splitext(img['file_name'])[0]
        tasks.append(
            ImageTask(stem, osp.join(image_dir, img['file_name']),
                      int(img['height']), int(img['width']), tuple(instances),
                      osp.join(mask_dir, f'{stem}.png'), ann_file))
    tasks.sort(key=lambda t: t.stem)
    stems = [t.stem for t in tasks]
    if len(set(stems)) != len(stems):
        raise DatasetError(f'{ann_file}: several images share a file stem')
    return tasks


def has_voc_object(task: ImageTask) -> bool:
    """Whether any non-crowd annotation of the image has a VOC class."""
    return any(not inst.iscrowd and inst.category_id in COCO_TO_VOC
               for inst in task.instances)


def find_image_dir(coco_root: str, split: str) -> str:
    """``COCO_ROOT/SPLIT`` or ``COCO_ROOT/images/SPLIT``, whichever exists.

    Raises:
        FileNotFoundError: Neither exists.
    """
    candidates = (split, osp.join('images', split))
    found = first_existing_dir(coco_root, candidates)
    if found is None:
        raise FileNotFoundError(
            f'COCO image folder not found: tried '
            f'{" and ".join(osp.join(coco_root, c) for c in candidates)}')
    return osp.join(coco_root, found)


def convert_coco_to_voc(coco_root: str,
                        split: str,
                        out_root: Optional[str] = None,
                        min_pixels: int = 1000,
                        nproc: int = 1) -> COCOVOCSummary:
    """Write VOC-labelled masks and the list of kept images for a split.

    Args:
        coco_root: Holds ``annotations/instances_{split}.json`` and the
            images.
        split: E.g. ``train2017``.
        out_root: Where ``voc_masks/`` and ``voc_lists/`` go; defaults to
            ``coco_root``.
        min_pixels: Drop images with fewer VOC-class pixels than this.
        nproc: Worker processes.

    Returns:
        COCOVOCSummary: Kept / dropped stems and the class histogram.

    Raises:
        FileNotFoundError: The json, image folder or listed images are
            missing.
        DatasetError: Bad json content or an image of the wrong size.
    """
    if min_pixels < 0:
        raise ValueError(f'min_pixels must be >= 0, got {min_pixels}')
    out_root = coco_root if out_root is None else out_root
    ann_file = osp.join(coco_root, 'annotations', f'instances_{split}.json')
    coco = load_instances_json(ann_file)
    image_dir = find_image_dir(coco_root, split)
    mask_dir = osp.join(out_root, 'voc_masks', split)
    tasks = plan_tasks(coco, ann_file, image_dir, mask_dir)
    del coco
    missing = find_missing_files([t.image for t in tasks])
    if missing:
        raise FileNotFoundError(format_missing(missing, len(tasks), ann_file))

    os.makedirs(mask_dir, exist_ok=True)
    list_dir = osp.join(out_root, 'voc_lists')
    os.makedirs(list_dir, exist_ok=True)
    if min_pixels > 0:
        # Without a non-crowd VOC object an image has 0 VOC pixels.
        todo = [t for t in tasks if has_voc_object(t)]
        for t in tasks:
            if not has_voc_object(t):
                _remove_stale(t.output)
    else:
        todo = tasks
    results = run_parallel(
        partial(convert_image, min_pixels=min_pixels), todo, nproc)

    kept = [stem for stem, hist, _ in results if hist is not None]
    kept_set = set(kept)
    hists = [hist for _, hist, _ in results if hist is not None]
    hist_sum = np.sum(hists, axis=0) if hists else np.zeros(256, np.int64)
    class_images = (
        np.count_nonzero(hists, axis=0) if hists else np.zeros(256, np.int64))
    list_path = osp.join(list_dir, f'{split}.txt')
    write_text_atomic(list_path, ''.join(f'{s}\n' for s in sorted(kept)))
    return COCOVOCSummary(
        split=split,
        min_pixels=min_pixels,
        kept=sorted(kept),
        dropped=[t.stem for t in tasks if t.stem not in kept_set],
        written=sum(status == 'written' for _, h, status in results
                    if h is not None),
        up_to_date=sum(status == 'up-to-date' for _, _, status in results),
        mask_dir=mask_dir,
        list_path=list_path,
        class_pixels=hist_sum[:NUM_CLASSES],
        class_images=class_images[:NUM_CLASSES],
        ignore_pixels=int(hist_sum[IGNORE_INDEX]))
