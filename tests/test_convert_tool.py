"""tools/convert_tf_checkpoint.py end to end, on TF-format checkpoints
written by the test (tensor-bundle V2; TF's names generated from the official
rules by tests/tf_names.py, name-seeded values, with global_step and Momentum
slots like the real zoo files). Only the comparison with TensorFlow's own
predictions needs the references (shared/tf_deeplab)."""
import os
import os.path as osp
import re
import tarfile
import textwrap

import cv2
import numpy as np
import pytest
import torch

import tf_names
from conftest import REPO, run_tool
from deeplabplus_mm.engine import register_safe_checkpoints
from tools.fixtures.tf_bundle_writer import write_checkpoint

ZOO_CONFIG = ('configs/deeplabv3plus/'
              'deeplabv3plus_xception65-d16_4xb4-30k_voc12aug-513x513.py')
ADE_CONFIG = ('configs/deeplabv3plus/'
              'deeplabv3plus_xception65-d16_4xb4-150k_ade20k-513x513.py')


# The zoo's xception_65 VOC model: the variables TF creates for it.
DEEPLAB_NAMES = tf_names.xception_deeplabv3plus(65)


@pytest.fixture(scope='module')
def deeplab_ckpt(tmp_path_factory):
    prefix = str(tmp_path_factory.mktemp('zoo') / 'train' / 'model.ckpt')
    os.makedirs(osp.dirname(prefix))
    write_checkpoint(prefix, tf_names.values(DEEPLAB_NAMES, step=30000))
    return prefix


def convert_cli(src, out, *args, check=True):
    return run_tool('tools/convert_tf_checkpoint.py', str(src), str(out),
                    *args, check=check)


def _tf_labelled_voc(root, tf_refs, case='xception65_os16'):
    """A VOC-layout val set of the TF references' input images (stored
    losslessly as PNG), labelled with TensorFlow's own prediction (the
    argmax of its upsampled logits; 255 where its top-2 margin is within
    2e-4, the near-ties a float32 port may flip)."""
    from deeplabplus_mm.datasets.voc_meta import save_palette_png
    for sub in ('JPEGImages', 'SegmentationClass', 'ImageSets/Segmentation'):
        os.makedirs(osp.join(root, sub))
    names = []
    for size in ('129x129', '120x160'):
        image = np.load(osp.join(tf_refs, case, f'input_{size}.npy'))[0]
        ref = np.load(osp.join(tf_refs, case, f'upsampled_{size}.npy'))[0]
        top2 = np.sort(ref, axis=-1)[..., -2:]
        label = ref.argmax(-1).astype(np.uint8)
        label[top2[..., 1] - top2[..., 0] <= 2e-4] = 255
        assert len(np.unique(label)) > 3  # several classes, not one
        names.append(f'tf_{size}')
        cv2.imwrite(osp.join(root, 'JPEGImages', f'tf_{size}.png'),
                    image[..., ::-1])  # RGB -> BGR, lossless
        save_palette_png(
            osp.join(root, 'SegmentationClass', f'tf_{size}.png'), label)
    with open(osp.join(root, 'ImageSets/Segmentation/val.txt'), 'w') as f:
        f.write('\n'.join(names) + '\n')
    return root


def test_deeplab_checkpoint_converts(tmp_path, deeplab_ckpt):
    out = tmp_path / 'x65_voc.pth'
    log = convert_cli(deeplab_ckpt, out).stdout
    assert 'xception_65 DeepLab segmentor' in log
    assert 'classes: 21' in log and 'global_step: 30000' in log
    assert re.search(r'ignored 441 TF variables', log)  # slots + step
    assert ZOO_CONFIG in log  # the config it used, and tells to test with
    ckpt = torch.load(out)  # weights_only
    assert ckpt['meta']['variant'] == 'xception_65'
    assert ckpt['meta']['global_step'] == 30000
    sd = ckpt['state_dict']
    name = ('xception_65/middle_flow/block1/unit_7/xception_module/'
            'separable_conv2_depthwise/depthwise_weights')
    want = tf_names.value(name, (3, 3, 728, 1)).transpose(2, 3, 0, 1)
    got = sd['backbone.middle_flow.block1.unit_7.separable_conv2.'
             'depthwise_conv.conv.weight']
    assert np.array_equal(got.numpy(), want)
    assert torch.equal(sd['decode_head.conv_seg.bias'], torch.from_numpy(
        tf_names.value('logits/semantic/biases', (21, ))))
    _loads_into(ZOO_CONFIG, sd)


def test_deeplab_checkpoint_to_test_py(tmp_path, tf_refs, tf_weights):
    """A checkpoint of the references' values (weights.py), converted by the
    tool: tools/test.py with the zoo config predicts exactly what TensorFlow
    predicts on the references' images (evaluated, as they were made,
    without the zoo's padding to 513): 100 % mIoU against TF's labels,
    which a wrong conversion cannot give."""
    table = tf_weights.read_variables_tsv(
        osp.join(tf_refs, 'xception65_os16', 'variables.tsv'))
    tensors = {name: tf_weights.variable_value(name, shape, dtype)
               for name, shape, dtype, _ in table}
    write_checkpoint(str(tmp_path / 'model.ckpt'), tensors)
    out = tmp_path / 'x65_voc.pth'
    convert_cli(tmp_path / 'model.ckpt', out)
    data = _tf_labelled_voc(str(tmp_path / 'tfvoc'), tf_refs)
    log = run_tool(
        'tools/test.py', ZOO_CONFIG, str(out), '--work-dir',
        str(tmp_path / 'w'), '--cfg-options',
        f'test_dataloader.dataset.data_root={data}',
        'test_dataloader.dataset.img_suffix=.png',
        'test_dataloader.dataset.ann_file=ImageSets/Segmentation/val.txt',
        'model.data_preprocessor.test_cfg.size=None',
        'model.data_preprocessor.test_cfg.size_divisor=1',
        'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False').stdout
    assert 'do not match exactly' not in log and 'missing keys' not in log
    assert float(re.findall(r'aAcc: (\d+\.\d+)', log)[-1]) == 100.0
    assert float(re.findall(r'mIoU: (\d+\.\d+)', log)[-1]) == 100.0


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


def test_imagenet_checkpoint_initialises_backbone(tmp_path):
    """An xception_41 classifier checkpoint (backbone + 1001-way logits)
    becomes a backbone state_dict that init_cfg=Pretrained loads."""
    tensors = tf_names.values(tf_names.xception(41), step=5, momentum=False)
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


@pytest.fixture(scope='module')
def ade_ckpt(tmp_path_factory):
    """The xception65 checkpoint with TF ADE20K's 151-class logits."""
    tensors = tf_names.values(tf_names.xception_deeplabv3plus(65, 151),
                              momentum=False)
    del tensors['global_step']
    prefix = str(tmp_path_factory.mktemp('ade') / 'model.ckpt')
    write_checkpoint(prefix, tensors)
    return prefix, tensors


def _loads_into(config, state_dict, **cfg_options):
    """The config's model (built on the meta device) takes the state_dict
    strictly: same keys, same shapes."""
    from mmengine.config import Config

    from conftest import build_model
    cfg = Config.fromfile(osp.join(REPO, config))
    cfg.merge_from_dict(cfg_options)
    with torch.device('meta'):
        model = build_model(cfg.model)
    model.load_state_dict(state_dict, strict=True, assign=True)


def test_ade20k_background_class_is_dropped(tmp_path, ade_ckpt):
    prefix, tensors = ade_ckpt
    log = convert_cli(prefix, tmp_path / 'ade.pth').stdout
    assert 'classes: 150' in log and ADE_CONFIG in log
    sd = torch.load(tmp_path / 'ade.pth')['state_dict']
    assert torch.equal(sd['decode_head.conv_seg.bias'],
                       torch.from_numpy(tensors['logits/semantic/biases'][1:]))
    _loads_into(ADE_CONFIG, sd)


def test_keep_background_class(tmp_path, ade_ckpt):
    """--keep-background-class keeps TF's 151 logits (it failed with a
    shape mismatch against a 150-class reference model before)."""
    prefix, tensors = ade_ckpt
    out = tmp_path / 'ade151.pth'
    log = convert_cli(prefix, out, '--keep-background-class').stdout
    assert 'classes: 151' in log
    # the ADE20K config, told to build 151 classes
    assert (f'tools/test.py {ADE_CONFIG} {out} --cfg-options '
            'model.decode_head.num_classes=151') in log
    sd = torch.load(out)['state_dict']
    assert torch.equal(sd['decode_head.conv_seg.bias'],
                       torch.from_numpy(tensors['logits/semantic/biases']))
    assert np.array_equal(
        sd['decode_head.conv_seg.weight'].numpy(),
        tensors['logits/semantic/weights'].transpose(3, 2, 0, 1))
    _loads_into(ADE_CONFIG, sd, **{'model.decode_head.num_classes': 151})
    # a config that says 150 classes does not fit a 151-class conversion
    proc = convert_cli(prefix, tmp_path / 'x.pth', '--keep-background-class',
                       '--config', ADE_CONFIG, check=False)
    assert proc.returncode != 0
    assert 'logits/semantic/weights (1, 1, 256, 151) vs (1, 1, 256, 150)' \
        in proc.stdout
    assert not (tmp_path / 'x.pth').exists()


def test_converting_imports_neither_mmseg_nor_mmcv(tmp_path, deeplab_ckpt):
    """A real conversion through the tool's main() in a fresh interpreter
    leaves mmseg, mmcv (and torch) unimported."""
    out = tmp_path / 'x.pth'
    code = textwrap.dedent(f"""
        import runpy, sys
        sys.argv = ['convert_tf_checkpoint.py', {deeplab_ckpt!r}, {str(out)!r}]
        runpy.run_path('tools/convert_tf_checkpoint.py', run_name='__main__')
        loaded = sorted(m for m in ('mmseg', 'mmcv', 'torch')
                        if m in sys.modules)
        print('loaded:', loaded)
        """)
    log = run_tool('-c', code).stdout
    assert 'xception_65 DeepLab segmentor, 878 tensors' in log
    assert 'loaded: []' in log
    assert len(torch.load(out)['state_dict']) == 878


@pytest.mark.parametrize('root,family', [
    ('resnet_v1_101', 'resnet_v1 / resnet_v1_beta'),
    ('pnasnet', 'NAS (pnasnet)'),
    ('MobilenetV1', 'mobilenet_v1'),
])
def test_unsupported_family_is_named(tmp_path, root, family):
    tensors = {
        f'{root}/conv1/weights': np.zeros((3, 3, 3, 8), np.float32),
        f'{root}/conv1/BatchNorm/gamma': np.ones(8, np.float32),
        'logits/semantic/weights': np.zeros((1, 1, 8, 21), np.float32),
        'global_step': np.asarray(1, np.int64),
    }
    prefix = str(tmp_path / 'model.ckpt')
    write_checkpoint(prefix, tensors)
    proc = convert_cli(prefix, tmp_path / 'x.pth', check=False)
    assert proc.returncode != 0
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    assert f'a {family} checkpoint (variables under {root}/)' in lines[0]
    assert 'xception (AlignedXception), mobilenet_v2 (MobileNetV2TF)' \
        in lines[0]


@pytest.mark.parametrize('config,first', [
    # an Xception-65 checkpoint against the Xception-71 config
    ('configs/deeplabv3plus/'
     'deeplabv3plus_xception71-d16_4xb4-30k_voc12aug-513x513.py',
     'the checkpoint holds xception_65, config {config} builds xception_71; '
     '730 parameters of config {config} have no TF variable: '
     'xception_71/entry_flow/conv1_1/weights '
     '(for backbone.entry_flow.conv1_1.conv.weight)'),
    # ... against a MobileNetV2 DeepLab v3 (no decoder) config
    ('configs/deeplabv3/'
     'deeplabv3_mobilenetv2-d16_4xb4-30k_voc12aug-513x513.py',
     'the checkpoint holds xception_65, config {config} builds MobilenetV2; '
     'shape mismatch (checkpoint vs config {config}): '
     'image_pooling/weights (1, 1, 2048, 256) vs (1, 1, 320, 256)'),
])
def test_checkpoint_that_does_not_fit_the_config(tmp_path, deeplab_ckpt,
                                                 config, first):
    proc = convert_cli(deeplab_ckpt, tmp_path / 'x.pth', '--config', config,
                       check=False)
    assert proc.returncode != 0
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ')
    assert first.format(config=config) in lines[0]
    assert 'fit no parameter' in lines[0]  # and the other way round
    assert not (tmp_path / 'x.pth').exists()


@pytest.mark.parametrize('damage', ['missing', 'shape', 'crc'])
def test_bad_checkpoints_fail_clearly(tmp_path, damage):
    tensors = tf_names.values(DEEPLAB_NAMES, momentum=False)
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


# --------------------------------------------------------------------------
# The zoo's other checkpoints: TF names and shapes generated from the
# official rules (tests/tf_names.py), converted by the tool with the config
# it picks, loaded strictly into that config's model.
# --------------------------------------------------------------------------
def test_generated_names_are_tensorflows(tf_refs, tf_weights):
    """The generator reproduces the variables TF itself created for the
    two reference cases."""
    for case, names in [
        ('mobilenetv2_os16', tf_names.mobilenet_v2(1.0) +
         tf_names.image_pooling_aspp0(320) + tf_names.logits(21)),
        ('xception65_os16', DEEPLAB_NAMES),
    ]:
        table = tf_weights.read_variables_tsv(
            osp.join(tf_refs, case, 'variables.tsv'))
        assert dict(names) == {n: tuple(s) for n, s, _, _ in table}


ZOO_VARIANTS = {
    # name: (TF variables, config the tool must pick, classes)
    'mobilenetv2_dm05_coco_voc_trainaug': (
        tf_names.mobilenet_v2(0.5) + tf_names.image_pooling_aspp0(160) +
        tf_names.logits(21),
        'configs/deeplabv3/'
        'deeplabv3_mobilenetv2-dm05-d16_4xb4-30k_voc12aug-513x513.py', 21),
    'mobilenetv2_coco_cityscapes_trainfine': (
        tf_names.mobilenet_v2(1.0) + tf_names.image_pooling_aspp0(320) +
        tf_names.logits(19),
        'configs/deeplabv3/'
        'deeplabv3_mobilenetv2-d16_4xb2-90k_cityscapes-769x769.py', 19),
    'mobilenetv2_ade20k_train': (
        tf_names.mobilenet_v2(1.0) + tf_names.image_pooling_aspp0(320) +
        tf_names.decoder(144) + tf_names.logits(151),
        'configs/deeplabv3plus/'
        'deeplabv3plus_mobilenetv2-d16_4xb4-150k_ade20k-257x257.py', 150),
    'xception71_dpc_cityscapes_trainfine': (
        tf_names.xception(71) + tf_names.dpc(2048) + tf_names.decoder(256) +
        tf_names.logits(19),
        'configs/dpc/dpc_xception71-d16_4xb2-90k_cityscapes-769x769.py', 19),
}


@pytest.mark.parametrize('zoo_name', sorted(ZOO_VARIANTS))
def test_zoo_variant_converts_into_its_config(tmp_path, zoo_name):
    names, config, classes = ZOO_VARIANTS[zoo_name]
    tensors = tf_names.values(names)
    write_checkpoint(str(tmp_path / 'model.ckpt'), tensors)
    out = tmp_path / f'{zoo_name}.pth'
    log = convert_cli(tmp_path, out).stdout
    assert f'config: {config}' in log
    assert f'classes: {classes}' in log
    # every TF variable is used: nothing but the slots and the step ignored
    assert f'ignored {len(tensors) - len(names)} TF variables' in log
    sd = torch.load(out)['state_dict']
    _loads_into(config, sd)
    # the d8 evaluation config (where the zoo evaluates at OS 8) takes the
    # same weights
    d8 = config.replace('-d16_', '-d8_')
    if osp.isfile(osp.join(REPO, d8)):
        assert d8 in log
        _loads_into(d8, sd)
    # values land in TF's layout rules, e.g. a depthwise conv and the logits
    dw = next(n for n, _ in names if n.endswith('depthwise_weights') and (
        'branch1' in n or 'expanded_conv_5/' in n))
    key = next(k for k in sd if k.endswith('conv.weight') and (
        'branch1.depthwise' in k or 'expanded_conv_5.depthwise' in k))
    assert np.array_equal(sd[key].numpy(),
                          tensors[dw].transpose(2, 3, 0, 1)), (key, dw)
    bias = tensors['logits/semantic/biases']
    assert np.array_equal(sd['decode_head.conv_seg.bias'].numpy(),
                          bias[len(bias) - classes:])


def test_slim_mobilenet_v2_imagenet_initialises_backbone(tmp_path):
    """slim's mobilenet_v2_1.0_224 (backbone + the 1280-channel Conv_1 and
    the 1001-way logits, which DeepLab does not build) becomes a backbone
    state_dict that init_cfg=Pretrained loads."""
    names = tf_names.mobilenet_v2(1.0) + tf_names.conv(
        'MobilenetV2/Conv_1', 1, 1, 320, 1280) + [
            ('MobilenetV2/Logits/Conv2d_1c_1x1/weights', (1, 1, 1280, 1001)),
            ('MobilenetV2/Logits/Conv2d_1c_1x1/biases', (1001, ))]
    write_checkpoint(str(tmp_path / 'model.ckpt'),
                     tf_names.values(names))
    out = tmp_path / 'mobilenetv2_imagenet.pth'
    log = convert_cli(tmp_path, out).stdout
    assert 'mobilenet_v2 ImageNet backbone, 306 tensors' in log
    assert 'MobilenetV2/Conv_1/BatchNorm/beta' in log  # ignored, and said
    assert 'init_cfg' in log
    sd = torch.load(out)['state_dict']

    import deeplabplus_mm  # noqa: F401
    from mmseg.registry import MODELS
    backbone = MODELS.build(
        dict(type='MobileNetV2TF',
             init_cfg=dict(type='Pretrained', checkpoint=str(out))))
    backbone.init_weights()
    own = backbone.state_dict()
    assert own.keys() == sd.keys()
    assert all(torch.equal(own[k], sd[k]) for k in sd)


IMAGENET_FAMILIES = {
    # TF family: (algorithm, backbone) of its shipped VOC-aug OS 16 config
    'xception_41': ('deeplabv3plus', 'xception41'),
    'xception_65': ('deeplabv3plus', 'xception65'),
    'xception_71': ('deeplabv3plus', 'xception71'),
    'mobilenet_v2': ('deeplabv3', 'mobilenetv2'),
    'mobilenet_v2_dm05': ('deeplabv3', 'mobilenetv2-dm05'),
}


@pytest.mark.parametrize('family', sorted(IMAGENET_FAMILIES))
def test_imagenet_checkpoint_initialises_shipped_config(tmp_path, synth_voc,
                                                        family):
    """An ImageNet classifier checkpoint of each backbone family (TF names
    from the official rules, name-seeded values: no references needed) ->
    tools/convert_tf_checkpoint.py -> one iteration of tools/train.py with
    the family's shipped config (small crop, the converted file as the
    backbone's init_cfg, learning rate 0 and BN statistics frozen, so that
    the saved weights are the initial ones): every backbone tensor is the
    converted one, nothing else is in the file, and the model's only
    tensors not from it are the head's. (The dm 0.5 configs ship with
    init_cfg=None: no ImageNet checkpoint with DeepLab's dm 0.5 rounding is
    published; one with those shapes loads as well.) The two tests above
    check the loading in-process, for Xception-41 and MobileNetV2 1.0."""
    algo, backbone = IMAGENET_FAMILIES[family]
    config = (f'configs/{algo}/{algo}_{backbone}-d16_4xb4-30k_voc12aug-'
              '513x513.py')
    if family.startswith('xception'):
        names = tf_names.xception(int(family[-2:]))
    else:
        names = tf_names.mobilenet_v2(0.5 if family.endswith('dm05') else
                                      1.0)
    scope = family.replace('_dm05', '')
    extra = tf_names.imagenet_classifier(scope)
    tensors = tf_names.values(names + extra, momentum=False)
    write_checkpoint(str(tmp_path / 'model.ckpt'), tensors)
    out = tmp_path / f'{family}_imagenet.pth'
    log = convert_cli(tmp_path / 'model.ckpt', out).stdout
    assert 'ImageNet backbone' in log and 'init_cfg' in log
    converted = torch.load(out)['state_dict']
    assert len(converted) >= len(names)  # + BN's num_batches_tracked

    cfg = tmp_path / 'imagenet_init.py'
    cfg.write_text(textwrap.dedent(f"""\
        _base_ = [{osp.join(REPO, config)!r}]
        crop_size = (65, 65)
        data_root = {synth_voc!r}
        train_pipeline = [
            dict(type='LoadImageFromFile'),
            dict(type='LoadVOCAnnotations', num_classes=21),
            dict(type='TFRandomScale', crop_size=crop_size),
            dict(type='RandomFlip', prob=0.5),
            dict(type='PackSegInputs')
        ]
        voc = dict(data_root=data_root, data_prefix=dict(
            img_path='JPEGImages', seg_map_path='SegmentationClass'))
        train_dataloader = dict(
            batch_size=2, num_workers=0, persistent_workers=False,
            dataset=dict(ann_file='ImageSets/Segmentation/train.txt',
                         pipeline=train_pipeline, **voc))
        val_dataloader = val_cfg = val_evaluator = None  # training only
        model = dict(
            data_preprocessor=dict(size=crop_size),
            backbone=dict(norm_eval=True, init_cfg=dict(
                _delete_=True, type='Pretrained',
                checkpoint={str(out)!r})))
        optim_wrapper = dict(optimizer=dict(lr=0.0))
        train_cfg = dict(max_iters=1, val_interval=100)
        default_hooks = dict(logger=dict(interval=1),
                             checkpoint=dict(interval=1))
        """))
    work = tmp_path / 'work'
    train_log = run_tool('tools/train.py', str(cfg), '--work-dir',
                         str(work)).stdout
    assert f'load model from: {out}' in train_log
    assert 'missing keys' not in train_log
    assert 'unexpected key' not in train_log
    register_safe_checkpoints()  # a training checkpoint: its message hub
    saved = torch.load(work / 'iter_1.pth', weights_only=True)['state_dict']
    loaded = {k[len('backbone.'):]: v for k, v in saved.items()
              if k.startswith('backbone.')}
    assert loaded.keys() == converted.keys()
    assert all(torch.equal(loaded[k], converted[k]) for k in converted)
    rest = set(saved) - {f'backbone.{k}' for k in loaded}
    assert rest and all(k.startswith('decode_head.') for k in rest)

    # and it fits the backbone of every shipped config of the family (all
    # output strides, data sets, heads), exactly
    import glob

    from mmengine.config import Config
    from mmseg.registry import MODELS

    import deeplabplus_mm  # noqa: F401
    paths = glob.glob(
        osp.join(REPO, 'configs', '*', f'*_{backbone}-d[0-9]*.py'))
    for path in paths:
        model = Config.fromfile(path, import_custom_modules=False).model
        with torch.device('meta'):
            net = MODELS.build(dict(model.backbone, init_cfg=None))
        net.load_state_dict(converted, strict=True, assign=True)
    # (Xception-41: and the demo's; Xception-71: and DPC's)
    assert len(paths) == {'xception_41': 17, 'xception_71': 18,
                          'mobilenet_v2': 7, 'mobilenet_v2_dm05': 4}.get(
                              family, 16)
