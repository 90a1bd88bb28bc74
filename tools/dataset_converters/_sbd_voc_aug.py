"""Build PASCAL VOC-aug (VOC 2012 + SBD, 10,582 training images).

Inputs::

    VOC2012/JPEGImages/<name>.jpg
    VOC2012/SegmentationClass/<name>.png        # VOC masks, 255 = outlines
    VOC2012/ImageSets/Segmentation/{train,val}.txt
    benchmark_RELEASE/dataset/cls/<name>.mat    # SBD: GTcls.Segmentation
    benchmark_RELEASE/dataset/{train,val}.txt

Outputs (inside ``VOC2012/``)::

    SegmentationClassAug/<name>.png             # VOC palette PNGs
    ImageSets/Segmentation/trainaug.txt

Every SBD image gets a mask from its ``.mat``, except that VOC's own mask wins
wherever VOC has one (VOC val included): VOC's finer masks and their 255
outlines are kept as they are. ``trainaug.txt`` is
``(SBD train + SBD val + VOC train) - VOC val``, sorted: 10,582 names on the
real data, and never a VOC val image.

Masks already newer than their source are left alone, so a second run only
re-checks. Entry point: :func:`convert_voc_aug`; the command:
``tools/dataset_converters/voc_aug.py``.
"""
import os
import os.path as osp
from dataclasses import dataclass
from typing import List, NamedTuple, Sequence

import numpy as np
from scipy.io import loadmat

from deeplabplus_mm.datasets.utils import (DatasetError, check_label_values,
                                           find_missing_files, format_missing,
                                           image_size, is_up_to_date,
                                           read_label_map, read_split_names,
                                           run_parallel, write_text_atomic)
from deeplabplus_mm.datasets.voc_meta import (IGNORE_INDEX, NUM_CLASSES,
                                              save_palette_png)

VOC_AUG_SIZE = 10582


class MaskTask(NamedTuple):
    """One mask to write: ``source`` (an SBD ``.mat`` or a VOC ``.png``) to
    ``output``, checked against the size of ``image`` if it exists."""
    name: str
    source: str
    from_voc: bool
    output: str
    image: str


@dataclass
class VOCAugSummary:
    """What :func:`convert_voc_aug` did."""
    trainaug: int
    sbd_masks: int
    voc_masks: int
    written: int
    up_to_date: int
    mask_dir: str
    list_path: str

    def report(self) -> str:
        """Human-readable summary, with a warning if the list is not the
        10,582 images of the real data."""
        lines = [
            f'{self.sbd_masks + self.voc_masks} masks in {self.mask_dir} '
            f'({self.voc_masks} from VOC, {self.sbd_masks} from SBD): '
            f'{self.written} written, {self.up_to_date} up to date',
            f'trainaug: {self.trainaug} images -> {self.list_path}',
        ]
        if self.trainaug != VOC_AUG_SIZE:
            lines.append(
                f'WARNING: trainaug has {self.trainaug} images, not the '
                f'{VOC_AUG_SIZE} of VOC 2012 + SBD; check that both data '
                'sets are complete.')
        return '\n'.join(lines)


def read_sbd_mat(path: str) -> np.ndarray:
    """The ``GTcls.Segmentation`` label map of an SBD ``cls/*.mat`` file.

    Args:
        path: A MATLAB v5 file holding a struct ``GTcls`` with fields
            ``Segmentation`` (uint8 HxW labels 0..20), ``Boundaries`` and
            ``CategoriesPresent``.

    Returns:
        np.ndarray: ``(H, W)`` uint8 labels.

    Raises:
        DatasetError: The file is missing, unreadable or lacks the field.
    """
    if not osp.isfile(path):
        raise DatasetError(f'{path}: SBD .mat file not found')
    try:
        data = loadmat(path, struct_as_record=False, squeeze_me=True)
    except Exception as e:  # scipy raises ValueError, TypeError, MatReadError
        raise DatasetError(
            f'{path}: cannot read SBD .mat file ({type(e).__name__}: {e})'
        ) from e
    gt = data.get('GTcls')
    seg = getattr(gt, 'Segmentation', None)
    if seg is None:
        raise DatasetError(
            f'{path}: no GTcls.Segmentation in this .mat file (variables: '
            f'{sorted(k for k in data if not k.startswith("__"))})')
    seg = np.asarray(seg)
    if seg.ndim != 2 or not np.issubdtype(seg.dtype, np.integer):
        raise DatasetError(
            f'{path}: GTcls.Segmentation is {seg.dtype} of shape '
            f'{seg.shape}; expected a 2-D integer label map')
    if seg.size and (seg.min() < 0 or seg.max() > 255):
        raise DatasetError(f'{path}: GTcls.Segmentation values span '
                           f'{seg.min()}..{seg.max()}')
    return seg.astype(np.uint8)


def trainaug_names(sbd_train: Sequence[str], sbd_val: Sequence[str],
                   voc_train: Sequence[str],
                   voc_val: Sequence[str]) -> List[str]:
    """``(SBD train + SBD val + VOC train) - VOC val``, de-duplicated and
    sorted."""
    return sorted((set(sbd_train) | set(sbd_val) | set(voc_train)) -
                  set(voc_val))


def convert_mask(task: MaskTask) -> bool:
    """Write one VOC-aug mask (a worker of :func:`convert_voc_aug`).

    Returns:
        bool: ``task.from_voc``.

    Raises:
        DatasetError: The source is unreadable, holds labels other than
            0..20 and 255, or does not match its image's size.
    """
    if task.from_voc:
        label = read_label_map(task.source)
    else:
        label = read_sbd_mat(task.source)
    check_label_values(label, task.source, NUM_CLASSES, IGNORE_INDEX)
    if osp.isfile(task.image):
        size = image_size(task.image)
        if label.shape != size:
            raise DatasetError(
                f'{task.source}: mask is {label.shape[0]}x{label.shape[1]} '
                f'(HxW) but image {task.image} is {size[0]}x{size[1]}')
    save_palette_png(task.output, label)
    return task.from_voc


def _require(path: str, what: str, isdir: bool = False) -> str:
    if not (osp.isdir(path) if isdir else osp.isfile(path)):
        raise FileNotFoundError(f'{what} {path} not found')
    return path


def find_sbd_dataset_dir(sbd_root: str) -> str:
    """SBD's ``dataset/`` folder, given ``benchmark_RELEASE`` or the
    ``dataset`` folder itself."""
    for cand in (osp.join(sbd_root, 'dataset'), sbd_root):
        if osp.isdir(osp.join(cand, 'cls')):
            return cand
    raise FileNotFoundError(
        f'SBD folder {osp.join(sbd_root, "dataset", "cls")} not found '
        '(--sbd must be the unpacked benchmark_RELEASE folder)')


def convert_voc_aug(voc_root: str,
                    sbd_root: str,
                    nproc: int = 1) -> VOCAugSummary:
    """Write ``SegmentationClassAug/`` and ``trainaug.txt`` into VOC 2012.

    Args:
        voc_root: ``VOCdevkit/VOC2012``.
        sbd_root: SBD's ``benchmark_RELEASE`` (or its ``dataset`` folder).
        nproc: Worker processes.

    Returns:
        VOCAugSummary: Counts; ``report()`` prints them.

    Raises:
        FileNotFoundError: A folder, split list or listed file is missing.
        DatasetError: A source mask is unreadable or invalid.
    """
    img_dir = _require(
        osp.join(voc_root, 'JPEGImages'), 'VOC image folder', isdir=True)
    voc_seg_dir = _require(
        osp.join(voc_root, 'SegmentationClass'), 'VOC mask folder', isdir=True)
    split_dir = osp.join(voc_root, 'ImageSets', 'Segmentation')
    voc_train = read_split_names(
        _require(osp.join(split_dir, 'train.txt'), 'VOC split list'))
    voc_val = read_split_names(
        _require(osp.join(split_dir, 'val.txt'), 'VOC split list'))
    sbd_dir = find_sbd_dataset_dir(sbd_root)
    sbd_lists = [
        _require(osp.join(sbd_dir, f'{s}.txt'), 'SBD split list')
        for s in ('train', 'val')
    ]
    sbd_train, sbd_val = (read_split_names(p) for p in sbd_lists)

    voc_masks = {
        f[:-len('.png')]
        for f in os.listdir(voc_seg_dir)
        if f.endswith('.png') and not f.startswith('.') and '.tmp' not in f
    }
    _check_present([
        osp.join(voc_seg_dir, f'{n}.png')
        for n in sorted(set(voc_train) | set(voc_val))
    ], 'VOC ImageSets/Segmentation/{train,val}.txt')
    sbd_names = sorted(set(sbd_train) | set(sbd_val))
    mat_path = {n: osp.join(sbd_dir, 'cls', f'{n}.mat') for n in sbd_names}
    _check_present(list(mat_path.values()), ' and '.join(sbd_lists))
    names = trainaug_names(sbd_train, sbd_val, voc_train, voc_val)
    _check_present([osp.join(img_dir, f'{n}.jpg') for n in names],
                   'trainaug (SBD train/val + VOC train)')

    out_dir = osp.join(voc_root, 'SegmentationClassAug')
    os.makedirs(out_dir, exist_ok=True)
    tasks = []
    for name in sorted(voc_masks | set(sbd_names)):
        from_voc = name in voc_masks
        source = (
            osp.join(voc_seg_dir, f'{name}.png')
            if from_voc else mat_path[name])
        tasks.append(
            MaskTask(name, source, from_voc, osp.join(out_dir, f'{name}.png'),
                     osp.join(img_dir, f'{name}.jpg')))
    pending = [t for t in tasks if not is_up_to_date(t.output, [t.source])]
    run_parallel(convert_mask, pending, nproc)

    list_path = osp.join(split_dir, 'trainaug.txt')
    write_text_atomic(list_path, ''.join(f'{n}\n' for n in names))
    n_voc = sum(t.from_voc for t in tasks)
    return VOCAugSummary(
        trainaug=len(names),
        sbd_masks=len(tasks) - n_voc,
        voc_masks=n_voc,
        written=len(pending),
        up_to_date=len(tasks) - len(pending),
        mask_dir=out_dir,
        list_path=list_path)


def _check_present(paths: List[str], source: str) -> None:
    missing = find_missing_files(paths)
    if missing:
        raise FileNotFoundError(format_missing(missing, len(paths), source))
