"""No config can rot: every config under configs/ builds its model and its
data pipelines (datasets on generated data where they need files), output
stride and atrous rates agree, and the model's parameters are exactly what
the architecture descriptions (deeplabplus_mm.archs, which the TF converter
reads) say.

Data-driven: the configs are found under configs/, and what each must
satisfy comes from its name (mmseg's
``{algo}_{backbone}-d{os}_{gpus}xb{batch}-{iters}_{dataset}-{h}x{w}.py``)
and its content, so a new backbone needs only its configs."""
import functools
import glob
import os
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config

from conftest import REPO
from deeplabplus_mm.archs import BACKBONE_CONVS, model_state_shapes

CONFIG_ROOT = osp.join(REPO, 'configs')
CONFIGS = sorted(glob.glob(osp.join(CONFIG_ROOT, '**', '*.py'),
                           recursive=True))
LEAVES = [c for c in CONFIGS
          if '_base_' not in osp.relpath(c, CONFIG_ROOT).split(os.sep)]
# Configs that run the product on generated data (``make demo``), not a
# training recipe: built and checked like the others, but their name is not
# held to the recipe rules.
DEMO_FOLDER = 'demo'
# (OS 32: the zoo's models at OS 32 have no atrous branch.)
RATES = {16: (1, 6, 12, 18), 8: (1, 12, 24, 36), 32: (1, )}
# mmseg's config naming; the backbone is a name ('xception65', 'r101',
# 'mobilenetv2') plus '-<abbreviation><digits>' modifiers ('-dm05') and at
# most one letters-only modifier: the backbone's ``arch`` ('mobilenetv3-
# large', 'mobilenetv3-edgetpu-dm075') or a variant its type names
# ('resnet50-beta': ResNetV1BetaTF).
NAME = re.compile(r'^(?P<algo>[a-z][a-z0-9]*)_'
                  r'(?P<backbone>[a-z][a-z0-9]*(?:-[a-z]+\d*)*)'
                  r'-d(?P<os>\d+)_(?P<gpus>\d+)xb(?P<batch>\d+)-'
                  r'(?P<iters>\d+(?:k|it))_(?P<dataset>[\w-]+)-'
                  r'(?P<h>\d+)x(?P<w>\d+)\.py$')
# What the algorithm names mean (mmseg's): DeepLab v3 has no decoder, v3+
# and DPC have one; DPC's head is the Dense Prediction Cell.
ALGORITHMS = {
    'deeplabv3': dict(decoder=False),
    'deeplabv3plus': dict(decoder=True),
    'dpc': dict(decoder=True, head='DensePredictionCellHead'),
    'lraspp': dict(decoder=True, head='LRASPPTFHead'),
}
# Backbone argument that a name's number gives ('xception65': arch=65,
# 'r101': depth=101); names without such an argument are spelled in the
# type name ('mobilenetv2' in 'MobileNetV2TF').
ARCH_ARGUMENTS = ('arch', 'depth')
# Name modifiers: abbreviation -> (backbone argument, value when the name
# has no such modifier). Digits read with the point after the first one:
# 'dm05' = 0.5, 'dm14' = 1.4.
MODIFIERS = {'dm': ('depth_multiplier', 1.0)}
# The modifier of the 8-bit (fake-quantised) models: the segmentor's type.
INT8 = ('int8', 'TFFakeQuantEncoderDecoder')
# The TF model zoo's MobileNetV2 and DPC checkpoints, each with its config
# (evaluation output strides as the zoo's tables state).
ZOO_CONFIGS = [
    'deeplabv3/deeplabv3_mobilenetv2-d16_4xb4-30k_voc12aug-513x513.py',
    'deeplabv3/deeplabv3_mobilenetv2-d8_4xb4-30k_voc12aug-513x513.py',
    'deeplabv3/deeplabv3_mobilenetv2-d16_4xb4-300k_coco-voc-513x513.py',
    'deeplabv3/deeplabv3_mobilenetv2-d16_4xb4-30k_coco-voc-pre-voc12aug-'
    '513x513.py',
    'deeplabv3/deeplabv3_mobilenetv2-dm05-d16_4xb4-30k_voc12aug-513x513.py',
    'deeplabv3/deeplabv3_mobilenetv2-dm05-d8_4xb4-30k_voc12aug-513x513.py',
    'deeplabv3/deeplabv3_mobilenetv2-d16_4xb2-90k_cityscapes-769x769.py',
    'deeplabv3/deeplabv3_mobilenetv2-d8_4xb2-90k_cityscapes-769x769.py',
    'deeplabv3plus/deeplabv3plus_mobilenetv2-d16_4xb4-150k_ade20k-'
    '257x257.py',
    'dpc/dpc_xception71-d16_4xb2-90k_cityscapes-769x769.py',
    'dpc/dpc_xception71-d8_4xb2-90k_cityscapes-769x769.py',
    'lraspp/lraspp_mobilenetv3-large-d32_4xb2-90k_cityscapes-769x769.py',
    'lraspp/lraspp_mobilenetv3-small-d32_4xb2-90k_cityscapes-769x769.py',
]


def is_demo(path):
    return osp.relpath(path, CONFIG_ROOT).split(os.sep)[0] == DEMO_FOLDER


def base_files(path):
    """Every file ``path`` inherits from, through the whole ``_base_``
    chain, nearest first."""
    found = []
    for rel in Config._get_base_files(path):
        base = osp.normpath(osp.join(osp.dirname(path), rel))
        found += [base] + base_files(base)
    return found


@functools.lru_cache(maxsize=None)
def base_head(path):
    """The decode head of a ``_base_/models/`` file."""
    return Config.fromfile(path).model.decode_head


def model_base(path):
    """The ``_base_/models/`` file a config's model comes from."""
    models = [b for b in base_files(path)
              if osp.dirname(b) == osp.join(CONFIG_ROOT, '_base_', 'models')]
    assert len(models) == 1, f'{path}: model bases {models}'
    return models[0]


def recipes():
    """(path, name fields) of every training recipe."""
    return [(c, NAME.match(osp.basename(c))) for c in LEAVES
            if not is_demo(c)]


def test_matrix_is_complete():
    """Every DeepLab v3+ backbone beyond the zoo's checkpoints has a config
    for every output stride and data set that any of them has, and every
    data set base is used."""
    recipe_names = [m for _, m in recipes()]
    assert all(recipe_names), 'see test_config_builds_and_agrees_with_its_name'
    zoo_names = {osp.basename(p) for p in ZOO_CONFIGS}
    v3plus = [m for m in recipe_names if m['algo'] == 'deeplabv3plus']
    backbones = {m['backbone'] for m in v3plus
                 if m.string not in zoo_names}
    datasets = {m['dataset'] for m in v3plus}
    strides = {m['os'] for m in v3plus if m['backbone'] in backbones}
    assert len(backbones) >= 2 and len(datasets) >= 2 and len(strides) >= 2
    have = {(m['backbone'], m['os'], m['dataset']) for m in v3plus}
    missing = [(b, f'd{os_}', d) for b in sorted(backbones)
               for os_ in sorted(strides) for d in sorted(datasets)
               if (b, os_, d) not in have]
    assert not missing, f'deeplabv3plus configs missing: {missing}'
    used = {b for leaf in LEAVES for b in base_files(leaf)}
    for base in glob.glob(osp.join(CONFIG_ROOT, '_base_', '*', '*.py')):
        assert base in used, f'{base} is used by no config'
    for path in ZOO_CONFIGS:
        assert osp.isfile(osp.join(REPO, 'configs', path)), path


def check_backbone_name(name, backbone, bb):
    """The name's backbone ('xception41', 'r101', 'mobilenetv2-dm05') is
    the config's backbone: its letters name the type, its number is the
    architecture argument, its modifiers are arguments."""
    token, *modifiers = backbone.split('-')
    letters, number = re.fullmatch(r'([a-z]+?)(\d*)', token).groups()
    kind = bb.type.lower()
    assert letters in kind, f'{name}: {bb.type} is no {letters}'
    args = [a for a in ARCH_ARGUMENTS if isinstance(bb.get(a), int)]
    if number and args:
        assert bb[args[0]] == int(number), (name, args[0], bb[args[0]])
    else:
        assert token in kind, f'{name}: {bb.type} is no {token}'
    given = {}
    named_arch = [m for m in modifiers if m.isalpha()]
    assert len(named_arch) <= 1, f'{name}: several arch modifiers'
    # a variant the type names ('beta' in ResNetV1BetaTF), else the arch
    variant = named_arch and named_arch[0] in kind
    if isinstance(bb.get('arch'), str) or (named_arch and not variant):
        assert named_arch == [bb.get('arch')], (name, bb.get('arch'))
    for modifier in modifiers:
        if modifier.isalpha() or modifier == INT8[0]:
            continue
        abbr, digits = re.fullmatch(r'([a-z]+)(\d+)', modifier).groups()
        assert abbr in MODIFIERS, f'{name}: unknown modifier {modifier}'
        given[abbr] = float(f'{digits[0]}.{digits[1:] or 0}')
    for abbr, (arg, default) in MODIFIERS.items():
        if abbr in given or arg in bb:
            assert bb.get(arg, default) == given.get(abbr, default), (
                name, arg, bb.get(arg))


def measured_output_stride(model, head_cfg, size=512):
    """The stride of the feature the head's main input reads, from a
    forward pass on the meta device (shapes only)."""
    model.eval()
    with torch.device('meta'):
        feats = model.backbone(torch.empty(1, 3, size, size))
    feat = feats[head_cfg.get('in_index', -1)]
    assert size % feat.shape[-1] == 0, feat.shape
    return size // feat.shape[-1]


@pytest.mark.parametrize('path', LEAVES, ids=osp.basename)
def test_config_builds_and_agrees_with_its_name(path):
    import deeplabplus_mm  # noqa: F401
    from mmengine.dataset import Compose
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules()
    cfg = Config.fromfile(path)
    name = osp.basename(path)
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    if not is_demo(path):
        m = NAME.match(name)
        assert m, f'{name} does not follow mmseg naming'
        algo, backbone, os_ = m['algo'], m['backbone'], int(m['os'])
        gpus, batch, dataset = int(m['gpus']), int(m['batch']), m['dataset']
        assert algo in ALGORITHMS, f'{name}: unknown algorithm {algo}'
        assert osp.basename(osp.dirname(path)) == algo, (
            f'{name} belongs in configs/{algo}/')
        assert cfg.train_dataloader.batch_size == batch
        assert tuple(cfg.crop_size) == (int(m['h']), int(m['w']))
        # base LR 0.007 at batch 16, scaled linearly (fine-tunes: 0.001)
        lr = cfg.optim_wrapper.optimizer.lr
        expected = 0.001 if 'pre-' in dataset else 0.007 * gpus * batch / 16
        assert lr == pytest.approx(expected)
        bb, head = cfg.model.backbone, cfg.model.decode_head
        check_backbone_name(name, backbone, bb)
        assert (INT8[0] in backbone.split('-')) == (
            cfg.model.type == INT8[1]), f'{name}: model {cfg.model.type}'
        # the output stride in the name is the backbone's: its argument, or
        # measured where it has none (strides and dilations per stage)
        if 'output_stride' in bb:
            assert bb.output_stride == os_
        else:
            measured = measured_output_stride(model, head)
            assert measured == os_, f'{name}: the backbone has OS {measured}'
        if 'output_stride' in head:  # e.g. the DPC's rates follow it
            assert head.output_stride == os_
        if 'head' in ALGORITHMS[algo]:
            assert head.type == ALGORITHMS[algo]['head']
        if 'dilations' in head:
            # as many ASPP branches as the model base (the zoo's
            # MobileNetV2 heads have no atrous branch), rates for the OS
            base = base_head(model_base(path))
            assert len(head.dilations) == len(base.dilations), name
            assert tuple(head.dilations) == RATES[os_][:len(head.dilations)]
        # DeepLab v3 has no decoder, v3+ (and DPC) has one
        assert (head.c1_in_channels > 0) == ALGORITHMS[algo]['decoder']
    assert model.decode_head.num_classes == cfg.model.decode_head.num_classes
    if cfg.model.backbone.type in BACKBONE_CONVS:
        # what the converter computes from the config, without the model
        assert model_state_shapes(cfg.model) == {
            k: tuple(v.shape) for k, v in model.state_dict().items()}
    # every pipeline builds (the data loaders are built on generated data
    # in the dataset tests; here the transforms themselves)
    for pipeline in (cfg.train_dataloader.dataset.get('pipeline'),
                     cfg.test_dataloader.dataset.get('pipeline'),
                     cfg.get('tta_pipeline')):
        if pipeline is not None:
            Compose(pipeline)
    assert cfg.val_evaluator.type == 'IoUMetric'
    # TTA resizes each image as the evaluation does before padding it to the
    # test size: TF's resize_to_range at that size (ADE20K)
    resize = cfg.get('tta_model', {}).get('resize_to_range')
    if resize:
        test_size = cfg.model.data_preprocessor.test_cfg['size']
        assert (resize['min_size'], resize['max_size']) == tuple(test_size)


@pytest.mark.parametrize('name', [
    'deeplabv3plus_xception65-d16_4xb4-30k_voc12aug-513x513.py',
    'deeplabv3plus_xception71-d8_4xb4-30k_voc12-513x513.py',
    'deeplabv3plus_r101-d16_4xb4-300k_coco-voc-513x513.py',
])
def test_voc_family_datasets_load_generated_data(name, synth_voc, tmp_path):
    """The VOC-layout configs build their real data loaders on generated
    data and yield a padded training batch."""
    import shutil

    import deeplabplus_mm  # noqa: F401
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    init_default_scope('mmseg')
    cfg = Config.fromfile(osp.join(REPO, 'configs/deeplabv3plus', name))
    root = tmp_path / 'data'
    if 'coco' in name:  # the converted COCO layout
        split = 'train2017'
        shutil.copytree(osp.join(synth_voc, 'JPEGImages'), root / split)
        shutil.copytree(osp.join(synth_voc, 'SegmentationClass'),
                        root / 'voc_masks' / split)
        (root / 'voc_lists').mkdir()
        shutil.copy(osp.join(synth_voc, 'ImageSets/Segmentation/train.txt'),
                    root / 'voc_lists' / f'{split}.txt')
    else:
        shutil.copytree(synth_voc, root)
        seg = root / 'ImageSets' / 'Segmentation'
        shutil.copy(seg / 'train.txt', seg / 'trainaug.txt')
        shutil.copytree(root / 'SegmentationClass',
                        root / 'SegmentationClassAug')
    loader_cfg = cfg.train_dataloader.copy()
    loader_cfg.update(num_workers=0, persistent_workers=False, batch_size=2)
    loader_cfg.dataset.data_root = str(root)
    batch = next(iter(Runner.build_dataloader(loader_cfg)))
    assert len(batch['inputs']) == 2
    sample = batch['data_samples'][0]
    assert sample.gt_sem_seg.data.shape[-2:] == batch['inputs'][0].shape[-2:]


def test_config_text_is_formatted_once_and_unchanged():
    """``setup_runtime()`` (the tools, RuntimeSetupHook) memoises the yapf
    formatting behind ``Config.pretty_text`` (a runner asks for it four
    times while it starts): the text equals mmengine's unmemoised one, a
    second request does not format again, another config's text is
    formatted anew."""
    from mmengine.config import config as config_module

    from deeplabplus_mm import setup_runtime
    from deeplabplus_mm.engine.config_text import _memoised
    setup_runtime()
    memo = config_module.FormatCode
    uncached = memo.uncached
    calls = []

    def counting(*args, **kwargs):
        calls.append(args[0])
        return uncached(*args, **kwargs)

    config_module.FormatCode = _memoised(counting)
    try:
        cfg = Config.fromfile(LEAVES[0])
        first = cfg.pretty_text
        assert cfg.pretty_text == first and len(calls) == 1
        other = Config.fromfile(LEAVES[-1])
        assert other.pretty_text != first and len(calls) == 2
        config_module.FormatCode = uncached
        assert cfg.pretty_text == first  # what mmengine itself gives
    finally:
        config_module.FormatCode = memo
