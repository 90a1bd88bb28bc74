"""The backbone families: TF DeepLab's feature extractors (and slim's
ImageNet classifiers) as :class:`~.scopes.Family` tables, and the families
we do not convert."""
import re
from typing import List

from .scopes import Family, ScopeTable


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
    from ...archs import mobilenet_v2
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
    from ...archs import mobilenet_v3
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
    from ...archs import resnet_v1_beta
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
