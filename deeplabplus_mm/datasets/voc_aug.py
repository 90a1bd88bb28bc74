"""PASCAL VOC 2012 augmented with SBD's masks ("VOC-aug", 10,582 images)."""
from mmseg.registry import DATASETS

from .voc_layout import VOCLayoutDataset


@DATASETS.register_module()
class PascalVOCAugDataset(VOCLayoutDataset):
    """PASCAL VOC 2012 with the SBD-augmented training set.

    The 21 VOC classes and palette of mmseg's ``PascalVOCDataset``; ignore
    label 255 (VOC's object outlines) is kept as 255. Two layouts work:

    1. Built by our tool from VOC 2012 and SBD's ``benchmark_RELEASE``::

           python tools/dataset_converters/voc_aug.py \\
               --voc data/VOCdevkit/VOC2012 --sbd data/benchmark_RELEASE

       which writes ``SegmentationClassAug/*.png`` and
       ``ImageSets/Segmentation/trainaug.txt`` (the defaults here)::

           VOC2012/JPEGImages/<name>.jpg
           VOC2012/SegmentationClassAug/<name>.png
           VOC2012/ImageSets/Segmentation/trainaug.txt

    2. DrSleep's ready-made ``SegmentationClassAug`` folder (grayscale PNGs)
       unpacked into ``VOC2012/`` without SBD, with your own list of names
       (``trainaug.txt``) or DrSleep's ``train_aug.txt`` of
       ``/JPEGImages/x.jpg /SegmentationClassAug/x.png`` pairs: point
       ``ann_file`` at it, e.g.
       ``ann_file='ImageSets/Segmentation/train_aug.txt'``.

    The same class reads VOC's own splits, with the checks below, e.g. for
    validation: ``ann_file='ImageSets/Segmentation/val.txt',
    data_prefix=dict(img_path='JPEGImages',
    seg_map_path='SegmentationClass')``.

    At construction every listed image and label map must exist (one error
    lists the first few missing files).

    Args:
        ann_file: Split list relative to ``data_root``.
        data_prefix: Image and label map folders relative to ``data_root``.
        **kwargs: See :class:`VOCLayoutDataset` and mmseg's
            ``BaseSegDataset``.
    """
    missing_hint = ('Build SegmentationClassAug/ and trainaug.txt with '
                    'tools/dataset_converters/voc_aug.py, or point ann_file '
                    'at your own list (e.g. DrSleep\'s train_aug.txt).')

    def __init__(self,
                 ann_file: str = 'ImageSets/Segmentation/trainaug.txt',
                 data_prefix: dict = dict(
                     img_path='JPEGImages',
                     seg_map_path='SegmentationClassAug'),
                 **kwargs) -> None:
        super().__init__(ann_file=ann_file, data_prefix=data_prefix, **kwargs)
