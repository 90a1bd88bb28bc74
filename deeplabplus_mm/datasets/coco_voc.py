"""COCO relabelled with the 20 PASCAL VOC classes ("COCO-VOC").

DeepLab pre-trains on COCO images whose instance masks are mapped to VOC's
classes. :data:`VOC_COCO_CLASSES` is the one table of that mapping; the
offline conversion (``tools/dataset_converters/coco_voc.py``) uses it, and
:class:`COCOVOCDataset` reads its output.
"""
from typing import Dict, Optional

from mmseg.registry import DATASETS

from .utils import first_existing_dir
from .voc_layout import VOCLayoutDataset

# (VOC class, COCO category name, COCO category id), in VOC's label order
# 1..20. Every other COCO category is background (0).
VOC_COCO_CLASSES = (
    ('aeroplane', 'airplane', 5),
    ('bicycle', 'bicycle', 2),
    ('bird', 'bird', 16),
    ('boat', 'boat', 9),
    ('bottle', 'bottle', 44),
    ('bus', 'bus', 6),
    ('car', 'car', 3),
    ('cat', 'cat', 17),
    ('chair', 'chair', 62),
    ('cow', 'cow', 21),
    ('diningtable', 'dining table', 67),
    ('dog', 'dog', 18),
    ('horse', 'horse', 19),
    ('motorbike', 'motorcycle', 4),
    ('person', 'person', 1),
    ('pottedplant', 'potted plant', 64),
    ('sheep', 'sheep', 20),
    ('sofa', 'couch', 63),
    ('train', 'train', 7),
    ('tvmonitor', 'tv', 72),
)
# COCO category id -> VOC label.
COCO_TO_VOC: Dict[int, int] = {
    coco_id: voc_label
    for voc_label, (_, _, coco_id) in enumerate(VOC_COCO_CLASSES, start=1)
}


@DATASETS.register_module()
class COCOVOCDataset(VOCLayoutDataset):
    """COCO images with VOC-labelled masks made by
    ``tools/dataset_converters/coco_voc.py``.

    Layout under ``data_root`` (the COCO root), for a split such as
    ``train2017``; images may sit in either of COCO's two common folders::

        SPLIT/<stem>.jpg  or  images/SPLIT/<stem>.jpg
        voc_masks/SPLIT/<stem>.png   # VOC labels, 255 = crowd (ignore)
        voc_lists/SPLIT.txt          # kept stems, one per line

    Args:
        split: COCO split name; sets the defaults below.
        ann_file: Split list. Defaults to ``voc_lists/{split}.txt``.
        data_prefix: Image and mask folders. Defaults to the image folder
            found (``{split}`` first, then ``images/{split}``) and
            ``voc_masks/{split}``.
        **kwargs: See :class:`VOCLayoutDataset` and mmseg's
            ``BaseSegDataset``.
    """
    missing_hint = ('Make the masks and lists with '
                    'tools/dataset_converters/coco_voc.py; COCO images go in '
                    'SPLIT/ or images/SPLIT/ under data_root.')

    def __init__(self,
                 split: str = 'train2017',
                 ann_file: Optional[str] = None,
                 data_prefix: Optional[dict] = None,
                 **kwargs) -> None:
        self.split = split
        if ann_file is None:
            ann_file = f'voc_lists/{split}.txt'
        if data_prefix is None:
            candidates = (split, f'images/{split}')
            img_dir = first_existing_dir(kwargs.get('data_root'), candidates)
            data_prefix = dict(
                img_path=img_dir or candidates[0],
                seg_map_path=f'voc_masks/{split}')
        super().__init__(ann_file=ann_file, data_prefix=data_prefix, **kwargs)
