"""Predictions in the layout the PASCAL VOC evaluation server expects."""
import os
import os.path as osp
from typing import Optional, Sequence

from mmengine.evaluator import BaseMetric
from mmseg.registry import METRICS

from ..datasets.voc_meta import VOC_CLASSES, save_palette_png


@METRICS.register_module()
class VOCSubmissionWriter(BaseMetric):
    """Write each prediction as a VOC palette PNG to
    ``<output_dir>/results/VOC2012/Segmentation/<competition>_test_cls/
    <image name>.png``; needs no ground truth.

    ``tools/test.py CONFIG CKPT --out DIR`` adds it for VOC-class datasets.
    ``competition``: 'comp5' (VOC data only) or 'comp6' (other data too,
    e.g. SBD or COCO, as DeepLab's models use).
    """

    def __init__(self, output_dir: str, competition: str = 'comp6',
                 collect_device: str = 'cpu', prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        if competition not in ('comp5', 'comp6'):
            raise ValueError(f'competition must be comp5 or comp6, got '
                             f'{competition!r}')
        self.folder = osp.join(output_dir, 'results', 'VOC2012',
                               'Segmentation', f'{competition}_test_cls')

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        os.makedirs(self.folder, exist_ok=True)
        for sample in data_samples:
            name = osp.splitext(osp.basename(sample['img_path']))[0]
            pred = sample['pred_sem_seg']['data'][0].cpu().numpy()
            save_palette_png(osp.join(self.folder, name + '.png'), pred)
            self.results.append(name)

    def compute_metrics(self, results: list) -> dict:
        return dict(voc_pngs_written=len(results))


def add_voc_submission_writer(cfg, output_dir: str) -> bool:
    """Append a :class:`VOCSubmissionWriter` to ``cfg.test_evaluator`` when
    the test dataset has PASCAL VOC's classes; return whether it did."""
    from mmseg.registry import DATASETS
    dataset_cls = DATASETS.get(cfg.test_dataloader.dataset.type)
    classes = getattr(dataset_cls, 'METAINFO', {}).get('classes')
    if tuple(classes or ()) != VOC_CLASSES:
        return False
    evaluators = cfg.test_evaluator
    if not isinstance(evaluators, (list, tuple)):
        evaluators = [evaluators]
    cfg.test_evaluator = list(evaluators) + [
        dict(type='VOCSubmissionWriter', output_dir=output_dir)
    ]
    return True
