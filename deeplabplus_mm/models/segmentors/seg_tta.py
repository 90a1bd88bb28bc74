"""Test-time augmentation that merges each view as soon as it is predicted."""
import logging
from typing import Iterable, List, Optional, Sequence

import torch
from mmengine.logging import print_log
from mmengine.structures import PixelData
from mmseg.models import SegTTAModel
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample


@MODELS.register_module()
class AccumulatingSegTTAModel(SegTTAModel):
    """mmseg's ``SegTTAModel`` merge, accumulated view by view.

    mmseg's protocol: the views come from the pipeline (each image scaled
    and flipped, then padded by the preprocessor), e.g. the dataset
    configs' ``mmseg_tta_pipeline``. The configs' default is TF's protocol,
    :class:`TFMultiScaleSegTTAModel`.

    The merge is mmseg's: the mean over the views of each view's softmax
    (sigmoid for one output channel), at the image's original size, then
    the argmax (the decode head's threshold for one channel). mmseg runs all
    the views first and keeps every view's full-size logits until the end
    (12 maps of C x H x W per image for 6 scales x flip); here each view's
    probabilities are added to one running sum per image as soon as the
    view is predicted, and its logits are dropped. The predictions are the
    same (up to the order of float additions); the memory held between views
    is one map per image instead of one per view
    (``tools/benchmarks/tta.py`` measures the time this saves).

    The merged sample also keeps what mmseg's merge drops: all the first
    view's meta information (``img_path``, ``ori_shape``, ...), its ground
    truth, and the mean probabilities as ``seg_logits``.

    The segmentor keeps its own ``data_preprocessor`` (the one single-scale
    testing uses): mmengine's ``BaseTTAModel`` would replace it with the
    config's top-level ``data_preprocessor`` (which the Runner passes in),
    so that a changed ``model.data_preprocessor`` (e.g. its
    ``test_cfg.size``, the evaluation padding) would silently not apply to
    TTA. That one is used only when the segmentor has none.
    """

    def __init__(self, module, data_preprocessor=None):
        if isinstance(module, dict) and module.get('data_preprocessor'):
            data_preprocessor = None
        super().__init__(module=module, data_preprocessor=data_preprocessor)

    def test_step(self, data) -> List[SegDataSample]:
        views = _split_views(data)
        if len(views) == 1 and not getattr(self, '_warned_one_view', False):
            self._warned_one_view = True
            print_log(
                f'{type(self).__name__}: the tta_pipeline gives one view per '
                "image, so this is single-scale testing (mmseg's protocol "
                'needs the views from the pipeline: mmseg_tta_pipeline in '
                "the dataset configs; TF's is TFMultiScaleSegTTAModel)",
                logger='current', level=logging.WARNING)
        # One view predicted at a time: the generator runs the next view's
        # forward only after the previous view is merged and dropped.
        return self._merge_views(
            self.module.test_step(view) for view in views)

    def merge_preds(self, data_samples_list):
        """The same merge for predictions made elsewhere (a list per image
        of its views' samples)."""
        return [
            self._merge_views([sample] for sample in views)[0]
            for views in data_samples_list
        ]

    def _merge_views(
            self, views: Iterable[List[SegDataSample]]) -> List[SegDataSample]:
        """Merge an iterable of views (each a list of samples, one per
        image), holding one running sum per image."""
        sums: Optional[List[torch.Tensor]] = None
        firsts: List[SegDataSample] = []
        count = 0
        for samples in views:
            scores = [self._probabilities(s.seg_logits.data) for s in samples]
            if sums is None:
                sums = scores
                firsts = [_without_maps(s) for s in samples]
            else:
                _accumulate(sums, scores, samples, count)
            count += 1
            del samples, scores  # this view's maps go before the next one
        if sums is None:
            raise ValueError('TTA data holds no views')
        return [
            self._merged(first, total / count)
            for first, total in zip(firsts, sums)
        ]

    def _probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        if self.module.out_channels > 1:
            return logits.softmax(dim=0)
        return logits.sigmoid()

    def _merged(self, first: SegDataSample,
                mean: torch.Tensor) -> SegDataSample:
        if self.module.out_channels > 1:
            pred = mean.argmax(dim=0, keepdim=True)
        else:
            pred = (mean > self.module.decode_head.threshold).to(mean)
        first.seg_logits = PixelData(data=mean)
        first.pred_sem_seg = PixelData(data=pred)
        return first


def _accumulate(sums: List[torch.Tensor], scores: List[torch.Tensor],
                samples: List[SegDataSample], idx: int) -> None:
    """Add view ``idx``'s ``scores`` to the running ``sums`` in place."""
    if len(scores) != len(sums):
        raise ValueError(f'TTA view {idx} holds {len(scores)} images, the '
                         f'first view {len(sums)}')
    for total, score, sample in zip(sums, scores, samples):
        if total.shape != score.shape:
            raise ValueError(
                f'TTA views of {sample.metainfo.get("img_path")} give scores '
                f'of shapes {tuple(total.shape)} and {tuple(score.shape)}: '
                'every view must be predicted at the original image size')
        total += score


def _split_views(data) -> Sequence:
    """The TTA loader's batch (a list per key, one entry per view) as one
    batch per view, as mmengine's ``BaseTTAModel.test_step`` splits it."""
    if isinstance(data, dict):
        num_views = len(data[next(iter(data))])
        return [{key: value[idx]
                 for key, value in data.items()} for idx in range(num_views)]
    if isinstance(data, (list, tuple)):
        return [[item[idx] for item in data] for idx in range(len(data[0]))]
    raise TypeError('TTA data must be a dict or a list of per-view lists, '
                    f'got {type(data).__name__}')


def _without_maps(sample: SegDataSample) -> SegDataSample:
    """A copy of ``sample`` without its prediction maps: meta information
    and ground truth only."""
    kept = SegDataSample(metainfo=sample.metainfo)
    if 'gt_sem_seg' in sample:
        kept.gt_sem_seg = sample.gt_sem_seg
    return kept
