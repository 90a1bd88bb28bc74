"""tools/convert_tf_checkpoint.py end to end, on TF-format checkpoints
written by the test (tensor-bundle V2, from shared/tf_deeplab/weights.py
values, with global_step and Momentum slots like the real zoo files)."""
import os.path as osp
import re
import tarfile

import numpy as np
import pytest
import torch

from conftest import run_tool
from deeplabplus_mm.converters import write_checkpoint

ZOO_CONFIG = ('configs/deeplabv3plus/'
              'deeplabv3plus_xception65-d16_4xb4-30k_voc12aug-513x513.py')


def _with_slots(tf_weights, table):
    tensors = {'global_step': tf_weights.variable_value('global_step', ())}
    for name, shape, dtype, trainable in table:
        tensors[name] = tf_weights.variable_value(name, shape, dtype)
        if trainable:
            tensors[name + '/Momentum'] = tf_weights.variable_value(
                name + '/Momentum', shape, dtype)
    return tensors


@pytest.fixture(scope='module')
def deeplab_table(tf_refs, tf_weights):
    return tf_weights.read_variables_tsv(
        osp.join(tf_refs, 'xception65_os16', 'variables.tsv'))


@pytest.fixture(scope='module')
def deeplab_ckpt(tmp_path_factory, tf_weights, deeplab_table):
    prefix = str(tmp_path_factory.mktemp('zoo') / 'train' / 'model.ckpt')
    import os
    os.makedirs(osp.dirname(prefix))
    write_checkpoint(prefix, _with_slots(tf_weights, deeplab_table))
    return prefix


def convert_cli(src, out, check=True):
    return run_tool('tools/convert_tf_checkpoint.py', str(src), str(out),
                    check=check)


def test_deeplab_checkpoint_to_test_py(tmp_path, deeplab_ckpt, tf_weights,
                                       synth_voc):
    out = tmp_path / 'x65_voc.pth'
    log = convert_cli(deeplab_ckpt, out).stdout
    assert 'xception_65 DeepLab segmentor' in log
    assert 'classes: 21' in log and 'global_step: 30000' in log
    assert re.search(r'ignored 441 TF variables', log)  # slots + step
    assert ZOO_CONFIG.replace('configs/', '') in log  # the config that fits
    ckpt = torch.load(out)  # weights_only
    assert ckpt['meta']['variant'] == 'xception_65'
    assert ckpt['meta']['global_step'] == 30000
    sd = ckpt['state_dict']
    name = ('xception_65/middle_flow/block1/unit_7/xception_module/'
            'separable_conv2_depthwise/depthwise_weights')
    want = tf_weights.variable_value(name, (3, 3, 728, 1)).transpose(
        2, 3, 0, 1)
    got = sd['backbone.middle_flow.block1.unit_7.separable_conv2.'
             'depthwise_conv.conv.weight']
    assert np.array_equal(got.numpy(), want)
    assert torch.equal(sd['decode_head.conv_seg.bias'], torch.from_numpy(
        tf_weights.variable_value('logits/semantic/biases', (21, ))))
    # the converted checkpoint runs through tools/test.py with the zoo
    # config (zoo padding to 513 included) and fills every parameter
    log = run_tool(
        'tools/test.py', ZOO_CONFIG, str(out), '--work-dir',
        str(tmp_path / 'w'), '--cfg-options',
        f'test_dataloader.dataset.data_root={synth_voc}',
        'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False').stdout
    assert 'do not match exactly' not in log and 'missing keys' not in log
    miou = float(re.findall(r'mIoU: (\d+\.\d+)', log)[-1])
    assert 0 <= miou <= 100


def test_tar_gz_and_folder_sources(tmp_path, deeplab_ckpt):
    archive = tmp_path / 'deeplabv3_pascal_train_aug_2018_01_04.tar.gz'
    with tarfile.open(archive, 'w:gz') as tar:
        for suffix in ('.index', '.data-00000-of-00001'):
            tar.add(deeplab_ckpt + suffix,
                    arcname='train/model.ckpt' + suffix)
    from_tar = tmp_path / 'from_tar.pth'
    from_folder = tmp_path / 'from_folder.pth'
    convert_cli(archive, from_tar)
    convert_cli(osp.dirname(deeplab_ckpt), from_folder)
    a = torch.load(from_tar)['state_dict']
    b = torch.load(from_folder)['state_dict']
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not list(tmp_path.glob('**/*.tmp'))  # nothing left over


def test_imagenet_checkpoint_initialises_backbone(tmp_path, tf_weights,
                                                  deeplab_table):
    """An xception_41 classifier checkpoint (backbone + 1001-way logits)
    becomes a backbone state_dict that init_cfg=Pretrained loads."""
    tensors = {'global_step': np.asarray(5, np.int64)}
    for name, shape, dtype, _ in deeplab_table:
        unit = re.search(r'middle_flow/block1/unit_(\d+)/', name)
        if not name.startswith('xception_65/') or (unit and
                                                   int(unit.group(1)) > 8):
            continue
        name = name.replace('xception_65/', 'xception_41/')
        tensors[name] = tf_weights.variable_value(name, shape, dtype)
    tensors['xception_41/logits/weights'] = np.zeros((1, 1, 2048, 1001),
                                                     np.float32)
    tensors['xception_41/logits/biases'] = np.zeros(1001, np.float32)
    prefix = str(tmp_path / 'model.ckpt')
    write_checkpoint(prefix, tensors)
    out = tmp_path / 'xception41_imagenet.pth'
    log = convert_cli(prefix, out).stdout
    assert 'xception_41 ImageNet backbone' in log
    assert 'init_cfg' in log
    sd = torch.load(out)['state_dict']
    assert not any(k.startswith(('backbone.', 'decode_head.')) for k in sd)

    import deeplabplus_mm  # noqa: F401
    from mmseg.registry import MODELS
    backbone = MODELS.build(
        dict(type='AlignedXception', arch=41,
             init_cfg=dict(type='Pretrained', checkpoint=str(out))))
    backbone.init_weights()
    own = backbone.state_dict()
    assert own.keys() == sd.keys()
    assert all(torch.equal(own[k], sd[k]) for k in sd)


def test_ade20k_background_class_is_dropped(tmp_path, tf_weights,
                                            deeplab_table):
    tensors = {}
    for name, shape, dtype, _ in deeplab_table:
        if name.startswith('logits/semantic/'):
            shape = shape[:-1] + (151, )
        tensors[name] = tf_weights.variable_value(name, shape, dtype)
    prefix = str(tmp_path / 'model.ckpt')
    write_checkpoint(prefix, tensors)
    log = convert_cli(prefix, tmp_path / 'ade.pth').stdout
    assert 'classes: 150' in log and 'ade20k' in log
    sd = torch.load(tmp_path / 'ade.pth')['state_dict']
    assert torch.equal(sd['decode_head.conv_seg.bias'],
                       torch.from_numpy(tensors['logits/semantic/biases'][1:]))


@pytest.mark.parametrize('damage', ['missing', 'shape', 'crc'])
def test_bad_checkpoints_fail_clearly(tmp_path, tf_weights, deeplab_table,
                                      damage):
    tensors = {
        name: tf_weights.variable_value(name, shape, dtype)
        for name, shape, dtype, _ in deeplab_table
    }
    victim = 'xception_65/exit_flow/block1/unit_1/xception_module/shortcut/weights'
    if damage == 'missing':
        del tensors[victim]
    elif damage == 'shape':
        tensors[victim] = tensors[victim][..., :1000]
    prefix = str(tmp_path / 'model.ckpt')
    write_checkpoint(prefix, tensors)
    if damage == 'crc':
        with open(prefix + '.data-00000-of-00001', 'r+b') as f:
            f.seek(1000)
            byte = f.read(1)
            f.seek(1000)
            f.write(bytes([byte[0] ^ 0xFF]))
    out = tmp_path / 'out.pth'
    proc = convert_cli(prefix, out, check=False)
    assert proc.returncode != 0
    assert 'Traceback' not in proc.stdout
    message = proc.stdout
    if damage == 'crc':
        assert 'crc' in message.lower()
    else:
        assert victim in message
    assert not out.exists() and not list(tmp_path.glob('*.tmp'))
