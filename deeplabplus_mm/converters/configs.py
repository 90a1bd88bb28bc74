"""Our configs for a TF checkpoint: the one that fits it
(:func:`suggest_config`), its ``model`` read without mmseg, the parameters
(``state_dict`` keys and shapes) that model has, and how to use a converted
checkpoint with it (:func:`usage_lines`).
"""
import glob
import os.path as osp
import re
from typing import Dict, List, Optional

from ..archs import model_convs, model_state_shapes, state_shapes
from . import name_tables as nt
from .detect import CheckpointInfo, ConversionError

# Number of classes -> data set part of our config names.
DATASET_BY_CLASSES = {21: 'voc12aug', 19: 'cityscapes', 150: 'ade20k',
                      151: 'ade20k'}
DEFAULT_CONFIGS_DIR = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs')


def suggest_config(info: CheckpointInfo,
                   configs_dir: str = DEFAULT_CONFIGS_DIR) -> Optional[str]:
    """Our config for a checkpoint: its algorithm (DeepLab v3+ with a
    decoder, v3 without, DPC, LR-ASPP), backbone and, by its number of
    classes, data set, at output stride 16 (as the zoo trained; LR-ASPP:
    32), fake-quantised (``-int8``) for an 8-bit checkpoint where such a
    config exists; None if none fits."""
    backbone = nt.family_named(info.family).config_name(info.backbone)
    if backbone is None:
        return None
    stride = 16
    if info.head == 'DensePredictionCellHead':
        algo = 'dpc'
    elif info.head == 'LRASPPTFHead':  # the zoo's MobileNetV3 models
        algo, stride = 'lraspp', 32
    else:
        algo = 'deeplabv3plus' if info.decoder or not info.has_head \
            else 'deeplabv3'
    candidates = sorted(glob.glob(
        osp.join(configs_dir, algo, f'{algo}_{backbone}-d{stride}_*.py')))
    if info.quantized:
        candidates = sorted(glob.glob(osp.join(
            configs_dir, algo, f'{algo}_{backbone}-int8-d{stride}_*.py'))) + \
            candidates
    if not info.has_head:  # ImageNet backbone: any config of it will do
        candidates += sorted(
            glob.glob(osp.join(configs_dir, '*', f'*_{backbone}-d16_*.py')))
    dataset = DATASET_BY_CLASSES.get(info.num_classes, 'voc12aug')
    for path in candidates:
        if re.search(rf'_{dataset}-\d+x\d+\.py$', path):
            return path
    return candidates[0] if candidates else None


def load_model_config(path: str) -> dict:
    """A config file's ``model`` as a plain dict, read without importing
    the config's ``custom_imports`` (no mmseg, no mmcv)."""
    from mmengine.config import Config
    try:
        cfg = Config.fromfile(path, import_custom_modules=False)
    except Exception as e:  # syntax errors, missing _base_ files...
        raise ConversionError(f'cannot read config {path}: {e}') from e
    if 'model' not in cfg:
        raise ConversionError(f'config {path} has no model')
    return cfg.model.to_dict()


def expected_from_config(model: dict,
                         info: CheckpointInfo,
                         num_classes: Optional[int] = None
                         ) -> Dict[str, tuple]:
    """``state_dict`` key -> shape of a config's model, computed from
    :mod:`deeplabplus_mm.archs` (the model is not built): the backbone alone
    for an ImageNet checkpoint, else the whole segmentor, with
    ``num_classes`` replacing the config's when given."""
    if info.has_head and num_classes is not None:
        model = dict(model, decode_head=dict(model['decode_head'],
                                             num_classes=num_classes))
    try:
        if not info.has_head:
            return state_shapes(model_convs(model, backbone_only=True))
        return model_state_shapes(model)
    except (KeyError, TypeError, ValueError) as e:
        raise ConversionError(f'cannot describe the config\'s model: {e}')


def expected_state_shapes(model) -> Dict[str, tuple]:
    """``state_dict`` key -> shape of a built model."""
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def usage_lines(meta: dict, checkpoint: str,
                  configs_dir: str = DEFAULT_CONFIGS_DIR) -> List[str]:
    """Lines telling how to use a converted checkpoint."""
    config = meta['config']
    if not meta['segmentor']:
        return [
            f'use it as ImageNet initialisation of {meta["variant"]} '
            f'configs (e.g. {config}):',
            '  --cfg-options model.backbone.init_cfg.type=Pretrained '
            f'model.backbone.init_cfg.checkpoint={checkpoint}'
        ]
    options = ''
    if meta['num_classes'] != meta['config_num_classes']:
        options = (' --cfg-options model.decode_head.num_classes='
                   f'{meta["num_classes"]}')
    configs, others = [config], []
    for stride in (8, 32):  # the zoo's evaluations at other strides
        other = config.replace('-d16_', f'-d{stride}_')
        if other != config and osp.isfile(other):
            configs.append(other)
            others.append(f'd{stride}: the zoo\'s OS {stride} evaluation')
    lines = [f'test it with (d16: output stride 16 as trained; '
             f'{"; ".join(others)}):' if others else 'test it with:']
    lines += [f'  python tools/test.py {c} {checkpoint}{options}'
              for c in configs]
    return lines
