"""Load a VOC-style label map and check it before it reaches the model."""
from typing import Optional

import mmengine.fileio as fileio
from mmseg.datasets.transforms import LoadAnnotations
from mmseg.registry import TRANSFORMS

from ..utils import DatasetError, check_label_values, decode_label_map
from ..voc_meta import IGNORE_INDEX, NUM_CLASSES


@TRANSFORMS.register_module()
class LoadVOCAnnotations(LoadAnnotations):
    """mmseg's ``LoadAnnotations`` that validates what it loads.

    Each label map must be a single-channel PNG (palette or grayscale) that
    decodes completely, has the size of its image, and holds only class
    indices ``0 .. num_classes - 1`` and ``ignore_index``; otherwise a
    :class:`~deeplabplus_mm.datasets.utils.DatasetError` names the file.
    The ignore index is kept as is (VOC's 255 outlines stay 255).
    ``reduce_zero_label`` and ``label_map`` (custom ``classes``) are applied
    after the checks, as mmseg's ``LoadAnnotations`` applies them.

    Put it after ``LoadImageFromFile`` so that the size check can compare
    with the image (``ori_shape``; resizes in between are fine). Results
    without ``seg_map_path`` (mmseg's inferencer, which only drops
    transforms named ``LoadAnnotations``) pass through unchanged.

    Required Keys:

    - seg_map_path (str), optional: without it nothing is loaded
    - ori_shape (tuple), optional: the image size to compare with
    - reduce_zero_label (bool), label_map (dict): from the dataset

    Added Keys:

    - gt_seg_map (np.uint8)
    - seg_fields (list)

    Args:
        num_classes: Labels stored in the files are ``0 .. num_classes-1``
            (21 for VOC: background + 20 classes).
        ignore_index: The one other value allowed.
        check_size: Compare the label map's size with the image's.
        backend_args: File backend arguments (mmengine ``fileio``).
    """

    def __init__(self,
                 num_classes: int = NUM_CLASSES,
                 ignore_index: int = IGNORE_INDEX,
                 check_size: bool = True,
                 backend_args: Optional[dict] = None) -> None:
        super().__init__(backend_args=backend_args)
        if not 0 < num_classes <= 256:
            raise ValueError(f'num_classes must be in 1..256, '
                             f'got {num_classes}')
        if not 0 <= ignore_index <= 255:
            raise ValueError(f'ignore_index must be in 0..255, '
                             f'got {ignore_index}')
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.check_size = check_size

    def transform(self, results: dict) -> dict:
        """Load and check ``results['seg_map_path']`` if it is there."""
        if results.get('seg_map_path') is None:
            return results
        return super().transform(results)

    def _load_seg_map(self, results: dict) -> None:
        path = results['seg_map_path']
        try:
            data = fileio.get(path, backend_args=self.backend_args)
        except FileNotFoundError as e:
            raise FileNotFoundError(f'label map {path} not found') from e
        label = decode_label_map(data, path)
        check_label_values(label, path, self.num_classes, self.ignore_index)
        if self.check_size and 'ori_shape' in results:
            img_shape = tuple(results['ori_shape'][:2])
            if label.shape != img_shape:
                raise DatasetError(
                    f'{path}: label map is {label.shape[0]}x{label.shape[1]} '
                    f'(HxW) but its image {results.get("img_path")} is '
                    f'{img_shape[0]}x{img_shape[1]}')
        if results.get('reduce_zero_label', False):
            # 0 -> ignore, 1..n -> 0..n-1, ignore stays ignore.
            ignored = label == self.ignore_index
            label = label - 1
            label[(label == 255) | ignored] = self.ignore_index
        if results.get('label_map') is not None:
            old = label.copy()
            for old_id, new_id in results['label_map'].items():
                label[old == old_id] = new_id
        results['gt_seg_map'] = label
        results.setdefault('seg_fields', []).append('gt_seg_map')

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(num_classes={self.num_classes}, '
                f'ignore_index={self.ignore_index}, '
                f'check_size={self.check_size}, '
                f'backend_args={self.backend_args})')
