"""TFMultiScaleSegTTAModel on a small random segmentor: what it runs
(views at their own sizes, the padded image mirrored), its agreement with
single-scale testing, batches, images larger than the crop, TF's
resize_to_range, saved probabilities, folded models, bad input; and
tools/test.py / tools/dist_test.sh --tta with it. TensorFlow parity:
test_tta_tf_parity.py."""
import copy
import logging
import os
import os.path as osp
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from PIL import Image

from conftest import (REPO, build_model, run_tool, small_tf_segmentor,
                      tiny_config)

CROP = (65, 65)


@pytest.fixture(scope='module')
def segmentor():
    """Xception-41 + TF head padding test images to 65x65, BN statistics
    measured on random images (conftest.small_tf_segmentor)."""
    return small_tf_segmentor(test_size=CROP)


def make_image(h, w, seed):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (3, h, w), np.uint8))


def make_batch(*images):
    """A TTA loader batch: one view, a list of images and samples."""
    samples = []
    for idx, img in enumerate(images):
        shape = tuple(img.shape[1:])
        sample = SegDataSample(metainfo=dict(
            img_path=f'/data/img_{idx}.jpg', ori_shape=shape,
            img_shape=shape))
        sample.gt_sem_seg = PixelData(
            data=torch.full((1, ) + shape, idx, dtype=torch.uint8))
        samples.append(sample)
    return dict(inputs=[list(images)], data_samples=[samples])


def tta_model(module, **kwargs):
    from deeplabplus_mm.models import TFMultiScaleSegTTAModel
    return TFMultiScaleSegTTAModel(module=module, **kwargs).eval()


def spy_inputs(module):
    """Record the network inputs of ``module._forward`` (undo with
    ``del module._forward``)."""
    seen = []
    forward = module._forward

    def spy(x, *args):
        seen.append(x.clone())
        return forward(x, *args)

    module._forward = spy
    return seen


def test_tf_sizes():
    from deeplabplus_mm.models import scale_dimension, tf_resize_to_range
    scales = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    assert [scale_dimension(129, s) for s in scales] == [65, 97, 129, 161,
                                                         193, 225]
    assert [scale_dimension(513, s) for s in scales] == [257, 385, 513, 641,
                                                         769, 897]
    assert [scale_dimension(1025, s) for s in (0.75, 1.25)] == [769, 1281]
    assert [scale_dimension(2049, s) for s in (0.75, 1.25)] == [1537, 2561]
    # TF's ADE20K evaluation (513, 513, factor 16): max_size becomes 497,
    # the shorter side is rounded up to 16k + 1
    assert tf_resize_to_range(300, 700, 513, 513, 16) == (225, 497)
    assert tf_resize_to_range(512, 683, 513, 513, 16) == (385, 497)
    assert tf_resize_to_range(700, 300, 513, 513, 16) == (497, 225)
    # float32 as TF: 497 / 109 * 109 > 497 -> 498 -> 513
    assert tf_resize_to_range(109, 109, 513, 513, 16) == (513, 513)
    assert tf_resize_to_range(110, 110, 513, 513, 16) == (497, 497)
    # without max_size / factor: shorter side to min_size (ceil)
    assert tf_resize_to_range(300, 700, 513) == (513, 1197)
    assert tf_resize_to_range(300, 700, 513, 600) == (258, 600)


def test_views_at_their_own_sizes_mirroring_the_padded_image(segmentor):
    img = make_image(45, 61, 0)
    seen = spy_inputs(segmentor)
    try:
        tta_model(segmentor, scales=[0.5, 1.0, 1.25],
                  flip=True).test_step(make_batch(img))
    finally:
        del segmentor._forward
    assert [tuple(x.shape[2:]) for x in seen] == [(33, 33), (33, 33),
                                                  (65, 65), (65, 65),
                                                  (81, 81), (81, 81)]
    plain, mirrored = seen[2], seen[3]
    # pad first (0 after normalisation, bottom/right), then mirror the
    # padded image: the padding is on the left in the flipped passes
    assert plain[..., 45:, :].abs().max() == 0
    assert plain[..., 61:].abs().max() == 0
    assert plain[..., :45, :61].abs().min() > 0
    assert torch.equal(mirrored, plain.flip(-1))
    # the other scales: the padded image resized with align_corners
    for idx, size in ((0, (33, 33)), (4, (81, 81))):
        torch.testing.assert_close(
            seen[idx],
            F.interpolate(plain, size, mode='bilinear', align_corners=True))
        torch.testing.assert_close(seen[idx + 1], seen[idx].flip(-1))


def test_one_scale_without_flip_is_single_scale_testing(segmentor):
    """scales=[1.0], no flip is TF's single-scale evaluation, which is the
    segmentor's own (padded) test_step."""
    img = make_image(45, 61, 1)
    batch = make_batch(img)
    with torch.no_grad():
        ours = tta_model(segmentor).test_step(batch)[0]
        plain = segmentor.test_step(dict(inputs=[img], data_samples=[
            copy.deepcopy(batch['data_samples'][0][0])]))[0]
    torch.testing.assert_close(ours.seg_logits.data,
                               plain.seg_logits.data.softmax(0), atol=1e-6,
                               rtol=0)
    assert torch.equal(ours.pred_sem_seg.data, plain.pred_sem_seg.data)
    assert ours.pred_sem_seg.data.unique().numel() > 1


def test_multi_scale_flip_merge(segmentor):
    """The mean over the views of each view's probabilities at the crop:
    the 2-scale + flip result is the mean of the 4 one-view results (each
    one is a TTA model with one scale and no flip, and the mirrored ones
    are the mirrored padded image's)."""
    from deeplabplus_mm.models import TFMultiScaleSegTTAModel
    img = make_image(45, 61, 2)
    scales = [0.75, 1.25]
    x = segmentor.data_preprocessor(
        dict(inputs=[img], data_samples=[SegDataSample()]), False)['inputs']
    with torch.no_grad():
        merged = tta_model(segmentor, scales=scales,
                           flip=True).mean_probabilities(x)
        views = []
        for s in scales:
            one = tta_model(segmentor, scales=[s])
            views.append(one.mean_probabilities(x))
            views.append(one.mean_probabilities(x.flip(-1)).flip(-1))
    assert merged.shape == (1, 21) + CROP
    torch.testing.assert_close(merged, sum(views) / 4, atol=1e-6, rtol=0)
    torch.testing.assert_close(merged.sum(1), torch.ones(1, *CROP))
    # a scale < 1: the logits are resized to the crop's logits size (17)
    # first, then to the crop: not one direct resize (scale 0.75: a 49
    # input, 13 logits, 13 -> 17 -> 65)
    with torch.no_grad():
        logits = segmentor._forward(F.interpolate(
            x, (49, 49), mode='bilinear', align_corners=True))
    assert tuple(logits.shape[2:]) == (13, 13)
    direct = F.interpolate(logits, CROP, mode='bilinear',
                           align_corners=True).softmax(1)
    two_step = F.interpolate(F.interpolate(
        logits, (17, 17), mode='bilinear', align_corners=True), CROP,
                             mode='bilinear', align_corners=True).softmax(1)
    torch.testing.assert_close(views[0], two_step, atol=1e-6, rtol=0)
    assert (views[0] - direct).abs().max() > 1e-4
    # the stride read from the shapes is the one TF's options give
    explicit = TFMultiScaleSegTTAModel(module=segmentor, scales=scales,
                                       flip=True, logits_output_stride=4)
    with torch.no_grad():
        torch.testing.assert_close(explicit.mean_probabilities(x), merged,
                                   atol=0, rtol=0)


def test_batch_of_different_sizes_equals_one_by_one(segmentor):
    images = [make_image(45, 61, 3), make_image(50, 40, 4)]
    tta = tta_model(segmentor, scales=[0.75, 1.25], flip=True)
    together = tta.test_step(make_batch(*images))
    for idx, img in enumerate(images):
        alone = tta.test_step(make_batch(img))[0]
        mine = together[idx]
        h, w = img.shape[1:]
        assert mine.seg_logits.data.shape == (21, h, w)
        # a batch of 2 and of 1 differ by float rounding in the convs
        torch.testing.assert_close(mine.seg_logits.data,
                                   alone.seg_logits.data, atol=1e-4, rtol=0)
        top2 = alone.seg_logits.data.topk(2, dim=0).values
        clear = (top2[0] - top2[1]) > 2e-4
        assert clear.float().mean() > 0.9
        assert torch.equal(mine.pred_sem_seg.data[0][clear],
                           alone.pred_sem_seg.data[0][clear])
        # what AccumulatingSegTTAModel keeps: meta information, gt
        assert mine.img_path == f'/data/img_{idx}.jpg'
        assert mine.ori_shape == (h, w)
        assert torch.equal(mine.gt_sem_seg.data,
                           torch.full((1, h, w), idx, dtype=torch.uint8))


def test_image_larger_than_the_crop(segmentor, monkeypatch):
    """TF fails; here the crop is enlarged to cover the image (TF's
    protocol with that eval_crop_size), with a warning, once."""
    from deeplabplus_mm.models.segmentors import tf_multiscale_tta
    warnings = []
    monkeypatch.setattr(tf_multiscale_tta, 'print_log',
                        lambda msg, **kw: warnings.append((msg, kw)))
    big = make_image(45, 80, 5)
    tta = tta_model(segmentor, scales=[0.5, 1.0], flip=True)
    out = tta.test_step(make_batch(big, big))
    assert len(warnings) == 1 and warnings[0][1]['level'] == logging.WARNING
    assert '45x80, larger than the evaluation crop 65x65' in warnings[0][0]
    covering = copy.deepcopy(segmentor)
    covering.data_preprocessor.test_cfg = dict(size=(65, 80))
    expected = tta_model(covering, scales=[0.5, 1.0],
                         flip=True).test_step(make_batch(big))[0]
    for sample in out:
        assert sample.seg_logits.data.shape == (21, 45, 80)
        # (a batch of 2 and of 1 differ by float rounding in the convs)
        torch.testing.assert_close(sample.seg_logits.data,
                                   expected.seg_logits.data, atol=1e-4,
                                   rtol=0)


def test_resize_to_range(segmentor):
    """TF's min/max_resize_value + resize_factor (ADE20K) before padding:
    the image resized in float32 with align_corners, the result brought
    back to the original size."""
    from deeplabplus_mm.models import tf_resize_to_range
    img = make_image(30, 70, 6)
    rule = dict(min_size=65, max_size=65, factor=8)
    size = tf_resize_to_range(30, 70, **rule)
    assert size == (25, 57)  # max_size 65 -> 57 (factor 8), 30 -> 25
    seen = spy_inputs(segmentor)
    try:
        out = tta_model(segmentor, resize_to_range=rule).test_step(
            make_batch(img))[0]
    finally:
        del segmentor._forward
    assert [tuple(x.shape[2:]) for x in seen] == [CROP]
    resized = F.interpolate(img[None].float(), size, mode='bilinear',
                            align_corners=True)[0]
    x = segmentor.data_preprocessor(
        dict(inputs=[resized], data_samples=[SegDataSample()]),
        False)['inputs']
    torch.testing.assert_close(seen[0], x)
    with torch.no_grad():
        probs = segmentor._forward(x)
    probs = F.interpolate(probs, CROP, mode='bilinear',
                          align_corners=True).softmax(1)[..., :25, :57]
    expected = F.interpolate(probs, (30, 70), mode='bilinear',
                             align_corners=True)[0]
    assert out.seg_logits.data.shape == (21, 30, 70)
    torch.testing.assert_close(out.seg_logits.data, expected, atol=1e-6,
                               rtol=0)
    assert torch.equal(out.pred_sem_seg.data[0], expected.argmax(0))


def test_probs_dir(segmentor, tmp_path):
    img = make_image(45, 61, 7)
    folder = tmp_path / 'probs'
    out = tta_model(segmentor, scales=[1.0], flip=True,
                    probs_dir=str(folder)).test_step(make_batch(img))[0]
    assert os.listdir(folder) == ['img_0.npy']
    saved = np.load(folder / 'img_0.npy')
    assert saved.dtype == np.float32 and saved.shape == (21, 45, 61)
    np.testing.assert_array_equal(saved, out.seg_logits.data.numpy())


def test_folded_channels_last_segmentor(segmentor):
    """What FastInferenceHook does to the model inside the TTA model."""
    from deeplabplus_mm.models.utils import prepare_for_inference
    img = make_image(45, 61, 8)
    plain = tta_model(segmentor, scales=[0.75, 1.25], flip=True)
    fast = copy.deepcopy(plain)
    assert prepare_for_inference(fast, True, True) > 0
    a = plain.test_step(make_batch(img))[0]
    b = fast.test_step(make_batch(img))[0]
    torch.testing.assert_close(a.seg_logits.data, b.seg_logits.data,
                               atol=1e-4, rtol=0)


def test_bad_input_is_named(segmentor):
    from deeplabplus_mm.models import TFMultiScaleSegTTAModel
    img = make_image(45, 61, 9)
    batch = make_batch(img)
    two_views = dict(inputs=batch['inputs'] * 2,
                     data_samples=batch['data_samples'] * 2)
    tta = tta_model(segmentor)
    with pytest.raises(ValueError, match='gives 2 views per image'):
        tta.test_step(two_views)
    with pytest.raises(ValueError, match='no images'):
        tta.test_step(dict(inputs=[], data_samples=[]))
    with pytest.raises(TypeError, match='got str'):
        tta.test_step('images')
    with pytest.raises(NotImplementedError, match='AccumulatingSegTTA'):
        tta.merge_preds([[batch['data_samples'][0][0]]])
    for bad in ([], [0.5, -1.0]):
        with pytest.raises(ValueError, match='scales'):
            TFMultiScaleSegTTAModel(module=segmentor, scales=bad)
    with pytest.raises(ValueError, match='resize_to_range'):
        TFMultiScaleSegTTAModel(module=segmentor,
                                resize_to_range=dict(max_size=513))


# ------------------------------------------------- the tools, end to end


def _bash(*args, port):
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(port),
               PYTHONUNBUFFERED='1')
    proc = subprocess.run(['bash', *args], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:]
    return proc.stdout


def _metrics(text):
    found = re.findall(r'aAcc: (\S+)\s+mIoU: (\S+)\s+mAcc: (\S+)', text)
    assert found, text[-3000:]
    return found[-1]


def test_test_py_batch_2_and_dist_test_tta(tmp_path, synth_voc):
    """tools/test.py --tta with batch 2 (images of different sizes in one
    batch) and tools/dist_test.sh --tta on 2 CPU ranks write the same
    predictions and report the same metrics."""
    assert not torch.cuda.is_available() or pytest.skip('CPU-only check')
    cfg = tiny_config(tmp_path, synth_voc, 2)
    model = build_model(cfg, seed=0)
    ckpt = tmp_path / 'random.pth'
    torch.save(dict(state_dict=model.state_dict(), meta={}), ckpt)
    single = run_tool(
        'tools/test.py', cfg, str(ckpt), '--tta', '--out',
        str(tmp_path / 'single'), '--work-dir', str(tmp_path / 'w1'),
        '--cfg-options', 'test_dataloader.batch_size=2').stdout
    assert 'TFMultiScaleSegTTAModel' in single
    multi = _bash('tools/dist_test.sh', cfg, str(ckpt), '2', '--tta',
                  '--out', str(tmp_path / 'multi'), '--work-dir',
                  str(tmp_path / 'w2'), port=29651)
    assert _metrics(single) == _metrics(multi)
    names = open(osp.join(synth_voc,
                          'ImageSets/Segmentation/val.txt')).read().split()
    for name in names:
        a = np.array(Image.open(tmp_path / 'single' / f'{name}.png'))
        b = np.array(Image.open(tmp_path / 'multi' / f'{name}.png'))
        image = Image.open(osp.join(synth_voc, 'JPEGImages', name + '.jpg'))
        assert a.shape == image.size[::-1]
        assert np.array_equal(a, b), name
