"""DeepLab's training recipe reaches the optimizer; AMP runs on CPU. (A
killed run resuming bit-identically: tests/test_foundation.py.)"""
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from conftest import REPO, build_model, run_tool, tiny_config

ZOO = osp.join(REPO, 'configs/deeplabv3plus/'
               'deeplabv3plus_xception65-d16_4xb4-30k_voc12aug-513x513.py')


def _kind(name, module):
    if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
        return 'norm'
    if name.endswith('bias'):
        return 'bias'
    if module.groups == module.in_channels and module.groups > 1:
        return 'depthwise'
    return 'conv'


def test_optimizer_has_tf_weight_decay_per_parameter_kind():
    from mmengine.optim import build_optim_wrapper
    cfg = Config.fromfile(ZOO)
    model = build_model(cfg.model)
    optim = build_optim_wrapper(model, cfg.optim_wrapper).optimizer
    assert isinstance(optim, torch.optim.SGD)
    group_of = {id(p): g for g in optim.param_groups for p in g['params']}
    modules = dict(model.named_modules())
    kinds = {}
    for name, param in model.named_parameters():
        group = group_of.pop(id(param))  # every parameter, exactly once
        kind = _kind(name, modules[name.rpartition('.')[0]])
        expected = 4e-5 if kind == 'conv' else 0.0
        assert group['weight_decay'] == pytest.approx(expected), name
        assert group['lr'] == pytest.approx(0.007)
        assert group['momentum'] == 0.9
        kinds[kind] = kinds.get(kind, 0) + 1
    assert not group_of
    # BN gamma/beta are trained (not frozen, not forgotten)
    assert kinds['norm'] > 100 and kinds['depthwise'] > 50
    assert kinds['bias'] == 1  # the logits conv only
    (poly, ) = cfg.param_scheduler
    assert (poly.type, poly.power, poly.eta_min, poly.end) == ('PolyLR', 0.9,
                                                              0.0, 30000)
    norms = [m for m in model.modules()
             if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert all(m.momentum == pytest.approx(3e-4) for m in norms)


@pytest.mark.parametrize('name,lr', [
    ('deeplabv3plus_xception65-d16_4xb2-90k_cityscapes-769x769.py', 0.0035),
    ('deeplabv3plus_xception71-d8_4xb4-150k_ade20k-513x513.py', 0.007),
])
def test_learning_rate_scales_with_stated_batch(name, lr):
    cfg = Config.fromfile(osp.join(REPO, 'configs/deeplabv3plus', name))
    gpus, batch = name.split('_')[2].split('-')[0].split('xb')
    assert int(gpus) * int(batch) * 0.007 / 16 == pytest.approx(lr)
    assert cfg.train_dataloader.batch_size == int(batch)
    assert cfg.optim_wrapper.optimizer.lr == pytest.approx(lr)


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
