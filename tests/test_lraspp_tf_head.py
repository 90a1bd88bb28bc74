"""LRASPPTFHead (TF DeepLab's MobileNetV3 segmentation head) and the zoo's
MobileNetV3 rows. (End to end against TF, through the converter CLI and the
shipped configs: tests/test_tf_eval_refs.py, cases mobilenetv3_*.) The head
alone: on the backbone end points TF computed (tests/tf_eval/
mobilenetv3_*_cityscapes: ``features`` = MobilenetV3/Conv_1, ``low_level`` =
the decoder's layer_N/depthwise_output), with the case's variables mapped
through the converter's head table, the head of the shipped config gives
TF's gate (the image pooling branch, resized) and TF's logits. Also what
the small references cannot show: the zoo's 25x25 pooling window at 769
and its (4, 5) stride over the 1025x2049 evaluation size, the forward
order, the errors, and the zoo rows through ``--zoo``. Needs no
../shared."""
import json
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from torch.nn.modules.batchnorm import _BatchNorm

import deeplabplus_mm  # noqa: F401  (registers LRASPPTFHead)
import tf_values
from conftest import REPO, build_model, run_tool
from deeplabplus_mm.converters import map_scope, name_tables, to_torch_layout
from deeplabplus_mm.models.decode_heads import LRASPPTFHead
from mmseg.registry import MODELS
from tools.fixtures.tf_bundle_writer import write_checkpoint

CASES = ['mobilenetv3_large_cityscapes', 'mobilenetv3_small_cityscapes']
CONFIG = ('configs/lraspp/'
          'lraspp_mobilenetv3-{}-d32_4xb2-90k_cityscapes-769x769.py')
ATOL = 1e-4


def reference(case):
    folder = osp.join(REPO, 'tests', 'tf_eval', case)
    with open(osp.join(folder, 'reference.json')) as f:
        meta = json.load(f)
    with open(osp.join(folder, 'variables.tsv')) as f:
        table = [(name, tuple(int(s) for s in shape.split(',')))
                 for name, shape in (line.rstrip('\n').split('\t')
                                     for line in f)]
    return meta, table, np.load(osp.join(folder, 'logits.npz'))


def head_from_config(config, cfg_options=None):
    cfg = Config.fromfile(osp.join(REPO, config))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    head_cfg = dict(cfg.model.decode_head)
    head_cfg['norm_cfg'] = dict(head_cfg['norm_cfg'], type='BN')
    return MODELS.build(head_cfg).eval()


def head_state_dict(table):
    """The head's parameters from TF's variables (tf_values' values)
    through the converter's LRASPPTFHead scope table."""
    state = {}
    for name, shape in table:
        scope, _, leaf = name.rpartition('/')
        if scope.endswith('/BatchNorm'):
            scope, leaf = scope[:-len('/BatchNorm')], 'BatchNorm/' + leaf
        path = map_scope(scope, head='LRASPPTFHead')
        if path is None or not path.startswith('decode_head.'):
            continue
        leaves = (name_tables.NORM_CONV_LEAVES if leaf.startswith('Batch')
                  or path.endswith('aspp0') else
                  name_tables.PLAIN_CONV_LEAVES)
        value = to_torch_layout(name, tf_values.variable_value(name, shape))
        key = f'{path[len("decode_head."):]}.{leaves[leaf]}'
        state[key] = torch.from_numpy(np.ascontiguousarray(value))
    return state


@pytest.mark.parametrize('case', CASES)
def test_head_gives_tfs_logits_on_tfs_features(case):
    meta, table, ref = reference(case)
    head = head_from_config(meta['config'], meta['cfg_options'])
    assert head.pool_kernel == (2, 3)  # 33, 65 at output stride 32
    head.load_state_dict(head_state_dict(table), strict=True)
    for size in meta['sizes']:
        features = torch.from_numpy(
            ref[f'features_{size}']).permute(0, 3, 1, 2)
        low_level = torch.from_numpy(
            ref[f'low_level_{size}']).permute(0, 3, 1, 2)
        with torch.no_grad():
            logits = head([low_level, features])
            gate = head.gate(features).permute(0, 2, 3, 1).numpy()
            head.pool_kernel = None  # a global pooling instead
            global_gate = head.gate(features).permute(0, 2, 3, 1).numpy()
            head.pool_kernel = (2, 3)
        for name, ours in (('logits', logits.permute(0, 2, 3, 1).numpy()),
                           ('gate', gate)):
            theirs = ref[f'{name}_{size}']
            assert ours.shape == theirs.shape, (name, size)
            diff = np.abs(ours.astype(np.float64) - theirs).max()
            assert diff <= ATOL, f'{case} {size} {name}: max |diff| {diff}'
        # the window and stride matter at these sizes (2x2 windows of 6x8
        # and 7x9 features): a global pooling misses TF's gate by > 10 x ATOL
        assert np.abs(global_gate - ref[f'gate_{size}']).max() > 10 * ATOL


def test_zoo_config_pads_to_the_evaluation_size():
    """The shipped config's test padding (1025x2049, 0 after normalisation =
    TF's 127.5) gives the zoo's window its 3x9 positions: a small image's
    prediction is the network's on the explicitly padded image, cropped."""
    cfg = Config.fromfile(osp.join(REPO, CONFIG.format('small')))
    model = build_model(cfg.model, seed=0).eval()
    rgb = tf_values.make_image(97, 129)[0]
    from mmseg.structures import SegDataSample
    sample = SegDataSample(metainfo=dict(
        ori_shape=(97, 129), img_shape=(97, 129), pad_shape=(97, 129),
        padding_size=[0, 0, 0, 0]))
    data = model.data_preprocessor(dict(
        inputs=[torch.from_numpy(rgb[..., ::-1].copy()).permute(2, 0, 1)],
        data_samples=[sample]), False)
    assert tuple(data['inputs'].shape[2:]) == (1025, 2049)
    gates = []
    model.decode_head.image_pooling.register_forward_hook(
        lambda m, args, out: gates.append(out.shape[2:]))
    with torch.no_grad():
        got = model.predict(data['inputs'], data['data_samples'])
        x = torch.from_numpy(rgb.astype(np.float32)).permute(2, 0, 1)
        x = F.pad(x[None] / 127.5 - 1, (0, 2049 - 129, 0, 1025 - 97))
        logits = model.decode_head(model.extract_feat(x))
    expected = F.interpolate(logits, (1025, 2049), mode='bilinear',
                             align_corners=True)[0, :, :97, :129]
    assert gates == [(3, 9), (3, 9)]
    torch.testing.assert_close(got[0].seg_logits.data, expected, atol=1e-5,
                               rtol=0)
    # the default fast path of tools/test.py (BN folded, channels_last)
    from deeplabplus_mm.models.utils import prepared_copy
    fast, folded = prepared_copy(model, fuse=True, channels_last=True)
    assert folded == len([m for m in model.modules()
                          if isinstance(m, _BatchNorm)])
    with torch.no_grad():
        torch.testing.assert_close(
            fast.decode_head(fast.extract_feat(x)), logits, atol=1e-4,
            rtol=0)


def _head(**kwargs):
    torch.manual_seed(0)
    args = dict(in_channels=16, channels=8, num_classes=5, c1_in_channels=6,
                in_index=1, norm_cfg=dict(type='BN', eps=1e-5),
                align_corners=True)
    args.update(kwargs)
    head = LRASPPTFHead(**args)
    for m in head.modules():
        if isinstance(m, _BatchNorm):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return head.eval()


def test_zoo_window_and_stride_at_the_evaluation_size():
    """model.py: avg_pool2d with kernel scale_dimension(769, 1/32) = 25 and
    stride (4, 5), 'VALID'; the 1025x2049 evaluation pads to 33x65 features:
    a 3x9 gate (rows 0-24, 4-28, 8-32; columns 0-24, 5-29, ..., 40-64),
    resized with align_corners; at the 769 training crop it is global."""
    for arch in ('large', 'small'):
        head = head_from_config(CONFIG.format(arch))
        assert head.pool_kernel == (25, 25)
        assert head.image_pooling_stride == (4, 5)
        assert head.image_se_uses_qsigmoid
    head = _head(image_pooling_crop_size=(769, 769))
    x = torch.randn(1, 16, 33, 65)
    pooled = torch.stack([
        torch.stack([x[0, :, 4 * i:4 * i + 25, 5 * j:5 * j + 25].mean((1, 2))
                     for j in range(9)], -1) for i in range(3)], -2)
    expected = F.relu6(head.image_pooling(pooled[None]) + 3) * 0.16667
    expected = F.interpolate(expected, (33, 65), mode='bilinear',
                             align_corners=True)
    with torch.no_grad():
        torch.testing.assert_close(head.gate(x), expected)
        small = torch.randn(1, 16, 25, 25)
        global_gate = F.relu6(head.image_pooling(
            small.mean((2, 3), keepdim=True)) + 3) * 0.16667
        torch.testing.assert_close(head.gate(small),
                                   global_gate.expand(-1, -1, 25, 25))


def test_forward_is_tfs_order():
    """gate x aspp0, resized to the low-level size, conv_seg
    (decoder_conv0), plus feature_projection0 of the low-level feature;
    q-sigmoid uses TF's 0.16667, not 1 / 6; sigmoid without it."""
    for qsigmoid in (True, False):
        head = _head(image_pooling_crop_size=None,
                     image_se_uses_qsigmoid=qsigmoid)
        x, low = torch.randn(1, 16, 4, 5), torch.randn(1, 6, 13, 17)
        with torch.no_grad():
            pre = head.image_pooling(x.mean((2, 3), keepdim=True))
            gate = (F.relu6(pre + 3) * 0.16667 if qsigmoid else
                    torch.sigmoid(pre))
            branch = F.relu(F.batch_norm(
                head.aspp0.conv(x), head.aspp0.bn.running_mean,
                head.aspp0.bn.running_var, head.aspp0.bn.weight,
                head.aspp0.bn.bias, False, 0.0, 1e-5)) * gate
            branch = F.interpolate(branch, (13, 17), mode='bilinear',
                                   align_corners=True)
            expected = head.conv_seg(branch) + head.feature_projection0(low)
            torch.testing.assert_close(head([low, x]), expected)
    one_sixth = F.relu6(torch.tensor(1.0) + 3) / 6
    assert float(F.relu6(torch.tensor(1.0) + 3) * 0.16667) != float(
        one_sixth)


def test_features_smaller_than_the_window_are_refused():
    head = _head(image_pooling_crop_size=(769, 769))
    with pytest.raises(ValueError, match=r'smaller than the image pooling '
                       r'window \(25, 25\)'):
        head([torch.randn(1, 6, 96, 96), torch.randn(1, 16, 24, 30)])


@pytest.mark.parametrize('kwargs', [
    dict(c1_in_channels=0), dict(output_stride=4),
    dict(image_pooling_crop_size=(769, )), dict(image_pooling_stride=(0, 1)),
    dict(dropout_ratio=0.1),
    dict(input_transform='multiple_select', in_index=[0, 1],
         in_channels=[6, 16])])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        _head(**kwargs)


@pytest.mark.parametrize('arch', ['large', 'small'])
def test_zoo_row_converts_and_segments(arch, tmp_path):
    """``--zoo mobilenetv3_<arch>_cityscapes_trainfine`` from a mirror
    folder holding a zoo-like tarball (TF's variable names, global_step):
    the row's checks pass (variant, head, classes), the config beside the
    .pth is the shipped one, and (Small) tools/infer.py segments a photo
    with it (padded to 1025x2049 for the 25x25 pooling window)."""
    import tarfile

    from deeplabplus_mm.converters.zoo import ZOO
    row = ZOO[f'mobilenetv3_{arch}_cityscapes_trainfine']
    _, table, _ = reference(f'mobilenetv3_{arch}_cityscapes')
    prefix = tmp_path / 'ckpt' / 'model.ckpt-90000'
    prefix.parent.mkdir()
    tensors = {name: tf_values.variable_value(name, shape)
               for name, shape in table}
    tensors['global_step'] = np.asarray(90000, np.int64)
    write_checkpoint(str(prefix), tensors)
    mirror = tmp_path / 'mirror'
    mirror.mkdir()
    with tarfile.open(mirror / row.filename, mode='w:gz') as tar:
        for suffix in ('.index', '.data-00000-of-00001'):
            tar.add(f'{prefix}{suffix}',
                    arcname=f'deeplab_mnv3/model.ckpt-90000{suffix}')
    out = tmp_path / 'mnv3.pth'
    log = run_tool('tools/convert_tf_checkpoint.py', '--zoo', row.name,
                   str(out), '--mirror', str(mirror),
                   env={'DEEPLABPLUS_MM_CACHE': str(tmp_path / 'cache')}
                   ).stdout
    written = str(out)[:-len('.pth')] + '.py'
    assert f'-> {out}, config: {written}' in log
    published = {'large': 72.41, 'small': 68.99}[arch]
    assert f"TF's published mIoU: {published:.2f} (val, OS 32" in log
    assert Config.fromfile(written).model == Config.fromfile(
        osp.join(REPO, CONFIG.format(arch))).model
    if arch == 'large':
        return  # Small's path below; Large: 3.4x its multiply-adds (zoo)
    import cv2
    rng = np.random.default_rng(0)
    cv2.imwrite(str(tmp_path / 'photo.jpg'),
                rng.integers(0, 256, (60, 80, 3), dtype=np.uint8))
    run_tool('tools/infer.py', written, str(out), str(tmp_path / 'photo.jpg'),
             '--out-dir', str(tmp_path / 'infer'))
    from PIL import Image
    assert Image.open(tmp_path / 'infer' / 'photo.png').size == (80, 60)
