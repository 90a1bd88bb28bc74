"""Offline data preparation behind ``tools/dataset_converters/``.

* :mod:`.sbd_voc_aug`: VOC 2012 + SBD -> ``SegmentationClassAug`` and
  ``trainaug.txt`` (:func:`convert_voc_aug`).
* :mod:`.coco_to_voc`: COCO instances -> VOC-labelled masks and lists
  (:func:`convert_coco_to_voc`).
"""
from .coco_to_voc import (COCOVOCSummary, ann_to_rle, convert_coco_to_voc,
                          rasterize)
from .sbd_voc_aug import (VOC_AUG_SIZE, VOCAugSummary, convert_voc_aug,
                          read_sbd_mat, trainaug_names)

__all__ = [
    'COCOVOCSummary', 'VOCAugSummary', 'VOC_AUG_SIZE', 'ann_to_rle',
    'convert_coco_to_voc', 'convert_voc_aug', 'rasterize', 'read_sbd_mat',
    'trainaug_names'
]
