"""TF variable scopes <-> our module paths: one table per backbone family and
per head, as data.

A table is a list of ``(TF scope template, module path template[, kind])``
rules. ``{field}`` placeholders stand for a regex given with the table and
are copied verbatim from one side to the other, so every rule works in both
directions: TF name -> ``state_dict`` key when converting, key -> TF name to
say which TF variable a parameter expects. The leaf of a variable
(``weights``, ``depthwise_weights``, ``BatchNorm/gamma``...) maps by
:data:`NORM_CONV_LEAVES` for an mmcv ``ConvModule`` with BN (kind ``'norm'``,
the default) and by :data:`PLAIN_CONV_LEAVES` for a plain ``nn.Conv2d`` with
bias (kind ``'plain'``: mmseg's ``conv_seg``). Depthwise convs are the TF
scopes that end in ``depthwise``.

Adding a backbone family = a :class:`Family` here + its model and its
:mod:`deeplabplus_mm.archs` description; a head likewise with a
:class:`ScopeTable` in :data:`HEADS`.
"""
import re
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

# TF leaf -> torch leaf for a ConvModule (conv without bias, then BN).
NORM_CONV_LEAVES: Dict[str, str] = {
    'weights': 'conv.weight',
    'depthwise_weights': 'conv.weight',
    'BatchNorm/gamma': 'bn.weight',
    'BatchNorm/beta': 'bn.bias',
    'BatchNorm/moving_mean': 'bn.running_mean',
    'BatchNorm/moving_variance': 'bn.running_var',
}
# TF leaf -> torch leaf for a plain conv with bias (the logits).
PLAIN_CONV_LEAVES: Dict[str, str] = {'weights': 'weight', 'biases': 'bias'}
# torch leaf -> TF leaf; 'weights' is 'depthwise_weights' in a scope that
# ends in 'depthwise'.
TORCH_LEAVES = {
    'norm': {v: k for k, v in NORM_CONV_LEAVES.items()
             if k != 'depthwise_weights'},
    'plain': {v: k for k, v in PLAIN_CONV_LEAVES.items()},
}


def _compile(template: str, fields: Dict[str, str]) -> re.Pattern:
    parts = re.split(r'\{(\w+)\}', template)
    pattern = ''.join(
        re.escape(part) if i % 2 == 0 else f'(?P<{part}>{fields[part]})'
        for i, part in enumerate(parts))
    return re.compile(pattern + r'\Z')


class ScopeTable:
    """Bidirectional scope rules (see the module docstring).

    Args:
        rules: ``(tf_template, torch_template)`` or ``(tf_template,
            torch_template, kind)`` with kind ``'norm'`` or ``'plain'``.
        fields: placeholder name -> regex of its values.
    """

    def __init__(self, rules: Sequence[Tuple[str, ...]],
                 fields: Optional[Dict[str, str]] = None):
        fields = fields or {}
        self.rules = []
        for rule in rules:
            tf, torch_path = rule[:2]
            kind = rule[2] if len(rule) > 2 else 'norm'
            self.rules.append((_compile(tf, fields), tf,
                               _compile(torch_path, fields), torch_path,
                               kind))

    def to_torch(self, scope: str) -> Optional[Tuple[str, str]]:
        """``(module path, kind)`` of a TF scope, or None."""
        for tf_re, _, _, torch_path, kind in self.rules:
            match = tf_re.match(scope)
            if match:
                return torch_path.format(**match.groupdict()), kind
        return None

    def to_tf(self, path: str) -> Optional[Tuple[str, str]]:
        """``(TF scope, kind)`` of a module path, or None."""
        for _, tf, torch_re, _, kind in self.rules:
            match = torch_re.match(path)
            if match:
                return tf.format(**match.groupdict()), kind
        return None


class Family(NamedTuple):
    """A backbone family: how to find it in a checkpoint and its table."""
    name: str  # e.g. 'xception'
    model_type: str  # our registered backbone
    root: re.Pattern  # the TF root scope, e.g. xception_65/
    table: ScopeTable  # scopes below the root
    ignored: re.Pattern  # classifier parts a DeepLab model does not have
    # (names -> shapes, root match) -> our backbone's config arguments
    variant: Callable[[Dict[str, tuple], re.Match], dict]
    # backbone config arguments -> the TF root scope ('xception_65/')
    root_of: Callable[[dict], str]
    # backbone config arguments -> the config name part ('xception65')
    config_name: Callable[[dict], Optional[str]]
    # backbone config arguments -> the variant's name ('xception_65')
    variant_name: Callable[[dict], str]


def _xception_variant(shapes, root):
    return dict(arch=int(root.group('arch')))


XCEPTION = Family(
    name='xception',
    model_type='AlignedXception',
    root=re.compile(r'xception_(?P<arch>41|65|71)/'),
    table=ScopeTable(
        [('entry_flow/conv1_{k}', 'entry_flow.conv1_{k}'),
         ('{flow}/block{b}/unit_{u}/xception_module/separable_conv{k}_{part}',
          '{flow}.block{b}.unit_{u}.separable_conv{k}.{part}_conv'),
         ('{flow}/block{b}/unit_{u}/xception_module/shortcut',
          '{flow}.block{b}.unit_{u}.shortcut'),
         # containers (no variables of their own; for map_scope)
         ('{flow}/block{b}/unit_{u}', '{flow}.block{b}.unit_{u}')],
        dict(flow='entry_flow|middle_flow|exit_flow', b=r'\d+', u=r'\d+',
             k=r'\d+', part='depthwise|pointwise')),
    # the ImageNet classifier's 1001-way logits
    ignored=re.compile(r'xception_\d+/logits/'),
    variant=_xception_variant,
    root_of=lambda args: f'xception_{args.get("arch", 65)}/',
    config_name=lambda args: f'xception{args.get("arch", 65)}',
    variant_name=lambda args: f'xception_{args.get("arch", 65)}')

# Depth multipliers tried when detecting a MobileNetV2 variant.
MOBILENET_V2_MULTIPLIERS = (1.0, 0.5, 0.75, 0.35, 1.4, 1.3)


def _mobilenet_v2_variant(shapes, root):
    """The depth multiplier whose layers have exactly the checkpoint's
    shapes (None if no candidate fits)."""
    from ..archs import mobilenet_v2
    found = {
        name[len('MobilenetV2/'):].rpartition('/')[0]: shape
        for name, shape in shapes.items()
        if name.endswith('weights') and name.startswith('MobilenetV2/')
    }
    for multiplier in MOBILENET_V2_MULTIPLIERS:
        convs = mobilenet_v2.convs(multiplier)
        want = {
            MOBILENET_V2.table.to_tf(c.path)[0]: c.weight_shape()
            for c in convs
        }
        if all(s in found and _torch_from_tf_conv(found[s], s) == shape
               for s, shape in want.items()):
            return dict(depth_multiplier=multiplier)
    return dict(depth_multiplier=None)


def _torch_from_tf_conv(shape, scope):
    if len(shape) != 4:
        return None
    kh, kw, cin, cout = shape
    if scope.endswith('depthwise'):
        return (cin, cout, kh, kw)
    return (cout, cin, kh, kw)


def _mobilenet_v2_name(args):
    multiplier = args.get('depth_multiplier', 1.0)
    names = {1.0: 'mobilenetv2', 0.5: 'mobilenetv2-dm05'}
    return names.get(multiplier)


def _mobilenet_v2_variant_name(args):
    multiplier = args.get('depth_multiplier', 1.0)
    return 'mobilenet_v2' + ('' if multiplier == 1.0 else f'_dm{multiplier:g}')


MOBILENET_V2 = Family(
    name='mobilenet_v2',
    model_type='MobileNetV2TF',
    root=re.compile(r'MobilenetV2/'),
    table=ScopeTable([('Conv', 'conv'),
                      ('expanded_conv{n}/{op}', 'expanded_conv{n}.{op}'),
                      ('expanded_conv{n}', 'expanded_conv{n}')],
                     dict(n=r'(?:_\d+)?', op='expand|depthwise|project')),
    # slim's classifier: the 1280-channel Conv_1 and the logits
    ignored=re.compile(r'MobilenetV2/(Conv_1|Logits)/'),
    variant=_mobilenet_v2_variant,
    root_of=lambda args: 'MobilenetV2/',
    config_name=_mobilenet_v2_name,
    variant_name=_mobilenet_v2_variant_name)

# Depth multipliers tried when detecting a MobileNetV3 / EdgeTPU variant.
MOBILENET_V3_MULTIPLIERS = (1.0, 0.75, 0.5, 0.35, 1.25)


def _mobilenet_v3_variant(shapes, root):
    """The arch ('large', 'small' under MobilenetV3/, 'edgetpu' under
    MobilenetEdgeTPU/) and depth multiplier whose layers have exactly the
    checkpoint's shapes (None if no candidate fits)."""
    from ..archs import mobilenet_v3
    prefix = root.group(0)
    found = {
        name[len(prefix):].rpartition('/')[0]: shape
        for name, shape in shapes.items()
        if name.endswith('weights') and name.startswith(prefix)
    }
    for arch, (scope, _, _) in mobilenet_v3.ARCHS.items():
        if scope + '/' != prefix:
            continue
        for multiplier in MOBILENET_V3_MULTIPLIERS:
            want = {
                MOBILENET_V3.table.to_tf(c.path)[0]: c.weight_shape()
                for c in mobilenet_v3.convs(arch, multiplier)
            }
            if all(s in found and _torch_from_tf_conv(found[s], s) == shape
                   for s, shape in want.items()):
                return dict(arch=arch, depth_multiplier=multiplier)
    return dict(arch=None, depth_multiplier=None)


def _mobilenet_v3_name(args):
    """Config name part: mobilenetv3-<arch>[-dm<digits>], e.g.
    mobilenetv3-large, mobilenetv3-edgetpu-dm075."""
    multiplier = args.get('depth_multiplier', 1.0)
    dm = '' if multiplier == 1.0 else '-dm' + f'{multiplier:g}'.replace(
        '.', '')
    return f'mobilenetv3-{args.get("arch", "large")}{dm}'


def _mobilenet_v3_variant_name(args):
    """TF DeepLab's model_variant, with ``_dm<m>`` for other multipliers."""
    arch = args.get('arch', 'large')
    multiplier = args.get('depth_multiplier', 1.0)
    name = ('mobilenet_edgetpu' if arch == 'edgetpu' else
            f'mobilenet_v3_{arch}_seg')
    return name + ('' if multiplier == 1.0 else f'_dm{multiplier:g}')


MOBILENET_V3 = Family(
    name='mobilenet_v3',
    model_type='MobileNetV3TF',
    root=re.compile(r'(MobilenetV3|MobilenetEdgeTPU)/'),
    table=ScopeTable(
        [('Conv{n}', 'conv{n}'),
         ('expanded_conv{n}/{op}', 'expanded_conv{n}.{op}'),
         ('expanded_conv{n}/squeeze_excite/Conv',
          'expanded_conv{n}.squeeze_excite.squeeze', 'plain'),
         ('expanded_conv{n}/squeeze_excite/Conv_1',
          'expanded_conv{n}.squeeze_excite.excite', 'plain'),
         ('expanded_conv{n}', 'expanded_conv{n}')],
        dict(n=r'(?:_\d+)?', op='expand|depthwise|project')),
    # slim's classifiers: V3's Conv_2 (after the pooling) and the logits
    ignored=re.compile(r'(MobilenetV3/(Conv_2|Logits)|MobilenetEdgeTPU/'
                       r'Logits)/'),
    variant=_mobilenet_v3_variant,
    root_of=lambda args: ('MobilenetEdgeTPU/' if args.get('arch') ==
                          'edgetpu' else 'MobilenetV3/'),
    config_name=_mobilenet_v3_name,
    variant_name=_mobilenet_v3_variant_name)


def _resnet_v1_beta_variant(shapes, root):
    """The depth (root scope ``resnet_v1_<depth>/``) when the checkpoint
    is the beta variant (the three-conv root ``conv1_1..3``, not slim's 7x7
    ``conv1``) with that depth's number of units in block 3; None else."""
    from ..archs import resnet_v1_beta
    depth = int(root.group('depth'))
    prefix = root.group(0)
    if f'{prefix}conv1_1/weights' not in shapes:
        return dict(depth=None, root='not the beta root conv1_1..3 (slim '
                    'resnet_v1 with a 7x7 conv1?)')
    units = resnet_v1_beta.BLOCKS[depth][2][2]
    block3 = {name.split('/')[2] for name in shapes
              if name.startswith(f'{prefix}block3/unit_')}
    return dict(depth=depth if len(block3) == units else None)


RESNET_V1_BETA = Family(
    name='resnet_v1_beta',
    model_type='ResNetV1BetaTF',
    root=re.compile(r'resnet_v1_(?P<depth>50|101)/'),
    table=ScopeTable(
        [('conv1_{k}', 'conv1_{k}'),
         ('block{b}/unit_{u}/bottleneck_v1/{op}', 'block{b}.unit_{u}.{op}'),
         # containers (no variables of their own; for map_scope)
         ('block{b}/unit_{u}/bottleneck_v1', 'block{b}.unit_{u}')],
        dict(k=r'\d', b=r'\d', u=r'\d+', op='shortcut|conv[123]')),
    # the ImageNet classifier's logits
    ignored=re.compile(r'resnet_v1_\d+/logits/'),
    variant=_resnet_v1_beta_variant,
    root_of=lambda args: f'resnet_v1_{args.get("depth", 50)}/',
    config_name=lambda args: f'resnet{args.get("depth", 50)}-beta',
    variant_name=lambda args: f'resnet_v1_{args.get("depth", 50)}_beta')

FAMILIES: List[Family] = [XCEPTION, MOBILENET_V2, MOBILENET_V3,
                          RESNET_V1_BETA]


def family_named(name: str) -> Family:
    return next(f for f in FAMILIES if f.name == name)

# TF DeepLab backbones (feature_extractor.name_scope) and other slim nets we
# do not convert: root scope regex -> family name for the error message.
UNSUPPORTED_FAMILIES = [
    (re.compile(r'resnet_v1_18/'), 'resnet_v1_18'),
    (re.compile(r'pnasnet/'), 'NAS (pnasnet)'),
    (re.compile(r'hnasnet/'), 'NAS (hnasnet)'),
    (re.compile(r'MobilenetV1/'), 'mobilenet_v1'),
    (re.compile(r'resnet_v2_\d+/'), 'resnet_v2'),
    (re.compile(r'Inception\w*/|InceptionResnetV2/'), 'inception'),
    (re.compile(r'vgg_\d+/'), 'vgg'),
]

# The decoder and logits, shared by the heads (model.refine_by_decoder:
# separable decoder convs; dense ones are a slim.repeat of two convs).
_DECODER_AND_LOGITS = [
    ('decoder/feature_projection0', 'feature_projection0'),
    ('decoder/decoder_conv{i}_{part}', 'decoder_conv{i}.{part}_conv'),
    ('decoder/decoder_conv0/decoder_conv0_1', 'decoder_conv0'),
    ('decoder/decoder_conv0/decoder_conv0_2', 'decoder_conv1'),
    ('logits/semantic', 'conv_seg', 'plain'),
]
_HEAD_FIELDS = dict(i=r'\d+', part='depthwise|pointwise')

# model.extract_features' ASPP (DeepLabV3PlusTFHead).
ASPP_HEAD = ScopeTable(
    [('image_pooling', 'image_pooling'),
     ('aspp{i}', 'aspp.{i}'),
     ('aspp{i}_{part}', 'aspp.{i}.{part}_conv'),
     ('concat_projection', 'concat_projection')] + _DECODER_AND_LOGITS,
    _HEAD_FIELDS)
# core/dense_prediction_cell.py (DensePredictionCellHead).
DPC_HEAD = ScopeTable(
    [('meta_architecture/branch{i}_{part}', 'branch{i}.{part}_conv'),
     ('meta_architecture/concat_projection', 'concat_projection')] +
    _DECODER_AND_LOGITS, _HEAD_FIELDS)
# model.py with the zoo's MobileNetV3 flags (LRASPPTFHead): no BN in
# image_pooling and the decoder, whose decoder_conv0 gives the logits.
LRASPP_HEAD = ScopeTable(
    [('image_pooling', 'image_pooling', 'plain'),
     ('aspp0', 'aspp0'),
     ('decoder/feature_projection0', 'feature_projection0', 'plain'),
     ('decoder/decoder_conv0', 'conv_seg', 'plain')])
# a checkpoint whose decoder output is the logits holds this (and no
# logits/semantic); its last dimension is the number of classes
SUM_MERGE_LOGITS = 'decoder/decoder_conv0/biases'
# our registered head -> its table
HEADS: Dict[str, ScopeTable] = {
    'DeepLabV3PlusTFHead': ASPP_HEAD,
    'DensePredictionCellHead': DPC_HEAD,
    'LRASPPTFHead': LRASPP_HEAD,
}
# TF scopes that only the heads have (a checkpoint without them is an
# ImageNet backbone).
HEAD_ROOTS = re.compile(r'(image_pooling|aspp\d|concat_projection|decoder|'
                        r'logits|meta_architecture)(/|_)')

# contrib.quantize's range variables (8-bit checkpoints): <scope>/<kind>/
# min|max; the kinds our fake-quantised models hold
# (deeplabplus_mm.archs.fake_quant) map to <module>.<kind>.min|max.
QUANT_RANGE = re.compile(
    r'(?P<scope>.+)/(?P<kind>\w+_quant)/(?P<end>min|max)\Z')
QUANT_KINDS = ('weights_quant', 'act_quant', 'post_activation_bypass_quant')
