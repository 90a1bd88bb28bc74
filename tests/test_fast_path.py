"""The fast path (BN folded into the convs, channels_last weights) is what
users get without flags: tools/test.py (with and without --tta),
tools/infer.py, mmseg's own tools/test.py on our configs, and the
validation during training; ``--no-fast`` / ``fast_inference=False`` runs
the plain model. Every comparison goes through the real tools."""
import os.path as osp
import re
import shutil

import mmseg
import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn.modules.batchnorm import _BatchNorm

from conftest import REPO, build_model, run_tool, tiny_config
from deeplabplus_mm.engine import register_safe_checkpoints
from tools.benchmarks._cases import calibrate_bn

register_safe_checkpoints()  # our training checkpoints load weights_only

# The tolerance of the fusion tests of test_fuse_and_benchmarks.py: logits
# to 1e-4 of their scale (those tests' models have logits of order 1; the
# calibrated model here reaches ~30, and float32 rounding grows with it),
# label maps equal but for argmax ties flipped by rounding.
ATOL = 1e-4
MIN_AGREEMENT = 0.999
HOOK_LINE = re.compile(r'FastInferenceHook: (test|validation) on a copy of '
                       r'the model: folded (\d+) BatchNorms into their convs, '
                       r'weights in channels_last')


# one torch thread in this process (conftest.one_thread)
pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def calibrated(tmp_path_factory, synth_voc):
    """The demo config's model with random weights and BN statistics
    measured on random images (a random model with default statistics
    predicts one class everywhere; calibrated, its predictions vary over
    the image), saved as the converter does; a config on the data; the
    number of BNs of the model."""
    folder = tmp_path_factory.mktemp('calibrated')
    config = tiny_config(folder, synth_voc, 1)
    model = calibrate_bn(build_model(config, seed=0), 97, batch=4)
    ckpt = folder / 'calibrated.pth'
    torch.save(dict(state_dict=model.state_dict(), meta={}), ckpt)
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    return config, str(ckpt), len(norms)


def agreement(dir_a, dir_b, pattern='*.png'):
    """Fraction of equal pixels over the label PNGs of two folders, and the
    classes predicted."""
    pngs = sorted(p for p in dir_a.glob(pattern)
                  if not p.stem.endswith('_overlay'))
    assert pngs, f'no predictions in {dir_a}'
    agree = total = 0
    classes = set()
    for png in pngs:
        a = np.array(Image.open(png))
        b = np.array(Image.open(dir_b / png.name))
        assert a.shape == b.shape
        agree += (a == b).sum()
        total += a.size
        classes |= set(np.unique(a).tolist())
    return agree / total, classes, len(pngs)


def run_test_tool(script, config, ckpt, out, *flags):
    return run_tool(script, config, ckpt, '--out', str(out), '--work-dir',
                    str(out) + '_work', *flags).stdout


def miou(log):
    return re.findall(r'mIoU: (\d+\.\d+)', log)[-1]


def assert_same_predictions(tmp_path, fast_log, plain_log, num_norms):
    hooks = HOOK_LINE.findall(fast_log)
    assert hooks == [('test', str(num_norms))], hooks
    assert 'FastInferenceHook: off (fast_inference=False)' in plain_log
    assert not HOOK_LINE.search(plain_log)
    share, classes, n = agreement(tmp_path / 'fast', tmp_path / 'plain')
    assert n == 3  # the val split
    assert len(classes) > 1  # not a constant prediction
    assert share > MIN_AGREEMENT
    assert miou(fast_log) == miou(plain_log)


def test_prepared_copy_leaves_the_model_untouched():
    """FastInferenceHook's copy (``prepared_copy``): the same tensors,
    values and layouts as ``prepare_for_inference`` on a deep copy, the
    model's parameters and buffers neither replaced nor rewritten (values,
    strides, storage), the weights it does not change shared, and the
    predictions of the plain model."""
    import copy

    from conftest import small_tf_segmentor
    from deeplabplus_mm.models.utils import (prepare_for_inference,
                                             prepared_copy)
    model = small_tf_segmentor()
    before = {k: (t, t.clone(), t.stride(), t.data_ptr())
              for k, t in model.state_dict(keep_vars=True).items()}
    reference = copy.deepcopy(model)
    folded = prepare_for_inference(reference, True, True)
    fast, count = prepared_copy(model, True, True)
    assert count == folded > 0
    after = model.state_dict(keep_vars=True)
    assert after.keys() == before.keys()
    for key, (obj, value, stride, ptr) in before.items():
        now = after[key]
        assert now is obj and now.stride() == stride, key
        assert now.data_ptr() == ptr and torch.equal(now, value), key
    expected = reference.state_dict()
    got = fast.state_dict()
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(got[key], value), key
        assert got[key].stride() == value.stride(), key
    head = model.decode_head.conv_seg
    assert fast.decode_head.conv_seg.bias is head.bias  # 1-D: shared
    assert fast.decode_head.conv_seg.weight is not head.weight
    assert not fast.training
    assert not any(isinstance(m, _BatchNorm) for m in fast.modules())
    assert model.training is False and any(
        isinstance(m, _BatchNorm) for m in model.modules())
    x = torch.rand(1, 3, 65, 65) * 2 - 1
    with torch.no_grad():
        plain = model(x, mode='tensor')
        diff = (fast(x, mode='tensor') - plain).abs().max().item()
    assert diff <= ATOL * max(1., plain.abs().max().item())


def test_test_py_default_is_fast_and_predicts_as_plain(tmp_path, calibrated):
    config, ckpt, num_norms = calibrated
    fast = run_test_tool('tools/test.py', config, ckpt, tmp_path / 'fast')
    plain = run_test_tool('tools/test.py', config, ckpt, tmp_path / 'plain',
                          '--no-fast')
    assert_same_predictions(tmp_path, fast, plain, num_norms)
    # The old flags still work (with a deprecation warning, hidden from
    # --help), and win over a config that turned the fast path off.
    old = run_test_tool('tools/test.py', config, ckpt, tmp_path / 'old',
                        '--fuse-conv-bn', '--channels-last',
                        '--cfg-options', 'fast_inference=False')
    assert HOOK_LINE.findall(old) == [('test', str(num_norms))]
    assert 'FutureWarning: --fuse-conv-bn and --channels-last are ' \
        'deprecated' in old
    for tool in ('tools/test.py', 'tools/infer.py'):
        usage = run_tool(tool, '--help').stdout
        assert '--no-fast' in usage and '--fuse-conv-bn' not in usage
    assert agreement(tmp_path / 'old', tmp_path / 'plain')[0] > MIN_AGREEMENT
    bad = run_tool('tools/test.py', config, ckpt, '--no-fast',
                   '--fuse-conv-bn', check=False)
    assert bad.returncode == 2 and '--no-fast contradicts' in bad.stdout


def test_test_py_tta_default_is_fast_and_predicts_as_plain(tmp_path,
                                                           calibrated):
    """The hook folds the segmentor inside the TTA model (any wrapper
    with a ``module``)."""
    config, ckpt, num_norms = calibrated
    fast = run_test_tool('tools/test.py', config, ckpt, tmp_path / 'fast',
                         '--tta')
    plain = run_test_tool('tools/test.py', config, ckpt, tmp_path / 'plain',
                          '--tta', '--no-fast')
    assert_same_predictions(tmp_path, fast, plain, num_norms)


def test_mmseg_test_py_on_our_config_is_fast(tmp_path, calibrated):
    """mmseg 1.2.2's own tools/test.py (installed as mmseg/.mim/tools),
    run from a folder of its own: it knows nothing of our package; the
    config's custom_imports and custom_hooks give it the fast path."""
    config, ckpt, num_norms = calibrated
    source = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools',
                      'test.py')
    assert osp.isfile(source), f'{source}: mmseg installed without tools'
    tool = tmp_path / 'mmseg_tools' / 'test.py'
    tool.parent.mkdir()
    shutil.copy(source, tool)
    fast = run_test_tool(str(tool), config, ckpt, tmp_path / 'fast')
    plain = run_test_tool(str(tool), config, ckpt, tmp_path / 'plain',
                          '--cfg-options', 'fast_inference=False')
    assert_same_predictions(tmp_path, fast, plain, num_norms)


def test_infer_py_default_is_fast_and_predicts_as_plain(tmp_path, synth_voc,
                                                        calibrated):
    config, ckpt, _ = calibrated
    images = osp.join(synth_voc, 'JPEGImages')
    logs = {}
    for name, flags in (('fast', ()), ('plain', ('--no-fast', ))):
        logs[name] = run_tool('tools/infer.py', config, ckpt, images,
                              '--out-dir', str(tmp_path / name),
                              *flags).stdout
    assert 'model: BN folded into the convs, channels_last' in logs['fast']
    assert 'model: plain (--no-fast)' in logs['plain']
    share, classes, n = agreement(tmp_path / 'fast', tmp_path / 'plain')
    assert n == 11 and len(classes) > 1
    assert share > MIN_AGREEMENT


def test_segmenter_follows_the_config(synth_voc, calibrated):
    from mmengine.config import Config

    from deeplabplus_mm.apis import Segmenter
    config, ckpt, _ = calibrated
    fast = Segmenter(config, ckpt)
    assert (fast.fuse_conv_bn, fast.channels_last) == (True, True)
    assert not any(isinstance(m, _BatchNorm) for m in fast.model.modules())
    conv = fast.model.backbone.entry_flow.conv1_1.conv
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    cfg = Config.fromfile(config)
    cfg.fast_inference = False
    plain = Segmenter(cfg, ckpt)
    assert (plain.fuse_conv_bn, plain.channels_last) == (False, False)
    assert any(isinstance(m, _BatchNorm) for m in plain.model.modules())
    # Explicit arguments win over the config.
    assert Segmenter(cfg, ckpt, fuse_conv_bn=True).fuse_conv_bn
    x = torch.randn(1, 3, 70, 90, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = fast.model(x, mode='tensor')
        b = plain.model(x, mode='tensor')
    scale = max(1., b.abs().max().item())
    assert scale > 5  # a meaningful comparison
    torch.testing.assert_close(a, b, atol=ATOL * scale, rtol=0)
    image = osp.join(synth_voc, 'JPEGImages', 'synth_00008.jpg')
    a, b = plain(image), fast(image)
    assert a.shape == b.shape and len(np.unique(a)) > 1
    assert (a == b).mean() > MIN_AGREEMENT


def test_validation_during_training_leaves_the_run_bit_identical(
        tmp_path, synth_voc):
    """Train 4 iterations with validation after 2 and 4, a checkpoint at
    each and the best one kept, with the default hook and with
    fast_inference=False: every checkpoint (weights, BN buffers, optimizer
    state) is bit-identical, the weights saved are unfused, and the
    validation ran on the folded copy with the same metrics."""
    cfg = tiny_config(tmp_path, synth_voc, 4, val_interval=2,
                      checkpoint_interval=2, deterministic=True)
    logs, dirs = {}, {}
    for name, flags in (('fast', ()),
                        ('plain', ('fast_inference=False', ))):
        dirs[name] = tmp_path / name
        logs[name] = run_tool(
            'tools/train.py', cfg, '--work-dir', str(dirs[name]),
            '--cfg-options', 'default_hooks.checkpoint.save_best=mIoU',
            *flags).stdout
    assert [h[0] for h in HOOK_LINE.findall(logs['fast'])] == \
        ['validation', 'validation']
    assert not HOOK_LINE.search(logs['plain'])
    assert re.findall(r'mIoU: (\d+\.\d+)', logs['fast']) == \
        re.findall(r'mIoU: (\d+\.\d+)', logs['plain'])
    best = [p.name for p in dirs['fast'].glob('best_mIoU_iter_*.pth')]
    assert len(best) == 1
    for name in ('iter_2.pth', 'iter_4.pth', best[0]):
        a = torch.load(dirs['fast'] / name)
        b = torch.load(dirs['plain'] / name)
        assert a['state_dict'].keys() == b['state_dict'].keys()
        # unfused: every BN's parameters and statistics are saved
        assert any(k.endswith('.bn.running_var') for k in a['state_dict'])
        differing = [k for k in a['state_dict']
                     if not torch.equal(a['state_dict'][k],
                                        b['state_dict'][k])]
        assert not differing, (name, differing[:5])
        if name.startswith('best'):
            continue  # saved without optimizer state
        sa, sb = a['optimizer']['state'], b['optimizer']['state']
        assert sa.keys() == sb.keys() and sa
        for k in sa:
            for field in sa[k]:
                assert torch.equal(torch.as_tensor(sa[k][field]),
                                   torch.as_tensor(sb[k][field])), (name, k)


def test_mmseg_inferencer_with_the_documented_line(synth_voc, calibrated):
    """mmseg's MMSegInferencer builds its model without a runner (no
    hooks), so it runs the plain model; the README's one line after it
    gives the fast path with the same predictions."""
    from mmseg.apis import MMSegInferencer

    from deeplabplus_mm.models.utils import prepare_for_inference
    config, ckpt, num_norms = calibrated
    images = [osp.join(synth_voc, 'JPEGImages', f'synth_0000{i}.jpg')
              for i in (8, 9)]
    inferencer = MMSegInferencer(model=config, weights=ckpt, device='cpu')
    assert len([m for m in inferencer.model.modules()
                if isinstance(m, _BatchNorm)]) == num_norms
    plain = inferencer(images)['predictions']
    assert prepare_for_inference(inferencer.model, fuse=True,
                                 channels_last=True) == num_norms
    fast = inferencer(images)['predictions']
    for a, b in zip(plain, fast):
        assert a.shape == b.shape and len(np.unique(a)) > 1
        assert (a == b).mean() > MIN_AGREEMENT


def test_train_channels_last_carries_the_network():
    """train_channels_last: in training mode a channels_last input carries
    the convolutions of backbone and head in channels_last; the loss and the
    gradients equal the plain model's up to float rounding, the weights and
    their gradients keep their layout (optimizer state, DDP buckets and
    checkpoints as in a plain run); eval mode is left alone."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    from conftest import DEMO_CONFIG
    from deeplabplus_mm.engine import train_channels_last
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 65, 65, generator=gen)
    samples = []
    for _ in range(2):
        s = SegDataSample(metainfo=dict(img_shape=(65, 65),
                                        pad_shape=(65, 65)))
        s.gt_sem_seg = PixelData(
            data=torch.randint(0, 21, (1, 65, 65), generator=gen))
        samples.append(s)
    layouts = []

    def record(module, args, output):
        layouts.append(output.is_contiguous(
            memory_format=torch.channels_last) and not
            output.is_contiguous())

    models, losses, grads = {}, {}, {}
    for name in ('float64', 'plain', 'fast'):
        model = models[name] = build_model(DEMO_CONFIG, seed=0).train()
        inputs = x
        if name == 'float64':  # the reference for float32's rounding
            model.double()
            inputs = x.double()
        if name == 'fast':
            handle = train_channels_last(model)
            convs = [m for n, m in model.named_modules()
                     if isinstance(m, torch.nn.Conv2d)
                     and n.startswith(('backbone.exit_flow', 'decode_head'))]
            hooks = [c.register_forward_hook(record) for c in convs]
        torch.manual_seed(1)  # the same dropout mask
        out = model(inputs, samples, mode='loss')
        loss = sum(v for k, v in out.items() if 'loss' in k)
        loss.backward()
        losses[name] = loss.item()
        grads[name] = torch.cat([p.grad.double().flatten()
                                 for p in model.parameters()])
    # the convs with spatial outputs ran channels_last (1x1 maps count as
    # both layouts)
    assert sum(layouts) > len(convs) // 2
    assert abs(losses['fast'] - losses['plain']) < 1e-5 * losses['plain']
    for (name, p), q in zip(models['fast'].named_parameters(),
                            models['plain'].parameters()):
        assert p.is_contiguous() and p.grad.is_contiguous(), name
    # Training-mode BN on a random network at batch 2 amplifies rounding:
    # float32 gradients are a few % off the float64 ones either way.
    ref = grads['float64']
    error = {k: ((grads[k] - ref).norm() / ref.norm()).item()
             for k in ('plain', 'fast')}
    assert error['plain'] < 0.05 and error['fast'] < 4 * error['plain'], \
        error
    # eval mode: not touched
    layouts.clear()
    models['fast'].eval()
    with torch.no_grad():
        models['fast'](x, mode='tensor')
    assert not any(layouts)
    for h in hooks:
        h.remove()
    handle.remove()


def test_tools_train_runs_channels_last_where_the_config_says(tmp_path,
                                                              synth_voc):
    """tools/train.py with train_channels_last=True trains channels_last
    (the hook says so, the run learns); the shipped families set the switch
    as measured (docs/benchmarks.md): on for ours at 513, off for mmseg's
    ResNet and for the 97x97 demo."""
    from mmengine.config import Config
    cfg = tiny_config(tmp_path, synth_voc, 2, val_interval=100)
    out = run_tool('tools/train.py', cfg, '--work-dir', str(tmp_path / 'w'),
                   '--cfg-options', 'train_channels_last=True').stdout
    assert 'ChannelsLastTrainingHook: training in channels_last memory ' \
        'format' in out
    losses = [float(v) for v in re.findall(r' loss: (\d+\.\d+)', out)]
    assert len(losses) == 2 and all(0 < v < 100 for v in losses)
    expected = {
        'deeplabv3plus/deeplabv3plus_xception41-d8_4xb4-30k_voc12aug-'
        '513x513.py': True,
        'deeplabv3/deeplabv3_mobilenetv2-dm05-d16_4xb4-30k_voc12aug-'
        '513x513.py': True,
        'dpc/dpc_xception71-d16_4xb2-90k_cityscapes-769x769.py': True,
        'deeplabv3plus/deeplabv3plus_r101-d16_4xb4-30k_voc12aug-'
        '513x513.py': False,
        'demo/deeplabv3plus_xception41-d16_1xb8-300it_synthvoc-97x97.py':
        False,
    }
    for name, on in expected.items():
        cfg = Config.fromfile(osp.join(REPO, 'configs', name))
        assert cfg.train_channels_last is on, name
        assert 'ChannelsLastTrainingHook' in [
            h['type'] for h in cfg.custom_hooks], name
