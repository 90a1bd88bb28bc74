"""DeepLab's training recipe reaches the optimizer as TF's rules say; the
schedules are TF's poly; AMP runs on CPU. (A killed run resuming
bit-identically: tests/test_foundation.py; a training step against TF's:
tests/test_train_parity.py.)"""
import glob
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config

from conftest import REPO, run_tool, tiny_config

# One config per family of ours (the others share their _base_ model and
# schedule files), and mmseg's ResNet.
FAMILIES = [
    'deeplabv3plus/deeplabv3plus_xception41-d16_4xb4-30k_voc12aug-513x513.py',
    'deeplabv3plus/deeplabv3plus_xception65-d16_4xb4-30k_voc12aug-513x513.py',
    'deeplabv3plus/deeplabv3plus_xception71-d16_4xb4-30k_voc12aug-513x513.py',
    'deeplabv3/deeplabv3_mobilenetv2-d16_4xb4-30k_voc12aug-513x513.py',
    'deeplabv3/deeplabv3_mobilenetv2-dm05-d16_4xb4-30k_voc12aug-513x513.py',
    'deeplabv3plus/deeplabv3plus_mobilenetv2-d16_4xb4-150k_ade20k-'
    '257x257.py',
    'dpc/dpc_xception71-d16_4xb2-90k_cityscapes-769x769.py',
    'deeplabv3plus/deeplabv3plus_resnet50-beta-d16_4xb4-30k_voc12aug-'
    '513x513.py',
]
R101 = 'deeplabv3plus/deeplabv3plus_r101-d16_4xb4-30k_voc12aug-513x513.py'
# model.get_extra_layer_scopes(last_layers_contain_logits_only=False)
TF_LAST_LAYERS = ('logits', 'image_pooling', 'aspp', 'concat_projection',
                  'decoder', 'meta_architecture')


def tf_gradient_multiplier(tf_name, last_layer_gradient_multiplier):
    """train_utils.get_model_gradient_multipliers for one variable, on its
    name (1 where TF lists none)."""
    multiplier = 2.0 if 'biases' in tf_name else 1.0
    for layer in TF_LAST_LAYERS:
        if layer in tf_name and 'biases' in tf_name:
            return 2 * last_layer_gradient_multiplier
        elif layer in tf_name:
            return last_layer_gradient_multiplier
    return multiplier


def build_optimizer(path, last_layer_gradient_multiplier):
    """A config's model (meta device: shapes only) and the optimizer its
    optim_wrapper builds."""
    import deeplabplus_mm  # noqa: F401
    from mmengine.optim import build_optim_wrapper
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules()
    cfg = Config.fromfile(osp.join(REPO, 'configs', path))
    cfg.optim_wrapper.paramwise_cfg.last_layer_gradient_multiplier = \
        last_layer_gradient_multiplier
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    optim = build_optim_wrapper(model, cfg.optim_wrapper).optimizer
    assert isinstance(optim, torch.optim.SGD)
    return cfg, model, optim


@pytest.mark.parametrize('last', [1.0, 10.0])
@pytest.mark.parametrize('path', FAMILIES, ids=osp.basename)
def test_optimizer_groups_follow_tf_rules(path, last):
    """Every parameter's learning rate and weight decay are TF's for its
    variable (named by our converter's tables): lr x the gradient
    multiplier of its name (biases 2, last layers ``last``, their biases
    2 x ``last``), decay 4e-5 (ResNet 1e-4) on ``weights`` (conv, not
    ``depthwise_weights``, BN or biases); BN momentum and eps per layer
    as TF's."""
    from deeplabplus_mm.converters import tf_variable_names
    cfg, model, optim = build_optimizer(path, last)
    base_lr = cfg.optim_wrapper.optimizer.lr
    names = tf_variable_names(cfg.model.to_dict())
    group_of = {id(p): g for g in optim.param_groups for p in g['params']}
    # TF's weight decay for ResNet: 1e-4 (train.py's note on the flag)
    resnet = 'resnet_v1' in ''.join(n for n in names.values() if n)
    seen = set()
    for key, param in model.named_parameters():
        tf_name = names[key]
        group = group_of.pop(id(param))  # every parameter, exactly once
        multiplier = tf_gradient_multiplier(tf_name, last)
        assert group['lr'] == pytest.approx(base_lr * multiplier), tf_name
        decay = (1e-4 if resnet else 4e-5) if tf_name.endswith(
            '/weights') else 0.0
        assert group['weight_decay'] == pytest.approx(decay), tf_name
        assert group['momentum'] == 0.9 and group['dampening'] == 0
        assert not group['nesterov']
        seen.add((tf_name.rpartition('/')[2], multiplier))
    assert not group_of
    # the rules are exercised: biases, depthwise, BN, head and backbone
    leaves = {leaf for leaf, _ in seen}
    assert {'weights', 'depthwise_weights', 'gamma', 'beta',
            'biases'} <= leaves  # ResNet: depthwise in the head
    assert ('biases', 2 * last) in seen and ('weights', 1.0) in seen
    # BN: TF decay 0.997 in MobileNetV2's backbone (mobilenet's
    # training_scope), 0.95 in ResNet's, 0.9997 elsewhere; eps 1e-3
    # backbone (ResNet 1e-5), 1e-5 head
    mobilenet = 'MobilenetV2' in ''.join(n for n in names.values() if n)
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            backbone = name.startswith('backbone.')
            momentum = 3e-3 if backbone and mobilenet else 3e-4
            eps = 1e-3 if backbone else 1e-5
            if backbone and resnet:  # extract_features: 0.95, 1e-5
                momentum, eps = 0.05, 1e-5
            assert m.momentum == pytest.approx(momentum), name
            assert m.eps == pytest.approx(eps), name
    # mmengine logs the first group's lr: the base one
    assert optim.param_groups[0]['lr'] == pytest.approx(base_lr)


def test_resnet_optimizer_groups_are_consistent():
    """mmseg's ResNet configs get the same rules by layer kind: decay on
    dense conv weights only, biases x2, the decode head x the last-layer
    multiplier."""
    cfg, model, optim = build_optimizer(R101, 10.0)
    group_of = {id(p): g for g in optim.param_groups for p in g['params']}
    modules = dict(model.named_modules())
    kinds = set()
    for name, param in model.named_parameters():
        module_name, _, leaf = name.rpartition('.')
        module = modules[module_name]
        group = group_of.pop(id(param))
        norm = isinstance(module, torch.nn.modules.batchnorm._BatchNorm)
        depthwise = not norm and module.groups == module.in_channels > 1
        head = name.startswith('decode_head.')
        multiplier = (10.0 if head else 1.0) * (
            2.0 if leaf == 'bias' and not norm else 1.0)
        assert group['lr'] == pytest.approx(0.007 * multiplier), name
        decay = 4e-5 if not norm and not depthwise and leaf == 'weight' \
            else 0.0
        assert group['weight_decay'] == pytest.approx(decay), name
        kinds.add((norm, depthwise, leaf, head))
    assert not group_of
    assert (False, True, 'weight', True) in kinds  # separable ASPP
    assert (False, False, 'bias', True) in kinds  # conv_seg


def test_unknown_layers_and_options_are_refused():
    import deeplabplus_mm  # noqa: F401
    from mmengine.optim import build_optim_wrapper
    cfg = dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9),
               constructor='TFOptimWrapperConstructor')
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.PReLU())
    with pytest.raises(ValueError, match=r'parameter 1\.weight of a PReLU'):
        build_optim_wrapper(model, cfg)
    with pytest.raises(ValueError, match='unknown paramwise_cfg keys'):
        build_optim_wrapper(model[:1], dict(
            cfg, paramwise_cfg=dict(last_layer_lr_mult=10)))


SCHEDULES = sorted(glob.glob(osp.join(REPO, 'configs/_base_/schedules',
                                      '*.py')))


@pytest.mark.parametrize('path', SCHEDULES, ids=osp.basename)
def test_schedule_is_tf_poly_over_max_iters(path):
    """The learning rate of every iteration k of a schedule is TF's
    ``polynomial_decay``: ``base * (1 - k / N) ** 0.9`` with N = the
    schedule's max_iters (TF's training_number_of_steps), for each group
    (base: its own lr). mmengine's ParamSchedulerHook steps the scheduler
    once after each iteration; the scheduler steps once when built."""
    import deeplabplus_mm  # noqa: F401
    from mmengine.registry import PARAM_SCHEDULERS
    cfg = Config.fromfile(path)
    n = cfg.train_cfg.max_iters
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(2)]
    optim = torch.optim.SGD([dict(params=params[:1], lr=0.007),
                             dict(params=params[1:], lr=0.014)],
                            momentum=0.9)
    (scheduler_cfg, ) = cfg.param_scheduler
    scheduler = PARAM_SCHEDULERS.build(dict(scheduler_cfg, optimizer=optim))
    lrs = np.empty((n, 2))
    optim.step()  # as in training: before the first scheduler step
    for k in range(n):
        lrs[k] = [g['lr'] for g in optim.param_groups]  # iteration k's lr
        scheduler.step()
    expected = (1 - np.arange(n) / n)**0.9
    np.testing.assert_allclose(lrs, np.outer(expected, [0.007, 0.014]),
                               rtol=1e-12, atol=0)


def test_tf_poly_after_warm_up_is_tf_slow_start():
    """With ``begin`` = TF's slow_start_step (a warm-up before it, as the
    demo config has), iteration k >= begin gets ``base * (1 - (k - begin)
    / (end - begin)) ** 0.9`` (TF: ``polynomial_decay`` of ``global_step -
    slow_start_step`` over ``training_number_of_steps -
    slow_start_step``)."""
    import deeplabplus_mm  # noqa: F401
    from mmengine.registry import PARAM_SCHEDULERS
    param = torch.nn.Parameter(torch.zeros(1))
    optim = torch.optim.SGD([param], lr=0.01, momentum=0.9)
    schedulers = [
        PARAM_SCHEDULERS.build(dict(cfg, optimizer=optim)) for cfg in (
            dict(type='LinearLR', start_factor=0.1, begin=0, end=30,
                 by_epoch=False),
            dict(type='TFPolyLR', power=0.9, begin=30, end=300,
                 by_epoch=False))
    ]
    lrs = []
    optim.step()
    for _ in range(300):
        lrs.append(optim.param_groups[0]['lr'])
        for scheduler in schedulers:
            scheduler.step()
    k = np.arange(30, 300)
    np.testing.assert_allclose(lrs[30:], 0.01 * (1 - (k - 30) / 270)**0.9,
                               rtol=1e-12)
    assert lrs[0] == pytest.approx(0.001) and lrs[29] < 0.01


def test_amp_trains_on_cpu(tmp_path, synth_voc):
    out = run_tool('tools/train.py', tiny_config(tmp_path, synth_voc, 2, deterministic=True),
                   '--amp', '--work-dir', str(tmp_path / 'w')).stdout
    assert "type='CPUAmpOptimWrapper'" in out
    losses = [float(v) for v in
              __import__('re').findall(r' loss: (\d+\.\d+)', out)]
    assert len(losses) == 2 and all(0 < v < 100 for v in losses)


def test_cpu_amp_wrapper_autocasts_to_bfloat16():
    import deeplabplus_mm  # noqa: F401
    from mmengine.optim import build_optim_wrapper
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    wrapper = build_optim_wrapper(
        model, dict(type='CPUAmpOptimWrapper',
                    optimizer=dict(type='SGD', lr=0.1)))
    with wrapper.optim_context(model):
        out = model(torch.randn(1, 3, 8, 8))
    assert out.dtype == torch.bfloat16
    loss = out.float().mean()
    wrapper.update_params(loss)  # fp32 master weights, no loss scaling
    assert model[0].weight.dtype == torch.float32
    assert model(torch.randn(1, 3, 8, 8)).dtype == torch.float32
