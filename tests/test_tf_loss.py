"""TFCrossEntropyLoss: TF DeepLab's hard-example mining
(``train_utils.add_softmax_cross_entropy_loss_for_each_scale``) against a
numpy implementation written from TF's code; off, mmseg's loss."""
import re

import numpy as np
import pytest
import torch
from mmengine.logging import MessageHub
from mmseg.models.losses import CrossEntropyLoss
from mmseg.registry import MODELS

import deeplabplus_mm  # noqa: F401  (registers our modules)
from conftest import run_tool, tiny_config

IGNORE = 255


def tf_loss(logits, labels, num_classes, top_k_percent_pixels=1.0,
            hard_example_mining_step=0, global_step=0, loss_weight=1.0):
    """TF's loss for one scale, upsample_logits=True (logits already at the
    label size), in numpy: NCHW logits and NHW labels of the whole batch
    flattened together as TF reshapes them (float64 losses, float32 where TF
    computes the number of pixels to keep)."""
    logits = np.moveaxis(logits.astype(np.float64), 1, -1).reshape(
        -1, num_classes)
    labels = labels.reshape(-1).astype(np.int64)
    # utils.get_label_weight_mask
    not_ignore = (labels != IGNORE).astype(np.float64)
    if isinstance(loss_weight, float):
        weights = not_ignore * loss_weight
    else:
        one_hot = labels[:, None] == np.arange(num_classes)
        weights = not_ignore * (one_hot * np.asarray(loss_weight)).sum(1)
    keep_mask = not_ignore
    # tf.one_hot: all zeros for the ignore label
    train_labels = (labels[:, None] == np.arange(num_classes)).astype(float)
    shifted = logits - logits.max(1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    pixel_losses = -(train_labels * log_softmax).sum(1)
    weighted = pixel_losses * weights

    def div_maybe_zero(total, num_present):
        return float(num_present > 0) * total / max(1e-5, num_present)

    if top_k_percent_pixels == 1.0:
        return div_maybe_zero(weighted.sum(), keep_mask.sum())
    num_pixels = np.float32(logits.shape[0])
    if hard_example_mining_step == 0:
        top_k_pixels = int(np.float32(top_k_percent_pixels) * num_pixels)
    else:
        step = np.float32(global_step)
        ratio = np.minimum(np.float32(1.0),
                           step / np.float32(hard_example_mining_step))
        top_k_pixels = int((ratio * np.float32(top_k_percent_pixels) +
                            (np.float32(1.0) - ratio)) * num_pixels)
    top_k_losses = np.sort(weighted)[::-1][:top_k_pixels]
    return div_maybe_zero(top_k_losses.sum(),
                          float((top_k_losses != 0.0).sum()))


def batch(seed=0, n=2, c=5, h=9, w=11, ignored=0.2):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (n, c, h, w)).astype(np.float32)
    labels = rng.integers(0, c, (n, h, w))
    labels[rng.random((n, h, w)) < ignored] = IGNORE
    return logits, labels


def ours(logits, labels, **kwargs):
    loss = MODELS.build(dict(type='TFCrossEntropyLoss', **kwargs))
    x = torch.tensor(logits, requires_grad=True)
    value = loss(x, torch.from_numpy(labels), ignore_index=IGNORE)
    value.backward()
    return value, x.grad


@pytest.fixture
def iteration():
    """Sets the message hub's ``iter``, as the runner's RuntimeInfoHook
    does before each training iteration."""
    hub = MessageHub.get_instance('test_tf_loss')

    def set_iter(i):
        assert MessageHub.get_current_instance() is hub
        hub.update_info('iter', i)
    yield set_iter
    hub.update_info('iter', 0)


def test_off_is_mmseg_cross_entropy():
    """Default (top_k_percent_pixels=1): bit for bit the shipped loss,
    value and gradient, and TF's (sum over non-ignored / their number)."""
    logits, labels = batch()
    value, grad = ours(logits, labels)
    ref = CrossEntropyLoss(avg_non_ignore=True)
    x = torch.tensor(logits, requires_grad=True)
    expected = ref(x, torch.from_numpy(labels), ignore_index=IGNORE)
    expected.backward()
    assert torch.equal(value, expected) and torch.equal(grad, x.grad)
    assert value.item() == pytest.approx(tf_loss(logits, labels, 5),
                                         rel=1e-6)


def test_class_weights_without_mining_are_tfs():
    """TF's label weights: weighted sum / number of non-ignored pixels."""
    logits, labels = batch()
    weights = [1.0, 0.5, 2.0, 1.0, 3.0]
    value, _ = ours(logits, labels, class_weight=weights)
    assert value.item() == pytest.approx(
        tf_loss(logits, labels, 5, loss_weight=weights), rel=1e-6)


@pytest.mark.parametrize('top_k', [0.25, 0.5, 0.9])
def test_top_k_percent_pixels(top_k):
    logits, labels = batch(1)
    value, grad = ours(logits, labels, top_k_percent_pixels=top_k)
    assert value.item() == pytest.approx(
        tf_loss(logits, labels, 5, top_k), rel=1e-6)
    # only the kept pixels (of the whole batch, not per image) get gradient
    k = int(np.float32(top_k) * np.float32(labels.size))
    touched = (grad.abs().sum(1) > 0).sum().item()
    assert 0 < touched <= k
    # fewer kept than labelled: the hardest, above the mean; else the mean
    # (the ignored pixels' zeros are kept but not counted)
    mean = tf_loss(logits, labels, 5)
    if k < (labels != IGNORE).sum():
        assert value.item() > mean * 1.01
    else:
        assert value.item() == pytest.approx(mean, rel=1e-6)


def test_class_weights_are_applied_before_mining():
    logits, labels = batch(2)
    weights = [0.1, 5.0, 1.0, 1.0, 0.2]
    value, _ = ours(logits, labels, top_k_percent_pixels=0.3,
                    class_weight=weights)
    assert value.item() == pytest.approx(
        tf_loss(logits, labels, 5, 0.3, loss_weight=weights), rel=1e-6)


@pytest.mark.parametrize('step', [0, 1, 50, 99, 100, 150, 10000])
def test_ramp_over_hard_example_mining_step(iteration, step):
    """The kept fraction falls linearly from 1 to top_k over
    hard_example_mining_step iterations (TF's global_step = the runner's
    iteration)."""
    iteration(step)
    logits, labels = batch(3, h=17, w=19)
    value, _ = ours(logits, labels, top_k_percent_pixels=0.2,
                    hard_example_mining_step=100)
    assert value.item() == pytest.approx(
        tf_loss(logits, labels, 5, 0.2, 100, step), rel=1e-6)
    fraction = MessageHub.get_current_instance().get_scalar(
        'train/top_k_fraction').current()
    expected = 1.0 - 0.8 * min(1.0, step / 100)
    assert fraction == pytest.approx(expected, abs=1.5 / labels.size)
    if step == 0:  # all pixels kept: TF's plain mean
        assert value.item() == pytest.approx(tf_loss(logits, labels, 5),
                                             rel=1e-6)


def test_ignored_pixels_never_count():
    """More pixels kept than are labelled: the mean is over the non-zero
    losses only; an all-ignored batch gives 0, not NaN."""
    logits, labels = batch(4, ignored=0.8)
    value, _ = ours(logits, labels, top_k_percent_pixels=0.5)
    assert value.item() == pytest.approx(tf_loss(logits, labels, 5, 0.5),
                                         rel=1e-6)
    assert value.item() == pytest.approx(tf_loss(logits, labels, 5),
                                         rel=1e-6)
    labels[:] = IGNORE
    value, grad = ours(logits, labels, top_k_percent_pixels=0.5)
    assert value.item() == 0.0 and torch.isfinite(grad).all()


@pytest.mark.parametrize('bad', [
    dict(top_k_percent_pixels=0.0), dict(top_k_percent_pixels=1.5),
    dict(hard_example_mining_step=-1), dict(use_sigmoid=True),
    dict(avg_non_ignore=False)
])
def test_bad_arguments(bad):
    with pytest.raises(ValueError, match='TFCrossEntropyLoss'):
        MODELS.build(dict(type='TFCrossEntropyLoss', **bad))


def test_training_ramps_with_the_runners_iteration(tmp_path, synth_voc):
    """tools/train.py with the loss switched on from the command line: the
    log's kept fraction follows TF's ramp over the runner's iterations
    (iteration 1 = TF's global_step 0)."""
    cfg = tiny_config(tmp_path, synth_voc, 3)
    out = run_tool(
        'tools/train.py', cfg, '--work-dir', str(tmp_path / 'w'),
        '--cfg-options',
        'model.decode_head.loss_decode.type=TFCrossEntropyLoss',
        'model.decode_head.loss_decode.top_k_percent_pixels=0.5',
        'model.decode_head.loss_decode.hard_example_mining_step=2').stdout
    fractions = [float(v) for v in re.findall(r'top_k_fraction: (\d\.\d+)',
                                              out)]
    assert fractions == pytest.approx([1.0, 0.75, 0.5], abs=1e-3)
    losses = [float(v) for v in re.findall(r'loss_ce: (\d+\.\d+)', out)]
    assert len(losses) == 3 and all(0 < v < 100 for v in losses)
