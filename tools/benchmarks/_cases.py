"""The models of the zoo configs as the benchmarks build, measure and step
them: the cases (config per name), the eval forward as a module, MAC
counts, BatchNorm calibration on random images (also the tests' way to a
random segmentor whose predictions vary) and :func:`prepare`, one variant
of a case as a timed step.
"""
import os.path as osp
import time

import torch
import torch.nn as nn

from tools import REPO
from tools.benchmarks._harness import synchronize

CONFIGS = {  # case -> config (configs/<algorithm>/<file>); 513x513 VOC-aug
    f'{b}-d{s}': f'deeplabv3plus_{b}-d{s}_4xb4-30k_voc12aug-513x513.py'
    for b in ('xception41', 'xception65', 'xception71', 'r101')
    for s in (8, 16)}
CONFIGS.update({
    f'mobilenetv2{m}-d16': f'deeplabv3_mobilenetv2{m}-d16_4xb4-30k_'
    'voc12aug-513x513.py' for m in ('', '-dm05')})
CONFIGS['mobilenetv2-ade20k-d16'] = ('deeplabv3plus_mobilenetv2-d16_4xb4-'
                                     '150k_ade20k-257x257.py')
CONFIGS['dpc-xception71-d16'] = ('dpc_xception71-d16_4xb2-90k_cityscapes-'
                                 '769x769.py')


def config_path(case):
    name = CONFIGS[case]
    return osp.join(REPO, 'configs', name.split('_')[0], name)


def build_case(case):
    """A case's segmentor (:func:`deeplabplus_mm.apis.build_model`, seed
    0)."""
    from deeplabplus_mm.apis import build_model
    return build_model(config_path(case), seed=0)


class Network(nn.Module):
    """The eval forward (``encode_decode``) at one size, as a module."""

    def __init__(self, model, size):
        super().__init__()
        self.model, self.metas = model, [dict(img_shape=(size, size))]

    def forward(self, x):
        return self.model.encode_decode(x, self.metas)


def _flop_analyzer(net, shape):
    from mmengine.analysis import FlopAnalyzer
    analyzer = FlopAnalyzer(net.eval(), (torch.zeros(shape), ))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return analyzer


@torch.no_grad()
def count_macs(model, size):
    """mmengine's ``FlopAnalyzer`` at size x size: (total, by operator)."""
    analyzer = _flop_analyzer(Network(model, size), (1, 3, size, size))
    return analyzer.total(), dict(analyzer.by_operator())


def counter_unit():
    """What FlopAnalyzer counts for one multiply-add (a 1x1 conv of one
    channel and one pixel without bias)."""
    return _flop_analyzer(nn.Conv2d(1, 1, 1, bias=False),
                          (1, 1, 1, 1)).total()


@torch.no_grad()
def conv_breakdown(model, size):
    """Conv MACs by kind (1x1, dense kxk, depthwise) and BN elements."""
    counts = dict(conv_1x1=0, conv_dense=0, conv_depthwise=0, bn_elements=0)

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            kind = ('conv_depthwise' if module.groups > 1 else
                    'conv_1x1' if k == 1 else 'conv_dense')
            counts[kind] += (output.numel() * module.in_channels //
                             module.groups * k)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            counts['bn_elements'] += output.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    Network(model, size).eval()(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return counts


@torch.no_grad()
def calibrate_bn(model, size, batch=2, batches=1, seed=None):
    """Give every BatchNorm the statistics of random images in [-1, 1]
    (``batches`` batches of ``batch`` x 3 x size x size, from a generator
    seeded with ``seed``, else torch's global one): running statistics
    reset, then the cumulative average of the batches, momenta restored.
    A random segmentor with default statistics predicts one class
    everywhere; calibrated, its predictions vary and its activations stay
    in range (no denormal floats). Returns the model in eval mode."""
    from torch.nn.modules.batchnorm import _BatchNorm
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    gen = None if seed is None else torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(batches):
        model(torch.rand(batch, 3, size, size, generator=gen) * 2 - 1,
              mode='tensor')
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return model.eval()


def prepare(case, mode, variant, size, batch=1, device='cpu',
            optimizer=False, on_ready=None):
    """One variant of a case as a step; returns ``(step, model,
    compile_s)``. eval: ``encode_decode`` of a batch of 1 under
    ``no_grad``; parts (``+``-joined) ``fuse`` (BN folded), ``cl``
    (channels_last), ``compile`` (``torch.compile``, inductor freezing).
    train: ``forward(mode='loss')`` + backward of ``batch`` images (with
    ``optimizer``: the config's optimizer step); parts ``cl`` (weights and
    input channels_last), ``cl-input`` (the input only, as
    ``train_channels_last`` configs), ``bf16`` (autocast). GPU steps end
    synchronised. ``on_ready()`` runs once the model and input exist."""
    from deeplabplus_mm.apis.inference import build_model, load_config
    parts, device = variant.split('+'), torch.device(device)
    torch.backends.cudnn.benchmark = device.type == 'cuda'
    cfg = load_config(config_path(case))
    model = build_model(cfg, seed=0).to(device)
    fmt = torch.channels_last if 'cl' in parts else torch.contiguous_format
    compile_s = None
    if mode == 'eval':
        from deeplabplus_mm.models.utils import prepare_for_inference
        prepare_for_inference(model.eval(), 'fuse' in parts, 'cl' in parts)
        net = Network(model, size).eval()
        x = torch.randn(1, 3, size, size).to(device).contiguous(
            memory_format=fmt)
        on_ready and on_ready()
        if 'compile' in parts:
            import torch._inductor.config as inductor_config
            inductor_config.freezing = True  # constant weights: prepacked
            net = torch.compile(net)
            with torch.no_grad():
                compile_s = time.perf_counter()
                net(x)
                compile_s = time.perf_counter() - compile_s

        def step():
            with torch.no_grad():
                net(x)
            synchronize(device)

        return step, model, compile_s
    model.train()
    if variant == 'cl-input':
        from deeplabplus_mm.engine import train_channels_last
        train_channels_last(model)
    else:
        model.to(memory_format=fmt)
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    gen = torch.Generator().manual_seed(0)  # random images and labels
    x = torch.randn(batch, 3, size, size, generator=gen).to(device)
    x, samples = x.contiguous(memory_format=fmt), []
    for _ in range(batch):
        samples.append(SegDataSample(metainfo=dict(img_shape=(size, size),
                                                   pad_shape=(size, size))))
        samples[-1].gt_sem_seg = PixelData(data=torch.randint(
            0, model.decode_head.num_classes, (1, size, size),
            generator=gen).to(device))
    if optimizer:
        from mmengine.optim import build_optim_wrapper
        optim = build_optim_wrapper(model, cfg.optim_wrapper)
    on_ready and on_ready()

    def step():
        if not optimizer:
            model.zero_grad(set_to_none=True)
        with torch.autocast(device.type, torch.bfloat16,
                            enabled='bf16' in parts):
            losses = model(x, samples, mode='loss')
            loss = sum(v for k, v in losses.items() if 'loss' in k)
        if optimizer:
            optim.update_params(loss)  # backward, step, zero_grad
        else:
            loss.backward()
        synchronize(device)

    return step, model, compile_s
