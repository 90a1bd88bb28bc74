"""TF DeepLab / Xception variables -> our PyTorch ``state_dict``.

Pure functions: :func:`map_name` is the name table, :func:`to_torch_layout`
the layout transposes, :func:`convert` the whole conversion of a dict of TF
arrays (as read by :mod:`deeplabplus_mm.converters.tf_bundle`) into a
``state_dict`` of :class:`AlignedXception` (ImageNet checkpoints) or of the
whole segmentor (``backbone.*`` + ``decode_head.*``, DeepLab checkpoints).
"""
import re
from collections.abc import Mapping
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np
import torch

# (TF pattern, torch replacement), applied in order to the variable scope
# (the name without its leaf). The backbone prefix is added separately.
SCOPE_TABLE: List[Tuple[str, str]] = [
    (r'/xception_module/', '/'),
    (r'separable_conv(\d)_depthwise$', r'separable_conv\1/depthwise_conv'),
    (r'separable_conv(\d)_pointwise$', r'separable_conv\1/pointwise_conv'),
    (r'^aspp0$', 'aspp/0'),
    (r'^aspp(\d)_depthwise$', r'aspp/\1/depthwise_conv'),
    (r'^aspp(\d)_pointwise$', r'aspp/\1/pointwise_conv'),
    (r'^aspp(\d)$', r'aspp/\1'),
    (r'^decoder/decoder_conv(\d)_depthwise$',
     r'decoder_conv\1/depthwise_conv'),
    (r'^decoder/decoder_conv(\d)_pointwise$',
     r'decoder_conv\1/pointwise_conv'),
    (r'^decoder/', ''),
    (r'^logits/semantic$', 'conv_seg'),
]
# TF leaf -> torch leaf. Conv weights live in ConvModule's ``conv``, BN in
# its ``bn``.
LEAF_TABLE: Dict[str, str] = {
    'weights': 'conv.weight',
    'depthwise_weights': 'conv.weight',
    'BatchNorm/gamma': 'bn.weight',
    'BatchNorm/beta': 'bn.bias',
    'BatchNorm/moving_mean': 'bn.running_mean',
    'BatchNorm/moving_variance': 'bn.running_var',
}
# Only the logits conv has a bias; it is a plain nn.Conv2d (mmseg's
# ``conv_seg``), not a ConvModule.
PLAIN_CONV_LEAF_TABLE: Dict[str, str] = {'weights': 'weight', 'biases': 'bias'}
PLAIN_CONVS = ('decode_head.conv_seg', )
HEAD_SCOPES = ('image_pooling', 'aspp', 'concat_projection', 'decoder/',
               'logits/semantic')
BACKBONE_RE = re.compile(r'^xception_(41|65|71)/')
# Variables that are not model parameters: optimizer slots, step counters,
# the ImageNet classifier's logits (we keep the backbone only).
IGNORED_RE = re.compile(r'(^global_step$|/Momentum$|/ExponentialMovingAverage$'
                        r'|/Adam(_1)?$|/RMSProp(_1)?$|^beta[12]_power'
                        r'|^xception_\d+/logits/)')
# TF DeepLab's ADE20K models predict 151 classes with class 0 ("other")
# ignored in training; mmseg's ADE20K has the 150 real ones
# (reduce_zero_label), so the converter drops logits channel 0.
ADE20K_TF_CLASSES = 151


class ConversionError(ValueError):
    """A checkpoint that cannot become a complete, consistent state_dict."""


def map_scope(scope: str, segmentor: bool = True) -> Optional[str]:
    """Torch module path of a TF variable scope, or None if not ours.

    ``'xception_65/entry_flow/block2/unit_1/xception_module/separable_conv2_pointwise'``
    -> ``'backbone.entry_flow.block2.unit_1.separable_conv2.pointwise_conv'``.

    Args:
        scope: A TF variable scope (a variable name without its leaf).
        segmentor: Prefix with ``backbone.``/``decode_head.`` (a full
            segmentor) or give backbone-relative paths.
    """
    backbone = BACKBONE_RE.match(scope + '/')
    if backbone:
        scope = scope[backbone.end():]
        prefix = 'backbone.' if segmentor else ''
    elif scope.startswith(HEAD_SCOPES) and segmentor:
        prefix = 'decode_head.'
    else:
        return None
    for pattern, repl in SCOPE_TABLE:
        scope = re.sub(pattern, repl, scope)
    return prefix + scope.replace('/', '.')


def map_name(tf_name: str, segmentor: bool = True) -> Optional[str]:
    """Torch ``state_dict`` key of a TF variable, or None if not ours.

    ``'xception_65/entry_flow/conv1_1/BatchNorm/gamma'`` ->
    ``'backbone.entry_flow.conv1_1.bn.weight'``; optimizer slots,
    ``global_step`` and the ImageNet classifier's logits give None.
    """
    if IGNORED_RE.search(tf_name):
        return None
    scope, _, leaf = tf_name.rpartition('/')
    if leaf.startswith('moving_') or leaf in ('gamma', 'beta'):
        scope, _, bn = scope.rpartition('/')
        leaf = f'{bn}/{leaf}'
    module = map_scope(scope, segmentor)
    table = PLAIN_CONV_LEAF_TABLE if module in PLAIN_CONVS else LEAF_TABLE
    if module is None or leaf not in table:
        return None
    return f'{module}.{table[leaf]}'


# Inverse renames, used only to name the TF variable a model parameter
# expects in error messages; every result is checked against map_name.
_INVERSE_TABLE: List[Tuple[str, str]] = [
    (r'^decode_head\.conv_seg\.weight$', 'logits/semantic/weights'),
    (r'^decode_head\.conv_seg\.bias$', 'logits/semantic/biases'),
    (r'(depthwise_conv)\.conv\.weight$', r'\1/depthwise_weights'),
    (r'\.conv\.weight$', '/weights'),
    (r'\.bn\.weight$', '/BatchNorm/gamma'),
    (r'\.bn\.bias$', '/BatchNorm/beta'),
    (r'\.bn\.running_mean$', '/BatchNorm/moving_mean'),
    (r'\.bn\.running_var$', '/BatchNorm/moving_variance'),
    (r'(unit_\d+)\.', r'\1/xception_module/'),
    (r'\.(depthwise|pointwise)_conv', r'_\1'),
    (r'aspp\.(\d)', r'aspp\1'),
    (r'(feature_projection0|decoder_conv\d)', r'decoder/\1'),
    (r'^decode_head\.', ''),
]


def expected_tf_name(key: str, arch: int) -> Optional[str]:
    """The TF variable that :func:`map_name` maps to ``key``, or None."""
    name = key.replace('backbone.', f'xception_{arch}/', 1)
    for pattern, repl in _INVERSE_TABLE:
        name = re.sub(pattern, repl, name)
    name = name.replace('.', '/')
    segmentor = key.startswith(('backbone.', 'decode_head.'))
    if not segmentor:
        name = f'xception_{arch}/{name}'
    return name if map_name(name, segmentor) == key else None


def to_torch_layout(tf_name: str, value: np.ndarray) -> np.ndarray:
    """Conv ``[kh,kw,cin,cout]`` -> ``[cout,cin,kh,kw]``; depthwise
    ``[kh,kw,c,1]`` -> ``[c,1,kh,kw]``; others unchanged."""
    if tf_name.endswith('/depthwise_weights'):
        return value.transpose(2, 3, 0, 1)
    if tf_name.endswith('/weights'):
        return value.transpose(3, 2, 0, 1)
    return value


class CheckpointInfo(NamedTuple):
    """What :func:`inspect_variables` finds in a checkpoint."""
    arch: int  # 41, 65 or 71
    has_head: bool  # a DeepLab checkpoint (True) or an ImageNet one
    num_classes: Optional[int]  # logits channels as stored in TF
    aspp_rates: int  # number of 3x3 ASPP branches
    aspp_with_separable_conv: bool
    decoder: bool
    decoder_use_separable_conv: bool
    add_image_level_feature: bool


def inspect_variables(shapes: Dict[str, Tuple[int, ...]]) -> CheckpointInfo:
    """Detect variant, head and number of classes from variable names."""
    archs = {int(m.group(1)) for m in map(BACKBONE_RE.match, shapes) if m}
    if len(archs) != 1:
        raise ConversionError(
            'not an aligned Xception checkpoint: expected variables under '
            'exactly one of xception_41/, xception_65/, xception_71/, found '
            f'{sorted(archs) or "none"}')
    logits = shapes.get('logits/semantic/weights')
    return CheckpointInfo(
        arch=archs.pop(),
        has_head=logits is not None,
        num_classes=logits[-1] if logits is not None else None,
        aspp_rates=sum(1 for i in range(1, 10)
                       if f'aspp{i}_pointwise/weights' in shapes
                       or f'aspp{i}/weights' in shapes),
        aspp_with_separable_conv='aspp1_depthwise/depthwise_weights' in shapes,
        decoder='decoder/feature_projection0/weights' in shapes,
        decoder_use_separable_conv=(
            'decoder/decoder_conv0_depthwise/depthwise_weights' in shapes),
        add_image_level_feature='image_pooling/weights' in shapes)


def convert(tf_tensors: Mapping,
            expected: Optional[Dict[str, Tuple[int, ...]]] = None,
            drop_background_class: Optional[bool] = None,
            shapes: Optional[Dict[str, Tuple[int, ...]]] = None):
    """Convert TF arrays to a torch ``state_dict``.

    Args:
        tf_tensors: TF variable name -> array (numeric tensors only).
        expected: torch key -> shape of the model to fill (from
            :func:`expected_state_shapes`). Every key must be filled with the
            right shape; ``num_batches_tracked`` buffers are set to 0.
        drop_background_class: Drop logits channel 0 (TF ADE20K's 151
            classes -> mmseg's 150). None: only when there are 151 classes.
        shapes: TF name -> shape, when ``tf_tensors`` reads lazily; only the
            tensors that map to a parameter are then looked up.

    Returns:
        tuple: ``(state_dict, info, ignored)``: the ``state_dict`` (a full
        segmentor for DeepLab checkpoints, the backbone alone for ImageNet
        ones), the :class:`CheckpointInfo` and the sorted names of the TF
        variables left out.

    Raises:
        ConversionError: naming the variables, when a parameter stays
            unfilled, a shape disagrees or two variables map to one key.
    """
    if shapes is None:
        shapes = {k: np.shape(v) for k, v in tf_tensors.items()}
    info = inspect_variables(shapes)
    if drop_background_class is None:
        drop_background_class = info.num_classes == ADE20K_TF_CLASSES
    state_dict, ignored, sources = {}, [], {}
    for tf_name in tf_tensors:
        key = map_name(tf_name, segmentor=info.has_head)
        if key is None:
            ignored.append(tf_name)
            continue
        if key in sources:
            raise ConversionError(f'{tf_name!r} and {sources[key]!r} both '
                                  f'map to {key!r}')
        sources[key] = tf_name
        value = to_torch_layout(tf_name, tf_tensors[tf_name])
        if drop_background_class and tf_name.startswith('logits/semantic/'):
            value = value[1:]
        state_dict[key] = torch.from_numpy(np.ascontiguousarray(value))
    if expected is not None:
        _check_complete(state_dict, expected, sources, info.arch)
    return state_dict, info, sorted(ignored)


def _check_complete(state_dict, expected, sources, arch):
    for key, shape in expected.items():
        if key.endswith('num_batches_tracked') and key not in state_dict:
            state_dict[key] = torch.zeros((), dtype=torch.long)
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = [(k, tuple(state_dict[k].shape), tuple(expected[k]))
             for k in expected
             if k in state_dict and tuple(state_dict[k].shape) != tuple(
                 expected[k])]
    problems = []
    if missing:
        problems.append(f'{len(missing)} model parameters have no TF '
                        'variable: ' + _head([
                            f'{expected_tf_name(k, arch) or "?"} (for {k})'
                            for k in missing
                        ]))
    if unexpected:
        problems.append(f'{len(unexpected)} TF variables fit no model '
                        'parameter: ' +
                        _head([sources[k] for k in unexpected]))
    if wrong:
        problems.append('shape mismatch: ' + _head([
            f'{sources[k]} -> {k}: {got} vs model {want}'
            for k, got, want in wrong
        ]))
    if problems:
        raise ConversionError('; '.join(problems))


def _head(items, n=8):
    shown = ', '.join(items[:n])
    return shown + (f' ... (+{len(items) - n} more)' if len(items) > n else '')


def expected_state_shapes(model: torch.nn.Module) -> Dict[str, tuple]:
    """``state_dict`` key -> shape of a model (build it on the meta device
    to avoid allocating weights)."""
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}



def reference_model(info: CheckpointInfo) -> torch.nn.Module:
    """The model a checkpoint with ``info`` fills, built on the meta device
    (no memory): the backbone alone for ImageNet checkpoints, else a
    ``backbone`` + ``decode_head`` with exactly the TF head's branches."""
    from ..models import AlignedXception, DeepLabV3PlusTFHead
    with torch.device('meta'):
        backbone = AlignedXception(arch=info.arch)
        if not info.has_head:
            return backbone
        drop = int(info.num_classes == ADE20K_TF_CLASSES)
        head = DeepLabV3PlusTFHead(
            in_channels=2048,
            in_index=1,
            channels=256,
            # rates do not change parameter shapes; only their number does
            dilations=(1, ) + (6, ) * info.aspp_rates,
            c1_in_channels=256 if info.decoder else 0,
            aspp_with_separable_conv=info.aspp_with_separable_conv,
            decoder_use_separable_conv=info.decoder_use_separable_conv,
            add_image_level_feature=info.add_image_level_feature,
            num_classes=info.num_classes - drop,
            norm_cfg=dict(type='BN', eps=1e-5),
            align_corners=True)
        return torch.nn.ModuleDict(dict(backbone=backbone, decode_head=head))


class _LazyTensors(Mapping):
    """A checkpoint reader seen as a name -> array mapping that reads (and
    crc-checks) a tensor only when it is looked up."""

    def __init__(self, reader):
        self._reader = reader

    def __getitem__(self, name):
        return self._reader.get(name)

    def __iter__(self):
        return iter(self._reader.names())

    def __len__(self):
        return len(self._reader.names())


def convert_reader(reader, drop_background_class: Optional[bool] = None):
    """Convert an open TF checkpoint (:class:`CheckpointReader`).

    Reads only the tensors that become parameters (optimizer slots are
    skipped unread), checks the result against :func:`reference_model`.

    Returns:
        tuple: ``(state_dict, meta)``; ``meta`` holds plain data: source,
        variant, whether it is a segmentor, classes, TF ``global_step``,
        the ignored variables.
    """
    shapes = {name: tuple(reader.shape(name)) for name in reader.names()}
    info = inspect_variables(shapes)
    state_dict, info, ignored = convert(
        _LazyTensors(reader),
        expected_state_shapes(reference_model(info)),
        drop_background_class,
        shapes=shapes)
    step = reader.get('global_step') if 'global_step' in shapes else None
    meta = dict(
        source=reader.prefix,
        variant=f'xception_{info.arch}',
        segmentor=info.has_head,
        num_classes=(int(state_dict['decode_head.conv_seg.bias'].shape[0])
                     if info.has_head else None),
        tf_num_classes=info.num_classes,
        global_step=None if step is None else int(step),
        ignored=ignored,
        skipped=list(reader.skipped))
    return state_dict, meta


# Number of classes -> dataset part of our config names (mmseg naming).
DATASET_BY_CLASSES = {
    21: '4xb4-30k_voc12aug-513x513',
    19: '4xb2-90k_cityscapes-769x769',
    150: '4xb4-150k_ade20k-513x513',
}


def suggest_configs(meta: dict, checkpoint: str) -> List[str]:
    """Lines telling how to use a converted checkpoint with our configs."""
    arch = meta['variant'].replace('_', '')
    if not meta['segmentor']:
        return [
            'use it as ImageNet initialisation of any xception config, e.g.:',
            f'  --cfg-options model.backbone.init_cfg.type=Pretrained '
            f'model.backbone.init_cfg.checkpoint={checkpoint}'
        ]
    dataset = DATASET_BY_CLASSES.get(meta['num_classes'])
    if dataset is None:
        return [f'no config of ours has {meta["num_classes"]} classes: copy '
                f'configs/deeplabv3plus/deeplabv3plus_{arch}-d16_'
                f'{DATASET_BY_CLASSES[21]}.py and set num_classes']
    return [
        'test it with the matching config (d16: output stride 16 as '
        'trained; d8: the zoo\'s OS 8 evaluation):',
    ] + [
        f'  python tools/test.py configs/deeplabv3plus/deeplabv3plus_{arch}'
        f'-d{os}_{dataset}.py {checkpoint}' for os in (16, 8)
    ]
