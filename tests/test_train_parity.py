"""Training is TF DeepLab's: steps of our ``tools/train.py`` with a shipped
config move every weight as TF's ``train.py`` does (tests/train_parity.py),
and TF's momentum travels from a TF checkpoint into our optimizer."""
import os.path as osp

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO, run_tool
from train_parity import (convert, failures, load_state, run_parity,
                          train_args, write_derived_config, write_voc_folder)

MOBILENETV2_VOC = osp.join(
    REPO, 'configs/deeplabv3/deeplabv3_mobilenetv2-d16_4xb4-30k_'
    'voc12aug-513x513.py')


def report(result):
    """The figures of a parity run, one line per step (``pytest -s``)."""
    lines = []
    for step, diffs in result['updates'].items():
        close = {k: d['rel'] for k, d in diffs.items() if d['rel'] <= 1e-3}
        small = {k: d['ulp'] for k, d in diffs.items() if d['rel'] > 1e-3}
        worst = max(close, key=close.get)
        line = (f'after step {step}: {len(close)} of {len(diffs)} tensors '
                f'within 1e-3 relative (worst {close[worst]:.2g}, {worst}; '
                f'median {np.median(list(close.values())):.2g})')
        if small:
            worst = max(small, key=small.get)
            line += (f', the other {len(small)} within {small[worst]:.2g} '
                     f'ulp ({worst})')
        lines.append(line)
    for record, tf_step in zip(result['log'], result['ref']['steps']):
        ours, tf = record['decode.loss_ce'], tf_step['cross_entropy']
        lines.append(f'step {record["iter"]}: cross-entropy {ours:.7f} vs '
                     f'TF {tf:.7f} (rel {abs(ours - tf) / tf:.2g}), lr '
                     f'{record["lr"]:.8g} vs TF '
                     f'{tf_step["learning_rate"]:.8g}')
    return '\n'.join(lines)


def test_mobilenetv2_steps_equal_tf_train(tf_refs, tmp_path):
    ref_dir = osp.join(tf_refs, 'mobilenetv2_train')
    if not osp.isdir(ref_dir):
        pytest.skip(f'no TF training reference at {ref_dir}')
    result = run_parity(MOBILENETV2_VOC, ref_dir, str(tmp_path))
    print('\n' + report(result))
    assert not result['recipe'], result['recipe']
    assert sorted(result['updates']) == [1, 3]
    for step, diffs in result['updates'].items():
        # every parameter and BN statistic (272 TF model variables)
        assert len(diffs) == 272
        assert not failures(diffs), (step, failures(diffs))
    log = result['log']
    assert [r['iter'] for r in log] == [1, 2, 3]
    for record, tf_step in zip(log, result['ref']['steps']):
        assert record['decode.loss_ce'] == pytest.approx(
            tf_step['cross_entropy'], rel=1e-4)
        assert record['lr'] == pytest.approx(tf_step['learning_rate'],
                                             rel=1e-6)


def _tf_checkpoint_with_momentum(prefix, config):
    """A TF-format checkpoint of ``config``'s model (names from our name
    tables, TF layouts, seeded values; BN variances positive) with a
    ``/Momentum`` slot per trainable variable and a ``global_step``;
    returns {TF name: array}."""
    from mmengine.config import Config

    from deeplabplus_mm.archs import model_convs, state_shapes
    from deeplabplus_mm.converters import tf_variable_names
    from deeplabplus_mm.converters.naming import tf_shape
    from tools.fixtures.tf_bundle_writer import write_checkpoint
    model = Config.fromfile(config).model.to_dict()
    shapes = state_shapes(model_convs(model))
    rng = np.random.default_rng(0)
    tensors = {'global_step': np.int64(30000)}
    for key, name in tf_variable_names(model).items():
        if name is None:
            continue
        shape = tf_shape(name, shapes[key])
        if name.endswith(('moving_variance', 'gamma')):
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(0, 0.1, shape)
        tensors[name] = value.astype(np.float32)
        if not name.endswith(('moving_mean', 'moving_variance')):
            tensors[f'{name}/Momentum'] = rng.normal(
                0, 0.1, shape).astype(np.float32)
    write_checkpoint(prefix, tensors)
    return tensors


def test_momentum_from_tf_checkpoint_continues_in_training(tmp_path):
    """``convert_tf_checkpoint.py --momentum`` carries TF's accumulators;
    with ``load_momentum=True`` the first step of ``tools/train.py`` then
    moves every weight by ``-lr * momentum * accumulator`` more than the
    same step without them (TF: ``accum = 0.9 accum + m g; w -= lr
    accum``), whatever the parameter's gradient multiplier ``m`` (biases
    2, the head 10 and 20 here)."""
    from deeplabplus_mm.converters import to_torch_layout
    tensors = _tf_checkpoint_with_momentum(str(tmp_path / 'tf' / 'model.ckpt'),
                                           MOBILENETV2_VOC)
    ckpt = convert(str(tmp_path / 'tf' / 'model.ckpt'),
                   str(tmp_path / 'init.pth'), MOBILENETV2_VOC, '--momentum')
    saved = torch.load(ckpt, weights_only=True)
    slots = saved['tf_momentum']
    assert saved['meta']['momentum'] == len(slots) == sum(
        n.endswith('/Momentum') for n in tensors)
    key = 'decode_head.image_pooling.conv.weight'
    np.testing.assert_array_equal(slots[key].numpy(), to_torch_layout(
        'image_pooling/weights', tensors['image_pooling/weights/Momentum']))
    # data: two 65x65 images
    rng = np.random.default_rng(1)
    images, labels = [], []
    for i in range(2):
        images.append(str(tmp_path / f'image_{i}.png'))
        labels.append(str(tmp_path / f'label_{i}.png'))
        Image.fromarray(rng.integers(0, 256, (65, 65, 3), np.uint8)).save(
            images[-1])
        Image.fromarray(rng.integers(0, 21, (65, 65)).astype(np.uint8)).save(
            labels[-1])
    data = write_voc_folder(str(tmp_path / 'data'), images, labels)
    lr = 0.1
    states = {}
    for restore in (False, True):
        cfg = write_derived_config(
            str(tmp_path / f'momentum_{restore}.py'), MOBILENETV2_VOC, data,
            ckpt, 1, batch=2, crop=(65, 65), num_classes=21, lr=lr,
            load_momentum=restore)
        work = str(tmp_path / f'work_{restore}')
        out = run_tool('tools/train.py', cfg, '--work-dir', work,
                       *train_args(10), 'optim_wrapper.paramwise_cfg.'
                       'last_layer_gradient_multiplier=10').stdout
        assert ('load_momentum: TF momentum of' in out) == restore
        states[restore] = load_state(osp.join(work, 'iter_1.pth'))
    params = set(slots)
    assert any(k.endswith('conv_seg.bias') for k in params)
    for key in params:
        expected = -lr * 0.9 * slots[key].double().numpy()
        np.testing.assert_allclose(states[True][key] - states[False][key],
                                   expected, rtol=1e-3, atol=1e-6,
                                   err_msg=key)
    # BN statistics do not depend on it
    for key in set(states[True]) - params:
        np.testing.assert_array_equal(states[True][key], states[False][key])


def test_load_momentum_without_slots_fails_naming_the_file(tmp_path):
    tensors = _tf_checkpoint_with_momentum(str(tmp_path / 'tf' / 'model.ckpt'),
                                           MOBILENETV2_VOC)
    assert tensors
    ckpt = convert(str(tmp_path / 'tf' / 'model.ckpt'),
                   str(tmp_path / 'init.pth'), MOBILENETV2_VOC)
    assert 'tf_momentum' not in torch.load(ckpt, weights_only=True)
    image = str(tmp_path / 'image.png')
    label = str(tmp_path / 'label.png')
    Image.fromarray(np.zeros((33, 33, 3), np.uint8)).save(image)
    Image.fromarray(np.zeros((33, 33), np.uint8)).save(label)
    data = write_voc_folder(str(tmp_path / 'data'), [image] * 2, [label] * 2)
    cfg = write_derived_config(
        str(tmp_path / 'cfg.py'), MOBILENETV2_VOC, data, ckpt, 1, batch=2,
        crop=(33, 33), num_classes=21, lr=0.007, load_momentum=True)
    proc = run_tool('tools/train.py', cfg, '--work-dir',
                    str(tmp_path / 'work'), check=False)
    assert proc.returncode != 0
    assert f'{ckpt}: holds no tf_momentum' in proc.stdout
