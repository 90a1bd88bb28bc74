"""AccumulatingSegTTAModel: mmseg's TTA merge (mmseg's protocol: each view
scaled, then padded), one view at a time."""
import copy
import os.path as osp
import weakref

import cv2
import numpy as np
import pytest
import torch
from mmcv.transforms import Compose
from mmengine.config import Config
from mmengine.dataset import pseudo_collate

from conftest import REPO, small_tf_segmentor

VOC_BASE = osp.join(REPO, 'configs', '_base_', 'datasets',
                    'pascal_voc12_aug.py')


@pytest.fixture(scope='module')
def segmentor():
    """Xception-41 + TF head with measured BN statistics
    (conftest.small_tf_segmentor)."""
    return small_tf_segmentor()


@pytest.fixture(scope='module')
def tta_batch(tmp_path_factory):
    """Two images through the VOC configs' mmseg_tta_pipeline (mmseg's
    protocol, 6 scales x flip), collated as a test loader with batch size
    2 does (mmseg's preprocessor wants one size per batch)."""
    from deeplabplus_mm.datasets.voc_meta import save_palette_png
    from tools.fixtures.synthetic_voc import make_sample
    folder = tmp_path_factory.mktemp('tta')
    rng = np.random.default_rng(3)
    pipeline = Compose(
        copy.deepcopy(Config.fromfile(VOC_BASE).mmseg_tta_pipeline))
    items = []
    for idx, (h, w) in enumerate([(45, 61), (45, 61)]):
        img, label = make_sample(rng, h, w)
        img_path = str(folder / f'{idx}.jpg')
        seg_path = str(folder / f'{idx}.png')
        cv2.imwrite(img_path, img)
        save_palette_png(seg_path, label)
        items.append(pipeline(dict(img_path=img_path, seg_map_path=seg_path,
                                   reduce_zero_label=False, seg_fields=[])))
    return pseudo_collate(items)


def views_of(batch):
    return [{key: value[idx] for key, value in batch.items()}
            for idx in range(len(batch['inputs']))]


def test_same_predictions_as_mmseg_and_keeps_meta(segmentor, tta_batch):
    from mmseg.models import SegTTAModel

    from deeplabplus_mm.models import AccumulatingSegTTAModel
    with torch.no_grad():
        ours = AccumulatingSegTTAModel(module=segmentor).test_step(tta_batch)
        theirs = SegTTAModel(module=segmentor).test_step(tta_batch)
        per_view = [segmentor.test_step(v) for v in views_of(tta_batch)]
    assert len(per_view) == 12 and len(ours) == len(theirs) == 2
    for idx, (mine, ref) in enumerate(zip(ours, theirs)):
        expected = sum(v[idx].seg_logits.data.softmax(0)
                       for v in per_view) / 12
        first = per_view[0][idx]
        h, w = first.ori_shape
        assert mine.seg_logits.data.shape == (21, h, w)
        torch.testing.assert_close(mine.seg_logits.data, expected,
                                   atol=1e-6, rtol=0)
        torch.testing.assert_close(mine.seg_logits.data.sum(0),
                                   torch.ones(h, w))
        pred = mine.pred_sem_seg.data
        assert pred.shape == (1, h, w) and pred.dtype == torch.int64
        assert torch.equal(pred[0], ref.pred_sem_seg.data[0])
        assert torch.equal(pred[0], expected.argmax(0))
        # a real test: the merged prediction varies over the image and
        # differs from the single un-augmented view's somewhere
        assert pred.unique().numel() > 1
        assert not torch.equal(pred, per_view[4][idx].pred_sem_seg.data)
        # what mmseg's merge drops is kept
        assert mine.img_path == first.img_path == ref.img_path
        assert mine.ori_shape == (h, w)
        assert mine.metainfo['scale_factor'] == first.metainfo['scale_factor']
        assert torch.equal(mine.gt_sem_seg.data, first.gt_sem_seg.data)


def test_each_view_is_dropped_once_merged(segmentor, tta_batch):
    """While view k is predicted, no earlier view's logits are alive (mmseg's
    SegTTAModel, the negative control, keeps them all)."""
    from mmseg.models import SegTTAModel

    from deeplabplus_mm.models import AccumulatingSegTTAModel

    def alive_while_predicting(tta):
        refs, alive = [], []
        test_step = segmentor.test_step

        def tracking(view):
            alive.append(sum(r() is not None for r in refs))
            out = test_step(view)
            refs.extend(weakref.ref(s.seg_logits.data) for s in out)
            return out

        segmentor.test_step = tracking
        try:
            with torch.no_grad():
                tta.test_step(tta_batch)
        finally:
            del segmentor.test_step
        return alive

    assert alive_while_predicting(
        AccumulatingSegTTAModel(module=segmentor)) == [0] * 12
    assert alive_while_predicting(
        SegTTAModel(module=segmentor)) == [2 * k for k in range(12)]


def test_merge_preds_matches_test_step(segmentor, tta_batch):
    from deeplabplus_mm.models import AccumulatingSegTTAModel
    tta = AccumulatingSegTTAModel(module=segmentor)
    with torch.no_grad():
        merged = tta.test_step(tta_batch)
        per_view = [segmentor.test_step(v) for v in views_of(tta_batch)]
    again = tta.merge_preds([[v[idx] for v in per_view] for idx in range(2)])
    for a, b in zip(merged, again):
        torch.testing.assert_close(a.seg_logits.data, b.seg_logits.data,
                                   atol=1e-6, rtol=0)
        assert torch.equal(a.pred_sem_seg.data, b.pred_sem_seg.data)


def test_one_output_channel_uses_the_threshold(segmentor, tta_batch):
    """Binary heads (out_channels=1): mean of the sigmoids, thresholded."""
    from deeplabplus_mm.models import AccumulatingSegTTAModel
    binary = copy.deepcopy(segmentor)
    head = binary.decode_head
    conv = head.conv_seg
    head.conv_seg = torch.nn.Conv2d(conv.in_channels, 1, 1)
    head.out_channels, head.threshold = 1, 0.45
    binary.out_channels = 1
    with torch.no_grad():
        merged = AccumulatingSegTTAModel(module=binary).test_step(tta_batch)
        per_view = [binary.test_step(v) for v in views_of(tta_batch)]
    for idx, sample in enumerate(merged):
        mean = sum(v[idx].seg_logits.data.sigmoid() for v in per_view) / 12
        torch.testing.assert_close(sample.seg_logits.data, mean, atol=1e-6,
                                   rtol=0)
        assert torch.equal(sample.pred_sem_seg.data,
                           (mean > 0.45).to(mean))


def test_one_view_warns_once(segmentor, tta_batch, monkeypatch):
    """TF's one-view tta_pipeline with mmseg's protocol is single-scale
    testing: said once."""
    from deeplabplus_mm.models import AccumulatingSegTTAModel
    from deeplabplus_mm.models.segmentors import seg_tta
    said = []
    monkeypatch.setattr(seg_tta, 'print_log',
                        lambda msg, **kw: said.append(msg))
    one_view = {key: value[4:5] for key, value in tta_batch.items()}
    tta = AccumulatingSegTTAModel(module=segmentor)
    with torch.no_grad():
        tta.test_step(one_view)
        tta.test_step(one_view)
    assert len(said) == 1 and 'single-scale testing' in said[0]


def test_bad_input_is_named(segmentor):
    from deeplabplus_mm.models import AccumulatingSegTTAModel
    tta = AccumulatingSegTTAModel(module=segmentor)
    with pytest.raises(TypeError, match='got str'):
        tta.test_step('images')
    with pytest.raises(ValueError, match='no views'):
        tta.test_step(dict(inputs=[], data_samples=[]))


def test_mmseg_protocol_by_config(tmp_path):
    """The configs' default is TF's protocol; a user config switches to
    mmseg's with the two lines the dataset configs give."""
    from mmseg.registry import MODELS

    import deeplabplus_mm  # noqa: F401
    leaf = osp.join(REPO, 'configs', 'deeplabv3plus',
                    'deeplabv3plus_xception65-d8_4xb4-30k_voc12aug-513x513.py')
    assert Config.fromfile(leaf).tta_model.type == 'TFMultiScaleSegTTAModel'
    user = tmp_path / 'mmseg_protocol.py'
    user.write_text(f"_base_ = {leaf!r}\n"
                    "tta_model = dict(_delete_=True, "
                    "type='AccumulatingSegTTAModel')\n"
                    "tta_pipeline = {{_base_.mmseg_tta_pipeline}}\n")
    cfg = Config.fromfile(str(user))
    assert cfg.tta_model == dict(type='AccumulatingSegTTAModel')
    assert MODELS.get(cfg.tta_model.type).__name__ == \
        'AccumulatingSegTTAModel'
    views = cfg.tta_pipeline[1]['transforms']
    assert [t['scale_factor'] for t in views[0]] == cfg.img_ratios
    assert len(views[0]) * len(views[1]) == 12


def test_segmentor_keeps_its_own_preprocessor():
    """mmengine's BaseTTAModel would give the segmentor the config's
    top-level data_preprocessor (the Runner passes it): a changed
    model.data_preprocessor (evaluation padding) must stay."""
    from deeplabplus_mm.models import AccumulatingSegTTAModel
    cfg = Config.fromfile(osp.join(
        REPO, 'configs', 'deeplabv3plus',
        'deeplabv3plus_xception65-d16_4xb4-30k_voc12aug-513x513.py'))
    cfg.model.data_preprocessor.test_cfg = dict(size=(129, 129))
    cfg.model.backbone.init_cfg = None
    with torch.device('meta'):
        tta = AccumulatingSegTTAModel(
            module=copy.deepcopy(cfg.model),
            data_preprocessor=cfg.data_preprocessor)  # as the Runner does
    assert cfg.data_preprocessor.test_cfg == dict(size=(513, 513))
    assert tta.module.data_preprocessor.test_cfg == dict(size=(129, 129))
