"""Datasets and transforms for VOC, VOC-aug and COCO-VOC.

Importing this package registers :class:`PascalVOCAugDataset`,
:class:`COCOVOCDataset` (mmseg ``DATASETS``) and :class:`LoadVOCAnnotations`
(mmseg ``TRANSFORMS``). The offline converters that prepare their data
are commands, ``tools/dataset_converters/``. VOC's facts (classes,
palette, number of classes, ignore index) and the palette-PNG writer are in
:mod:`deeplabplus_mm.datasets.voc_meta`. (The synthetic data sets of the
demo, the benchmarks and the tests: ``tools/fixtures/``.)
"""
from .coco_voc import COCO_TO_VOC, VOC_COCO_CLASSES, COCOVOCDataset
from .transforms import LoadVOCAnnotations
from .utils import DatasetError
from .voc_aug import PascalVOCAugDataset
from .voc_layout import VOCLayoutDataset

__all__ = [
    'COCO_TO_VOC', 'VOC_COCO_CLASSES', 'COCOVOCDataset', 'DatasetError',
    'LoadVOCAnnotations', 'PascalVOCAugDataset', 'VOCLayoutDataset'
]
