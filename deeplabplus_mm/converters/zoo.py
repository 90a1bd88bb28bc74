"""TF DeepLab's model zoo: the table of its checkpoints.

:data:`ZOO` is the one place that holds the zoo: every row of
``research/deeplab/g3doc/model_zoo.md`` (and ``quantize.md``'s 8-bit rows)
plus the ImageNet initial checkpoints, with its tarball URL, what the
tarball must hold, the config of ours it fills and TF's published numbers.
``tools/convert_tf_checkpoint.py --zoo`` / ``--list``, the metafiles
(``tools/generate_model_index.py``) and the model-name lookup of
:mod:`deeplabplus_mm.apis.model_zoo` all read it; :mod:`.zoo_convert`
downloads and converts a row.
"""
import difflib
import os.path as osp
from typing import Dict, List, NamedTuple, Optional, Tuple

TF_MODELS = 'http://download.tensorflow.org/models/'
SLIM_MOBILENET_V2 = 'https://storage.googleapis.com/mobilenet_v2/checkpoints/'
MODEL_ZOO_MD = ('https://github.com/tensorflow/models/blob/master/research/'
                'deeplab/g3doc/model_zoo.md')


class ZooError(Exception):
    """A zoo name, download or tarball that cannot give its checkpoint."""


class Result(NamedTuple):
    """One published figure of a zoo row (TF's, not measured here)."""
    config: str  # the config of ours that evaluates as TF did
    miou: float
    split: str  # 'val' or 'test'
    tta: bool  # multi-scale + flip (our --tta) vs one scale
    protocol: str  # TF's evaluation, as model_zoo.md states it
    pixel_acc: Optional[float] = None


class Row(NamedTuple):
    """One checkpoint of TF's zoo."""
    name: str  # as model_zoo.md names it
    url: str
    dataset: str  # 'voc', 'cityscapes', 'ade20k', 'imagenet'
    variant: str  # the converter's variant name: 'xception_65', ...
    head: Optional[str]  # our head type; None: a backbone (ImageNet) only
    classes: Optional[int]  # logits channels in TF's checkpoint
    config: Optional[str]  # configs/... it fills; None: not supported
    results: Tuple[Result, ...] = ()
    size: str = ''  # model_zoo.md's file size
    status: str = 'supported'  # else why not (yet)
    out: Optional[str] = None  # default output (ImageNet: what configs use)

    @property
    def supported(self) -> bool:
        return self.config is not None

    @property
    def filename(self) -> str:
        return self.url.rsplit('/', 1)[1]

    @property
    def default_out(self) -> str:
        return self.out or osp.join('checkpoints', f'{self.name}.pth')


def _cfg(folder, stem):
    return f'configs/{folder}/{stem}.py'


_X65 = 'deeplabv3plus_xception65-d{}_{}'
_MNV2 = 'deeplabv3_mobilenetv2-d{}_{}'
_MNV2_DM05 = 'deeplabv3_mobilenetv2-dm05-d{}_{}'
_EDGETPU = 'deeplabv3_mobilenetv3-edgetpu-d{}_{}'
_EDGETPU_SLIM = 'deeplabv3_mobilenetv3-edgetpu-dm075-d{}_{}'
_VOC = '4xb4-30k_voc12aug-513x513'
_CITY = '4xb2-90k_cityscapes-769x769'
_ADE = '4xb4-150k_ade20k-513x513'
_V3P, _V3, _DPC = 'deeplabv3plus', 'deeplabv3', 'dpc'
# the zoo's MobileNetV3 models: LR-ASPP head, output stride 32
_LR, _LRASPP = 'lraspp', 'LRASPPTFHead'
_MNV3 = 'lraspp_mobilenetv3-{}-d32_' + _CITY
_ONE = 'OS {}, scale 1.0'
_MS_VOC = 'OS 8, scales 0.5:0.25:1.75 + flip'
_MS_CITY = 'OS 8, scales 0.75:0.25:1.25 + flip'
_HEAD = 'DeepLabV3PlusTFHead'
_MNV2_INT8 = 'deeplabv3_mobilenetv2-int8-d16_{}'
_MNV2_DM05_INT8 = 'deeplabv3_mobilenetv2-dm05-int8-d16_{}'

ZOO_ROWS: List[Row] = [
    # PASCAL VOC 2012 (model_zoo.md, quantize.md)
    Row('mobilenetv2_dm05_coco_voc_trainaug',
        TF_MODELS + 'deeplabv3_mnv2_dm05_pascal_trainaug_2018_10_01.tar.gz',
        'voc', 'mobilenet_v2_dm0.5', _HEAD, 21,
        _cfg(_V3, _MNV2_DM05.format(16, _VOC)),
        (Result(_cfg(_V3, _MNV2_DM05.format(16, _VOC)), 70.19, 'val', False,
                _ONE.format(16)), ), '7.6MB'),
    Row('mobilenetv2_dm05_coco_voc_trainval',
        TF_MODELS + 'deeplabv3_mnv2_dm05_pascal_trainval_2018_10_01.tar.gz',
        'voc', 'mobilenet_v2_dm0.5', _HEAD, 21,
        _cfg(_V3, _MNV2_DM05.format(16, _VOC)),
        (Result(_cfg(_V3, _MNV2_DM05.format(8, _VOC)), 71.83, 'test', False,
                _ONE.format(8)), ), '7.6MB'),
    Row('mobilenetv2_coco_voc_trainaug',
        TF_MODELS + 'deeplabv3_mnv2_pascal_train_aug_2018_01_29.tar.gz',
        'voc', 'mobilenet_v2', _HEAD, 21, _cfg(_V3, _MNV2.format(16, _VOC)),
        (Result(_cfg(_V3, _MNV2.format(16, _VOC)), 75.32, 'val', False,
                _ONE.format(16)),
         Result(_cfg(_V3, _MNV2.format(8, _VOC)), 77.33, 'val', True,
                _MS_VOC)), '23MB'),
    Row('mobilenetv2_coco_voc_trainval',
        TF_MODELS + 'deeplabv3_mnv2_pascal_trainval_2018_01_29.tar.gz',
        'voc', 'mobilenet_v2', _HEAD, 21, _cfg(_V3, _MNV2.format(16, _VOC)),
        (Result(_cfg(_V3, _MNV2.format(8, _VOC)), 80.25, 'test', True,
                _MS_VOC), ), '23MB'),
    Row('xception65_coco_voc_trainaug',
        TF_MODELS + 'deeplabv3_pascal_train_aug_2018_01_04.tar.gz',
        'voc', 'xception_65', _HEAD, 21, _cfg(_V3P, _X65.format(16, _VOC)),
        (Result(_cfg(_V3P, _X65.format(16, _VOC)), 82.20, 'val', False,
                _ONE.format(16)),
         Result(_cfg(_V3P, _X65.format(8, _VOC)), 83.58, 'val', True,
                _MS_VOC)), '439MB'),
    Row('xception65_coco_voc_trainval',
        TF_MODELS + 'deeplabv3_pascal_trainval_2018_01_04.tar.gz',
        'voc', 'xception_65', _HEAD, 21, _cfg(_V3P, _X65.format(16, _VOC)),
        (Result(_cfg(_V3P, _X65.format(8, _VOC)), 87.80, 'test', True,
                _MS_VOC), ), '439MB'),
    Row('mobilenetv2_dm05_coco_voc_trainaug_8bit',
        TF_MODELS +
        'deeplabv3_mnv2_dm05_pascal_train_aug_8bit_2019_04_26.tar.gz',
        'voc', 'mobilenet_v2_dm0.5', _HEAD, 21,
        _cfg(_V3, _MNV2_DM05_INT8.format(_VOC)),
        (Result(_cfg(_V3, _MNV2_DM05_INT8.format(_VOC)), 69.65, 'val', False,
                _ONE.format(16) + ', 8-bit fake quantisation'), ), '8.2MB'),
    Row('mobilenetv2_coco_voc_trainaug_8bit',
        TF_MODELS + 'deeplabv3_mnv2_pascal_train_aug_8bit_2019_04_26.tar.gz',
        'voc', 'mobilenet_v2', _HEAD, 21, _cfg(_V3, _MNV2_INT8.format(_VOC)),
        (Result(_cfg(_V3, _MNV2_INT8.format(_VOC)), 74.26, 'val', False,
                _ONE.format(16) + ', 8-bit fake quantisation'), ), '24MB'),
    # Cityscapes
    Row('mobilenetv2_coco_cityscapes_trainfine',
        TF_MODELS + 'deeplabv3_mnv2_cityscapes_train_2018_02_05.tar.gz',
        'cityscapes', 'mobilenet_v2', _HEAD, 19,
        _cfg(_V3, _MNV2.format(16, _CITY)),
        (Result(_cfg(_V3, _MNV2.format(16, _CITY)), 70.71, 'val', False,
                _ONE.format(16)),
         Result(_cfg(_V3, _MNV2.format(8, _CITY)), 73.57, 'val', True,
                _MS_CITY)), '23MB'),
    Row('mobilenetv3_large_cityscapes_trainfine',
        TF_MODELS +
        'deeplab_mnv3_large_cityscapes_trainfine_2019_11_15.tar.gz',
        'cityscapes', 'mobilenet_v3_large_seg', _LRASPP, 19,
        _cfg(_LR, _MNV3.format('large')),
        (Result(_cfg(_LR, _MNV3.format('large')), 72.41, 'val', False,
                _ONE.format(32)), ), '17MB'),
    Row('mobilenetv3_small_cityscapes_trainfine',
        TF_MODELS +
        'deeplab_mnv3_small_cityscapes_trainfine_2019_11_15.tar.gz',
        'cityscapes', 'mobilenet_v3_small_seg', _LRASPP, 19,
        _cfg(_LR, _MNV3.format('small')),
        (Result(_cfg(_LR, _MNV3.format('small')), 68.99, 'val', False,
                _ONE.format(32)), ), '5MB'),
    Row('xception65_cityscapes_trainfine',
        TF_MODELS + 'deeplabv3_cityscapes_train_2018_02_06.tar.gz',
        'cityscapes', 'xception_65', _HEAD, 19,
        _cfg(_V3P, _X65.format(16, _CITY)),
        (Result(_cfg(_V3P, _X65.format(16, _CITY)), 78.79, 'val', False,
                _ONE.format(16)),
         Result(_cfg(_V3P, _X65.format(8, _CITY)), 80.42, 'val', True,
                _MS_CITY)), '439MB'),
    Row('xception71_dpc_cityscapes_trainfine',
        TF_MODELS +
        'deeplab_cityscapes_xception71_trainfine_2018_09_08.tar.gz',
        'cityscapes', 'xception_71', 'DensePredictionCellHead', 19,
        _cfg(_DPC, f'dpc_xception71-d16_{_CITY}'),
        (Result(_cfg(_DPC, f'dpc_xception71-d16_{_CITY}'), 80.31, 'val',
                False, _ONE.format(16)), ), '445MB'),
    Row('xception71_dpc_cityscapes_trainval',
        TF_MODELS +
        'deeplab_cityscapes_xception71_trainvalfine_2018_09_08.tar.gz',
        'cityscapes', 'xception_71', 'DensePredictionCellHead', 19,
        _cfg(_DPC, f'dpc_xception71-d16_{_CITY}'),
        (Result(_cfg(_DPC, f'dpc_xception71-d8_{_CITY}'), 82.66, 'test', True,
                'OS 8, scales 0.75:0.25:2 + flip (the config\'s TTA: '
                '0.75:0.25:1.25)'), ), '446MB'),
    Row('EdgeTPU-DeepLab', TF_MODELS + 'edgetpu-deeplab_2020_03_09.tar.gz',
        'cityscapes', 'mobilenet_edgetpu', _HEAD, 19,
        _cfg(_V3, _EDGETPU.format(16, _CITY)),
        (Result(_cfg(_V3, _EDGETPU.format(32, _CITY)), 70.6, 'val', False,
                _ONE.format(32)),
         Result(_cfg(_V3, _EDGETPU.format(16, _CITY)), 74.1, 'val', False,
                _ONE.format(16))), ''),
    Row('EdgeTPU-DeepLab-slim',
        TF_MODELS + 'edgetpu-deeplab-slim_2020_03_09.tar.gz', 'cityscapes',
        'mobilenet_edgetpu_dm0.75', _HEAD, 19,
        _cfg(_V3, _EDGETPU_SLIM.format(16, _CITY)),
        (Result(_cfg(_V3, _EDGETPU_SLIM.format(32, _CITY)), 70.0, 'val',
                False, _ONE.format(32)),
         Result(_cfg(_V3, _EDGETPU_SLIM.format(16, _CITY)), 73.2, 'val',
                False, _ONE.format(16))), ''),
    # ADE20K (151 TF classes; the converter drops "other" for mmseg's 150)
    Row('mobilenetv2_ade20k_train',
        TF_MODELS + 'deeplabv3_mnv2_ade20k_train_2018_12_03.tar.gz',
        'ade20k', 'mobilenet_v2', _HEAD, 151,
        _cfg(_V3P, 'deeplabv3plus_mobilenetv2-d16_4xb4-150k_ade20k-257x257'),
        (Result(_cfg(_V3P,
                     'deeplabv3plus_mobilenetv2-d16_4xb4-150k_ade20k-257x257'),
                32.04, 'val', False, _ONE.format(16), 75.41), ), '24.8MB'),
    Row('xception65_ade20k_train',
        TF_MODELS + 'deeplabv3_xception_ade20k_train_2018_05_29.tar.gz',
        'ade20k', 'xception_65', _HEAD, 151,
        _cfg(_V3P, _X65.format(16, _ADE)),
        (Result(_cfg(_V3P, _X65.format(8, _ADE)), 45.65, 'val', True,
                _MS_VOC, 82.52), ), '439MB'),
    # ImageNet initial checkpoints: backbones for model.backbone.init_cfg
    Row('xception_41_imagenet', TF_MODELS + 'xception_41_2018_05_09.tar.gz',
        'imagenet', 'xception_41', None, None,
        _cfg(_V3P, 'deeplabv3plus_xception41-d16_' + _VOC), (), '288MB',
        out='checkpoints/xception41_imagenet.pth'),
    Row('xception_65_imagenet',
        TF_MODELS + 'deeplabv3_xception_2018_01_04.tar.gz', 'imagenet',
        'xception_65', None, None, _cfg(_V3P, _X65.format(16, _VOC)), (),
        '447MB', out='checkpoints/xception65_imagenet.pth'),
    # DeepLab's COCO-pretrained segmentor (the tarball's
    # x65-b2u1s2p-d48-2-3x256-sc-cr300k_init: decoder end point
    # block2/unit_1/separable_conv2_pointwise, 48-channel projection,
    # separable ASPP), an initial checkpoint: its backbone initialises the
    # Xception-65 configs, any head in it is left out (not seen here)
    Row('xception_65_imagenet_coco',
        TF_MODELS + 'xception_65_coco_pretrained_2018_10_02.tar.gz',
        'imagenet', 'xception_65', None, None,
        _cfg(_V3P, _X65.format(16, _VOC)), (), '292MB'),
    Row('xception_71_imagenet', TF_MODELS + 'xception_71_2018_05_09.tar.gz',
        'imagenet', 'xception_71', None, None,
        _cfg(_V3P, 'deeplabv3plus_xception71-d16_' + _VOC), (), '474MB',
        out='checkpoints/xception71_imagenet.pth'),
    Row('resnet_v1_50_beta_imagenet',
        TF_MODELS + 'resnet_v1_50_2018_05_04.tar.gz', 'imagenet',
        'resnet_v1_50_beta', None, None,
        _cfg(_V3P, 'deeplabv3plus_resnet50-beta-d16_' + _VOC), (), '274MB',
        out='checkpoints/resnet_v1_50_beta_imagenet.pth'),
    Row('resnet_v1_101_beta_imagenet',
        TF_MODELS + 'resnet_v1_101_2018_05_04.tar.gz', 'imagenet',
        'resnet_v1_101_beta', None, None,
        _cfg(_V3P, 'deeplabv3plus_resnet101-beta-d16_' + _VOC), (), '477MB',
        out='checkpoints/resnet_v1_101_beta_imagenet.pth'),
    # slim's MobileNetV2 (model_zoo.md points to it), which the zoo's
    # MobileNetV2 models start from
    Row('mobilenet_v2_1.0_224', SLIM_MOBILENET_V2 + 'mobilenet_v2_1.0_224.tgz',
        'imagenet', 'mobilenet_v2', None, None,
        _cfg(_V3, _MNV2.format(16, _VOC)), (), '',
        out='checkpoints/mobilenetv2_imagenet.pth'),
]
ZOO: Dict[str, Row] = {row.name: row for row in ZOO_ROWS}


def lookup(name: str) -> Row:
    """The zoo row called ``name`` (case-insensitive).

    Raises:
        ZooError: unknown name, with the closest names.
    """
    by_lower = {n.lower(): row for n, row in ZOO.items()}
    row = by_lower.get(name.lower())
    if row is not None:
        return row
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=3,
                                      cutoff=0.5)
    hint = (f'; did you mean {" or ".join(by_lower[c].name for c in close)}?'
            if close else '')
    raise ZooError(f'unknown zoo name {name!r}{hint} (--list shows all '
                   f'{len(ZOO)})')


def describe(variant: str, head: Optional[str],
             classes: Optional[int]) -> str:
    """How a checkpoint's content reads in messages."""
    if head is None:
        return f'a {variant} backbone (ImageNet checkpoint)'
    return f'a {variant} segmentor with {classes} classes ({head})'


def list_lines() -> List[str]:
    """The zoo as ``--list`` prints it."""
    lines = [f'TF DeepLab model zoo ({MODEL_ZOO_MD}); mIoU: TF\'s published '
             'figures, not measured here']
    width = max(len(row.name) for row in ZOO_ROWS)
    for row in ZOO_ROWS:
        figures = '; '.join(
            f'{r.miou:.2f} ({r.split}, {r.protocol})' for r in row.results)
        status = 'supported' if row.supported else row.status
        lines.append(f'{row.name:<{width}}  {row.dataset:<10}  '
                     f'{row.variant:<24}  {status}' +
                     (f'  | TF: {figures}' if figures else ''))
        if row.supported:
            lines.append(f'{"":<{width}}  config: {row.config}')
    return lines
