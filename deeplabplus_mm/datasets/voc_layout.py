"""Shared base of our VOC-labelled datasets (not registered itself)."""
import os.path as osp
from typing import List

from mmseg.datasets import BaseSegDataset

from .utils import find_missing_files, format_missing, read_split_names
from .voc_meta import VOC_METAINFO


class VOCLayoutDataset(BaseSegDataset):
    """PASCAL VOC classes, a split list of names, and a check at start-up
    that every listed image and label map exists.

    Subclasses set the default folders. Compared with mmseg's
    ``PascalVOCDataset`` it:

    * fails at construction with one :class:`FileNotFoundError` that lists
      the first few missing images / label maps, instead of hours later in a
      data loader worker;
    * reads split lists of plain names and DrSleep-style lists of
      ``/JPEGImages/x.jpg /SegmentationClassAug/x.png`` pairs
      (see :func:`~deeplabplus_mm.datasets.utils.read_split_names`).

    Args:
        ann_file: Split list, relative to ``data_root``.
        check_files: Check at start-up that the listed files exist (local
            files only; skipped when ``backend_args`` selects another file
            backend).
        has_labels: False for splits without label maps (e.g. VOC test):
            images only, for ``tools/test.py --out`` with
            ``test_evaluator.format_only=True``.
        img_suffix: Image file suffix.
        seg_map_suffix: Label map file suffix.
        **kwargs: Passed to mmseg's ``BaseSegDataset``.
    """
    METAINFO = VOC_METAINFO
    # Printed under the list of missing files: how to make them.
    missing_hint = ''

    def __init__(self,
                 ann_file: str,
                 check_files: bool = True,
                 has_labels: bool = True,
                 img_suffix: str = '.jpg',
                 seg_map_suffix: str = '.png',
                 **kwargs) -> None:
        self.check_files = check_files
        self.has_labels = has_labels
        super().__init__(
            ann_file=ann_file,
            img_suffix=img_suffix,
            seg_map_suffix=seg_map_suffix,
            **kwargs)

    def load_data_list(self) -> List[dict]:
        """Read the split list and check the files it names.

        Returns:
            list[dict]: One ``img_path`` / ``seg_map_path`` record per name.

        Raises:
            FileNotFoundError: The split list, or listed files, are missing.
        """
        if not self.ann_file:
            raise ValueError(f'{type(self).__name__} needs an ann_file '
                             '(split list)')
        if not osp.isfile(self.ann_file):
            raise FileNotFoundError(
                f'split list {self.ann_file} not found. {self.missing_hint}')
        img_dir = self.data_prefix.get('img_path') or ''
        seg_dir = (self.data_prefix.get('seg_map_path')
                   if self.has_labels else None)
        data_list = []
        for name in read_split_names(self.ann_file):
            info = dict(
                img_path=osp.join(img_dir, name + self.img_suffix),
                label_map=self.label_map,
                reduce_zero_label=self.reduce_zero_label,
                seg_fields=[])
            if seg_dir is not None:
                info['seg_map_path'] = osp.join(seg_dir,
                                                name + self.seg_map_suffix)
            data_list.append(info)
        if self.check_files and not self.backend_args:
            self._check_files(data_list)
        return data_list

    def _check_files(self, data_list: List[dict]) -> None:
        paths = [
            info[key] for info in data_list
            for key in ('img_path', 'seg_map_path') if key in info
        ]
        missing = find_missing_files(paths)
        if missing:
            raise FileNotFoundError(
                format_missing(missing, len(paths), self.ann_file,
                               self.missing_hint))
