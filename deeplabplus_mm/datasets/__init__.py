"""Datasets, transforms and data preparation for VOC, VOC-aug and COCO-VOC.

Importing this package registers :class:`PascalVOCAugDataset`,
:class:`COCOVOCDataset` (mmseg ``DATASETS``) and :class:`LoadVOCAnnotations`
(mmseg ``TRANSFORMS``). The offline converters live in
:mod:`deeplabplus_mm.datasets.preparation` (imported on demand by
``tools/dataset_converters/``). VOC's facts (classes, palette, number of
classes, ignore index) and the palette-PNG writer are in
:mod:`deeplabplus_mm.datasets.voc_meta`. Synthetic data sets for the demo,
the tests and the benchmarks: :func:`make_synthetic_voc`,
:func:`make_synthetic_coco`.
"""
from .coco_voc import COCO_TO_VOC, VOC_COCO_CLASSES, COCOVOCDataset
from .synthetic import make_synthetic_voc
from .synthetic_coco import make_synthetic_coco
from .transforms import LoadVOCAnnotations
from .utils import DatasetError
from .voc_aug import PascalVOCAugDataset
from .voc_layout import VOCLayoutDataset

__all__ = [
    'COCO_TO_VOC', 'VOC_COCO_CLASSES', 'COCOVOCDataset', 'DatasetError',
    'LoadVOCAnnotations', 'PascalVOCAugDataset', 'VOCLayoutDataset',
    'make_synthetic_coco', 'make_synthetic_voc'
]
