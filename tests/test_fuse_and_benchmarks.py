"""BN folding for inference, and smoke runs of ``tools/benchmarks/``.

The benchmarks are not timed here: each runs with ``--quick`` and reduced
sizes, must exit 0, and the figures it prints must be finite, positive and
consistent with each other (ratios in a plausible range). The tools' fast
path by default is tested in test_fast_path.py.
"""
import math
import os.path as osp
import re

import pytest
import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmengine.config import Config
from torch.nn.modules.batchnorm import _BatchNorm

from conftest import REPO, build_model, run_tool
from deeplabplus_mm.models.utils import (fold_sites, fusable_conv_modules,
                                         fuse_conv_bn)

ZOO_CONFIG = osp.join(
    REPO, 'configs/deeplabv3plus/'
    'deeplabv3plus_xception65-d16_4xb4-30k_voc12aug-513x513.py')
ATOL = 1e-4


# one torch thread in this process (conftest.one_thread)
pytestmark = pytest.mark.usefixtures('one_thread')


def build_segmentor(arch=65):
    cfg = Config.fromfile(ZOO_CONFIG)
    cfg.model.backbone.arch = arch
    return build_model(cfg.model)


def randomize_norms_(model, seed=0):
    """BN statistics and affine parameters far from the identity."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                    m.bias.copy_(torch.randn(c, generator=gen) * 0.2)
    return model


def logits(model, x):
    with torch.no_grad():
        return model(x, mode='tensor')


def assert_no_bn_in_conv_modules(model):
    conv_modules = [m for m in model.modules() if isinstance(m, ConvModule)]
    assert conv_modules
    for m in conv_modules:
        assert not any(isinstance(c, _BatchNorm) for c in m.modules())
        assert not m.with_norm and isinstance(m.conv.bias, nn.Parameter)


def test_fuse_xception41_segmentor_65x65():
    torch.manual_seed(0)
    model = randomize_norms_(build_segmentor(41)).eval()
    x = torch.randn(2, 3, 65, 65)
    before = logits(model, x)
    assert before.abs().max() > 0.05  # a meaningful comparison
    num = len(fusable_conv_modules(model))
    assert fuse_conv_bn(model) is model
    after = logits(model, x)
    torch.testing.assert_close(after, before, atol=ATOL, rtol=0)
    assert_no_bn_in_conv_modules(model)
    # Every BN of the model sat in a ConvModule after its conv.
    assert num > 0
    assert not any(isinstance(m, _BatchNorm) for m in model.modules())
    # A second call finds nothing left to fold and changes nothing.
    assert fusable_conv_modules(model) == []
    fuse_conv_bn(model)
    torch.testing.assert_close(logits(model, x), before, atol=ATOL, rtol=0)


def test_fuse_zoo_segmentor_with_tf_weights():
    """The zoo config with a TF checkpoint's values (drawn as TF initialises
    and trains them: tests/tf_names.py): realistic weight and BN statistics
    magnitudes."""
    import tf_names
    from deeplabplus_mm.converters import convert, expected_state_shapes
    tensors = tf_names.values(tf_names.xception_deeplabv3plus(65),
                              momentum=False)
    model = build_segmentor(65).eval()
    state_dict, _, _ = convert(tensors, expected_state_shapes(model))
    model.load_state_dict(state_dict, strict=True)
    # A smooth image with texture in [-1, 1], as the network sees one.
    yy, xx = torch.meshgrid(torch.linspace(0, 3, 65), torch.linspace(0, 5, 65),
                            indexing='ij')
    x = torch.stack([torch.sin(yy + xx), torch.cos(2 * yy - xx),
                     torch.sin(3 * xx) * 0.5 + yy / 6 - 0.25])[None]
    before = logits(model, x)
    assert before.abs().max() > 0.1
    after = logits(fuse_conv_bn(model), x)
    torch.testing.assert_close(after, before, atol=ATOL, rtol=0)
    assert_no_bn_in_conv_modules(model)


def test_fuse_refuses_training_mode():
    model = build_segmentor(41)
    with pytest.raises(ValueError, match='eval'):
        fuse_conv_bn(model.train())
    # A single BN left in training mode is refused as well.
    model.eval()
    model.backbone.entry_flow.conv1_1.bn.train()
    with pytest.raises(ValueError, match='eval'):
        fuse_conv_bn(model)
    assert isinstance(model.backbone.entry_flow.conv1_1.bn, _BatchNorm)


def test_fuse_respects_conv_module_order_and_affine():
    torch.manual_seed(0)
    pre_norm = ConvModule(4, 6, 3, padding=1, norm_cfg=dict(type='BN'),
                          order=('norm', 'conv', 'act'))
    no_affine = ConvModule(6, 5, 1, norm_cfg=dict(type='BN', affine=False))
    with_bias = ConvModule(5, 3, 3, padding=2, dilation=2, bias=True,
                           norm_cfg=dict(type='BN'), act_cfg=None)
    depthwise = ConvModule(3, 3, 3, padding=1, groups=3,
                           norm_cfg=dict(type='BN'))
    model = randomize_norms_(
        nn.Sequential(pre_norm, no_affine, with_bias, depthwise), 1).eval()
    with torch.no_grad():
        with_bias.conv.bias.normal_()
        no_affine.bn.running_mean.normal_()
        no_affine.bn.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 4, 9, 11)
    with torch.no_grad():
        before = model(x)
        fuse_conv_bn(model)
        after = model(x)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    # The pre-conv norm normalises the conv's *input*: it stays.
    assert isinstance(pre_norm.bn, _BatchNorm) and pre_norm.with_norm
    for m in (no_affine, with_bias, depthwise):
        assert isinstance(m.bn, nn.Identity) and not m.with_norm


def test_fuse_r101_segmentor_resnet_pairs():
    """mmseg's ResNetV1c pairs plain convs and BNs outside ConvModules: its
    deep stem (an nn.Sequential), the blocks' conv{i}/norm{i} and the
    shortcut projections (nn.Sequential) are folded too: no BN is left in
    the R101-d8 model, and the logits stay."""
    cfg = Config.fromfile(osp.join(
        REPO, 'configs/deeplabv3plus/'
        'deeplabv3plus_r101-d8_4xb4-30k_voc12aug-513x513.py'))
    model = randomize_norms_(build_model(cfg.model, seed=0)).eval()
    x = torch.randn(1, 3, 65, 65)
    before = logits(model, x)
    assert before.abs().max() > 0.05
    norms = sum(isinstance(m, _BatchNorm) for m in model.modules())
    sites = fold_sites(model)
    in_conv_modules = len(fusable_conv_modules(model))
    assert len(sites) == norms > in_conv_modules > 0
    fuse_conv_bn(model)
    after = logits(model, x)
    # Logits and activations of a 101-layer random model are larger than
    # the xception tests'; 1e-4 of their scale.
    scale = max(1., before.abs().max().item())
    torch.testing.assert_close(after, before, atol=ATOL * scale, rtol=0)
    assert not any(isinstance(m, _BatchNorm) for m in model.modules())
    assert model.backbone.layer1[0].norm1.__class__ is nn.Identity


def test_build_model_from_any_config_form():
    """``deeplabplus_mm.apis.build_model``, the one builder of the tests,
    the benchmarks and ``build_segmentor``: a file, a Config or its
    ``model`` give the same seeded random weights, another seed others;
    SyncBN becomes BN, the pretrained initialisation is dropped, and the
    config given is left as it was."""
    path = osp.join(REPO, 'configs/deeplabv3plus/'
                    'deeplabv3plus_r101-d8_4xb4-30k_voc12aug-513x513.py')
    cfg = Config.fromfile(path)
    models = [build_model(c, seed=0) for c in (path, cfg, cfg.model)]
    states = [m.state_dict() for m in models]
    for state in states[1:]:
        assert state.keys() == states[0].keys()
        assert all(torch.equal(state[k], states[0][k]) for k in state)
    other = build_model(cfg.model, seed=1).state_dict()
    assert not torch.equal(other['backbone.stem.0.weight'],
                           states[0]['backbone.stem.0.weight'])
    for model in models:
        assert not any(isinstance(m, nn.SyncBatchNorm)
                       for m in model.modules())
        assert any(isinstance(m, _BatchNorm) for m in model.modules())
        assert 'Pretrained' not in str(model.backbone.init_cfg)
    assert cfg.model.pretrained == 'open-mmlab://resnet101_v1c'
    assert cfg.model.backbone.norm_cfg.type == 'SyncBN'


def test_fuse_sequential_only_conv_then_bn():
    """In an nn.Sequential only a BN right after a plain Conv2d is folded:
    not one before a conv, not one after an activation."""
    torch.manual_seed(0)
    model = randomize_norms_(nn.Sequential(
        nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
        nn.BatchNorm2d(4), nn.Conv2d(4, 5, 1, bias=False),
        nn.BatchNorm2d(5)), 2).eval()
    x = torch.randn(2, 3, 9, 9)
    with torch.no_grad():
        before = model(x)
        fuse_conv_bn(model)
        after = model(x)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    kinds = [type(m).__name__ for m in model]
    assert kinds == ['BatchNorm2d', 'Conv2d', 'Identity', 'ReLU',
                     'BatchNorm2d', 'Conv2d', 'Identity']


# --------------------------------------------------------------------------
# Benchmarks: they run, and the figures they print hold together (not
# timed: on a shared machine only their consistency can be checked).
# --------------------------------------------------------------------------

# No waiting for a quiet machine, one thread (see ``one_thread``).
# no waiting for a quiet machine, no retries of disturbed runs (the tests
# check the figures' consistency, not the speed)
NO_WAIT = ('--patience', '0', '--max-other-cores', '64', '--threads', '1')


def run_benchmark(name, *args):
    proc = run_tool(osp.join('tools', 'benchmarks', name), *args,
                    timeout=600)
    assert proc.returncode == 0
    return proc.stdout


def cells(line):
    return [c.strip() for c in line.strip().strip('|').split('|')]


def table(out, *header):
    """The rows (lists of cell strings) of the Markdown table whose header
    row begins with the cells ``header``."""
    lines = out.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith('|')
                 and cells(ln)[:len(header)] == list(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith('|'):
            break
        rows.append(cells(line))
    assert rows, header
    return rows


def positive(text):
    """A figure as printed: finite and > 0."""
    value = float(text.rstrip('x%'))
    assert math.isfinite(value) and value > 0, text
    return value


def close(a, b, rel=0.02, abs_=0.011):
    """Equal up to the rounding of printed figures."""
    return abs(a - b) <= max(rel * max(abs(a), abs(b)), abs_)


def test_benchmark_model_quick():
    out = run_benchmark('model.py', '--quick', '--size', '65', '--cases',
                        'xception41-d16', '--modes', 'eval,train',
                        '--variants', 'base,fuse+cl,cl-input', '--warmup',
                        '0', '--repeats', '1', *NO_WAIT)
    assert 'FlopAnalyzer counts 1 for one multiply-add -> MACs' in out
    assert 'machine: ' in out and 'FAILED' not in out
    rows = {(r[1], r[2]): r for r in table(out, 'case')
            if r[0] == 'xception41-d16'}
    assert set(rows) == {('eval', 'base'), ('eval', 'fuse+cl'),
                         ('train', 'base'), ('train', 'cl-input')}
    seconds = {}
    for key, r in rows.items():
        t, per_s, rss, gemm = (positive(r[3]), positive(r[4]),
                               positive(r[5]), positive(r[8]))
        assert close(per_s, 1 / t), r  # images/s = 1 / (s/image)
        assert 1 < rss < 20000 and 1 < gemm < 1e5, r
        other = float(r[12])
        assert 0 <= other <= 64, r
        seconds[key] = t
        if key[0] == 'eval':
            gmacs, gflops = positive(r[6]), positive(r[7])
            # x41 OS16 at 65x65: ~0.8 G multiply-adds (1.74 G at 97x97)
            assert 0.5 < gmacs < 1.2, r
            assert close(gflops, 2 * gmacs / t, abs_=0.11), r
            assert close(float(r[9]), gflops / gemm * 100, abs_=1.01), r
    summary = re.search(r'SUMMARY: xception41-d16 eval (\d+\.\d+) s/image '
                        r'\(([\w+-]+), (\d+\.\d+)x its base\)', out)
    best, variant, ratio = summary.groups()
    assert float(best) == min(seconds['eval', v] for v in
                              ('base', 'fuse+cl'))
    assert seconds['eval', variant] == float(best)
    assert close(float(ratio), seconds['eval', 'base'] / float(best))
    assert 1 <= float(ratio) < 10


def test_benchmark_tta_quick():
    out = run_benchmark('tta.py', '--quick', '--size', '65', *NO_WAIT)
    rows = {r[0]: positive(r[1]) for r in table(out, 'what', 'seconds')}
    tf = rows["TF's protocol: TFMultiScaleSegTTAModel.test_step (12 views)"]
    tf_bare = rows["sum of its 12 bare forwards at the views' own sizes"]
    ours = rows["mmseg's protocol: AccumulatingSegTTAModel.test_step "
                "(12 views)"]
    mmseg = rows["mmseg's protocol: mmseg's SegTTAModel.test_step (12 views)"]
    bare = rows["sum of mmseg's protocol's 12 bare forwards"]
    kept = rows['the 12 forwards keeping their logits (as mmseg merges)']
    assert close(rows["overhead ratio, TF's (TTA / its bare forwards)"],
                 tf / tf_bare, abs_=0.002)
    assert close(rows['overhead ratio, AccumulatingSegTTAModel (TTA / bare '
                      'forwards)'], ours / bare, abs_=0.002)
    assert close(rows["overhead ratio, mmseg's SegTTAModel"], mmseg / bare,
                 abs_=0.002)
    assert close(rows["mmseg's / forwards keeping their logits"],
                 mmseg / kept, abs_=0.002)
    assert close(rows["TF's protocol / AccumulatingSegTTAModel (today's "
                      "TTA)"], tf / ours, abs_=0.002)
    for name in ("in-call overhead, TF's (test_step / its own forwards)",
                 'in-call overhead, AccumulatingSegTTAModel',
                 "in-call overhead, mmseg's SegTTAModel"):
        assert 0.5 < rows[name] < 5, name  # TTA adds to its forwards
    # every ratio in a plausible range: the same work, the same model
    for ratio in (tf / tf_bare, ours / bare, mmseg / bare):
        assert 0.3 < ratio < 5
    assert 'network inputs 33, 49, 65, 81, 97, 113' in out  # own sizes
    flips = table(out, 'scale')
    assert [r[0] for r in flips] == ['0.50', '0.75', '1.00', '1.25', '1.50',
                                     '1.75', 'all']
    for r in flips:
        seq, bat, ratio = positive(r[2]), positive(r[3]), positive(r[4])
        assert close(ratio, bat / seq), r
    total = flips[-1]
    assert close(positive(total[2]),
                 sum(positive(r[2]) for r in flips[:-1]), abs_=0.006)
    rss = {r[0]: positive(r[1]) for r in
           table(out, 'what', 'peak RSS MiB')}
    assert len(rss) == 5 and all(v < 5000 for v in rss.values())
    summary = re.search(r"SUMMARY: xception41 65x65: TTA, TF's protocol "
                        r'\(TFMultiScaleSegTTAModel\) (\d+\.\d+) s vs '
                        r"(\d+\.\d+) s of its views' bare forwards, "
                        r'overhead ratio (\d+\.\d+)', out)
    assert summary, out[-2000:]
    assert close(float(summary.group(1)), tf)
    assert close(float(summary.group(3)), tf / tf_bare, abs_=0.002)


def test_benchmark_convert_quick():
    import importlib.util
    out = run_benchmark('convert.py', '--quick', *NO_WAIT)
    facts = re.search(r'checkpoint: (\d+) MiB, (\d+) tensors converted, '
                      r'(\d+) ignored', out)
    size, converted, ignored = (int(v) for v in facts.groups())
    assert size > 100 and converted > 0 and ignored > 0
    rows = {r[0].strip(): r for r in table(out, 'what')}
    cli = rows['ours: python tools/convert_tf_checkpoint.py (whole process)']
    imports = next(r for k, r in rows.items()
                   if k.startswith('of which imports:'))
    convert = rows['of which open_checkpoint + convert_checkpoint (RSS: '
                   'growth after imports)']
    read = next(r for k, r in rows.items()
                if k.startswith('ours: open_checkpoint + read every tensor'))
    cli_s, cli_mib = positive(cli[1]), positive(cli[2])
    assert close(positive(cli[3]), cli_mib / size)
    # the parts, timed in runs of their own, in a plausible range of the
    # whole process (not strictly below it: a busy machine's noise)
    for part in (imports, convert, read):
        assert 0.02 < positive(part[1]) / cli_s < 5, part
    for r in (convert, read):
        assert float(r[2].lstrip('+')) >= 0
    summary = re.search(r'SUMMARY: conversion as a user runs it \(whole CLI '
                        r'process\) (\d+\.\d+) s, peak RSS (\d+) MiB', out)
    assert close(float(summary.group(1)), cli_s)
    assert close(float(summary.group(2)), cli_mib, abs_=1)
    # Without --tf-python TensorFlow is looked for in this interpreter.
    if importlib.util.find_spec('tensorflow') is None:
        assert rows['TensorFlow process'][1] == 'skipped: not installed'
        assert 'TensorFlow: skipped (not installed)' in out
    else:
        tf_row = next(r for k, r in rows.items() if k.startswith('TF '))
        ratio = re.search(r'ours (\d+\.\d+)x', out)
        assert close(float(ratio.group(1)), cli_s / positive(tf_row[1]))


def test_benchmark_data_quick(tmp_path):
    out = run_benchmark('data.py', '--quick', '--voc-images', '8',
                        '--batches', '2', '--coco-images', '12',
                        '--workers', '0,1', '--cache', str(tmp_path),
                        *NO_WAIT)
    loader = table(out, 'DataLoader workers')
    assert [r[0] for r in loader] == ['0', '1']
    base = positive(loader[0][1])
    for r in loader:
        assert close(positive(r[2]), positive(r[1]) / base), r
    coco = table(out, 'processes')
    one = positive(coco[0][1])
    for r in coco:
        speedup = positive(r[2])
        assert close(speedup, positive(r[1]) / one), r
        assert close(positive(r[3]), speedup / int(r[0]) * 100, abs_=1.01)
    per = {r[0].split(' (')[0]: positive(r[1]) for r in
           table(out, 'label source')}
    png, raster = per['precomputed PNG'], per['on the fly']
    ratio = re.search(r'on-the-fly rasterisation (\d+\.\d+)x the cost',
                      out)
    assert close(float(ratio.group(1)), raster / png)


def test_benchmark_model_cuda_quick():
    """``model.py --device cuda``: the GPU training figures where CUDA is,
    a one-line skip where it is not."""
    out = run_benchmark('model.py', '--device', 'cuda', '--quick',
                        '--repeats', '1', *NO_WAIT)
    if torch.cuda.is_available():
        assert 'GPU: ' in out and 'x fp32 throughput (goal >= 1.5x' in out
    else:
        assert out.strip() == ('skipped: no GPU (--device cuda, but torch '
                               'sees no CUDA device)')


def test_benchmark_model_bf16_training_on_cpu():
    """The GPU figures' training steps (fp32 and bf16 autocast, each also
    channels_last, with the config's optimizer step) run on the CPU at a
    tiny size, and the bf16 summary names the faster bf16 variant and its
    ratios to fp32 (``base``)."""
    out = run_benchmark('model.py', '--size', '65', '--cases',
                        'xception41-d16', '--modes', 'train', '--variants',
                        'base,cl,bf16,bf16+cl', '--optimizer', '--batch',
                        '2', '--warmup', '0', '--repeats', '1', *NO_WAIT)
    assert 'train batch 2 with the optimizer step' in out
    rows = {r[2]: r for r in table(out, 'case')}
    assert list(rows) == ['base', 'cl', 'bf16', 'bf16+cl']
    seconds = {v: positive(r[3]) for v, r in rows.items()}
    peak = {v: positive(r[5]) for v, r in rows.items()}
    summary = re.search(r', (bf16(?:\+cl)?) (\d+\.\d+)x fp32 throughput '
                        r'\(goal >= 1\.5x: (?:met|NOT met)\), (\d+\.\d+)x '
                        r'fp32 memory', out)
    variant, speed, memory = summary.groups()
    assert seconds[variant] == min(seconds['bf16'], seconds['bf16+cl'])
    assert close(float(speed), seconds['base'] / seconds[variant], abs_=0.05)
    assert close(float(memory), peak[variant] / peak['base'], abs_=0.05)


def test_benchmark_defaults_quick():
    """The default commands before/after: each run took the path it should
    (the benchmark checks the tools' logs and fails otherwise), the times
    are positive, the work is part of the command, the ratios are the
    ratios of the medians."""
    out = run_benchmark('defaults.py', '--quick', *NO_WAIT)
    rows = table(out, 'path')
    assert [(r[0], r[1]) for r in rows] == [
        (p, v) for p in ('test', 'tta', 'infer')
        for v in ('before', 'after', 'before / after')]
    for i in range(0, len(rows), 3):
        before, after, ratio = rows[i:i + 3]
        for r in (before, after):
            command, work = positive(r[2]), positive(r[3])
            assert work < command, r
            assert close(positive(r[4]), work / (1 if r[0] == 'tta' else 2),
                         abs_=0.002)
            positive(r[5])  # CPU s
            assert 0 <= float(r[6]) <= 64
        for col in (2, 3, 5):
            assert close(positive(ratio[col]),
                         positive(before[col]) / positive(after[col]))
        # the same work on the same model, plain or folded
        assert 0.2 < positive(ratio[3]) < 5
    assert 'SUMMARY: default command after / before (speed-up): test ' in out
