"""No config can rot: every config under configs/ builds its model and its
data pipelines (datasets on generated data where they need files), output
stride and atrous rates agree, and the model's parameters are exactly what
the architecture descriptions (deeplabplus_mm.archs, which the TF converter
reads) say."""
import glob
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config

from conftest import REPO
from deeplabplus_mm.archs import BACKBONE_CONVS, model_convs, state_shapes

CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', '*', '*.py')))
LEAVES = [c for c in CONFIGS if '_base_' not in c]
RATES = {16: (1, 6, 12, 18), 8: (1, 12, 24, 36)}
NAME = re.compile(r'^(deeplabv3plus|deeplabv3|dpc)_'
                  r'(xception41|xception65|xception71|r101|mobilenetv2'
                  r'|mobilenetv2-dm05)'
                  r'-d(8|16)_(\d+)xb(\d+)-(\d+(?:k|it))_([\w-]+)-'
                  r'(\d+)x(\d+)\.py$')
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
]


def test_matrix_is_complete():
    names = {osp.basename(c) for c in LEAVES}
    datasets = ['voc12', 'voc12aug', 'coco-voc', 'coco-voc-pre-voc12aug',
                'cityscapes', 'ade20k', 'pascal-context', 'pascal-context-59']
    for backbone in ('xception41', 'xception65', 'xception71', 'r101'):
        for os_ in (8, 16):
            for dataset in datasets:
                assert any(
                    n.startswith(f'deeplabv3plus_{backbone}-d{os_}_') and
                    re.search(rf'_{dataset}-\d+x\d+\.py$', n)
                    for n in names), (backbone, os_, dataset)
    for path in ZOO_CONFIGS:
        assert osp.isfile(osp.join(REPO, 'configs', path)), path


@pytest.mark.parametrize('path', LEAVES, ids=osp.basename)
def test_config_builds_and_agrees_with_its_name(path):
    import deeplabplus_mm  # noqa: F401
    from mmengine.dataset import Compose
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules()
    cfg = Config.fromfile(path)
    name = osp.basename(path)
    if 'demo' not in path:
        m = NAME.match(name)
        assert m, f'{name} does not follow mmseg naming'
        algo, backbone, os_, gpus, batch, _, dataset, h, w = m.groups()
        os_ = int(os_)
        assert cfg.train_dataloader.batch_size == int(batch)
        assert tuple(cfg.crop_size) == (int(h), int(w))
        # base LR 0.007 at batch 16, scaled linearly (fine-tunes: 0.001)
        lr = cfg.optim_wrapper.optimizer.lr
        expected = 0.001 if 'pre-' in dataset else 0.007 * int(gpus) * int(
            batch) / 16
        assert lr == pytest.approx(expected)
        bb, head = cfg.model.backbone, cfg.model.decode_head
        if backbone.startswith('xception'):
            assert bb.type == 'AlignedXception'
            assert bb.arch == int(backbone[-2:])
            assert bb.output_stride == os_
        elif backbone.startswith('mobilenetv2'):
            assert bb.type == 'MobileNetV2TF'
            assert bb.depth_multiplier == (0.5 if 'dm05' in backbone
                                           else 1.0)
            assert bb.output_stride == os_
        else:
            strides = {8: (1, 2, 1, 1), 16: (1, 2, 2, 1)}[os_]
            assert tuple(bb.strides) == strides
        if algo == 'dpc':
            # the cell's rates follow the output stride
            assert head.type == 'DensePredictionCellHead'
            assert head.output_stride == os_
        elif backbone.startswith('mobilenetv2'):
            # the zoo's MobileNetV2 heads have no atrous branch
            assert tuple(head.dilations) == (1, )
        else:
            assert tuple(head.dilations) == RATES[os_]
        # DeepLab v3 has no decoder, v3+ (and DPC) has one
        assert (head.c1_in_channels > 0) == (algo != 'deeplabv3')
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    assert model.decode_head.num_classes == cfg.model.decode_head.num_classes
    if cfg.model.backbone.type in BACKBONE_CONVS:
        # what the converter computes from the config, without the model
        assert state_shapes(model_convs(cfg.model)) == {
            k: tuple(v.shape) for k, v in model.state_dict().items()}
    # every pipeline builds (the data loaders are built on generated data
    # in the dataset tests; here the transforms themselves)
    for pipeline in (cfg.train_dataloader.dataset.get('pipeline'),
                     cfg.test_dataloader.dataset.get('pipeline'),
                     cfg.get('tta_pipeline')):
        if pipeline is not None:
            Compose(pipeline)
    assert cfg.val_evaluator.type == 'IoUMetric'


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
