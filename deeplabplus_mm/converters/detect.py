"""Which TF DeepLab checkpoint a set of variables is.

:func:`inspect_variables` finds, from the variable names (and the shapes
where names cannot tell, e.g. MobileNetV2's depth multiplier), the backbone
family and variant, the head and the number of classes.
"""
import re
from typing import Dict, NamedTuple, Optional

from . import name_tables as nt

# Variables that are no model parameters: step counter, optimizer slots.
IGNORED_RE = re.compile(r'(^global_step$|/Momentum$|/ExponentialMovingAverage$'
                        r'|/Adam(_1)?$|/RMSProp(_1)?$|^beta[12]_power)')


class ConversionError(ValueError):
    """A checkpoint that cannot become a complete, consistent state_dict."""


class CheckpointInfo(NamedTuple):
    """What :func:`inspect_variables` finds in a checkpoint."""
    family: str  # 'xception', 'mobilenet_v2'
    variant: str  # 'xception_65', 'mobilenet_v2', 'mobilenet_v2_dm0.5'
    backbone: dict  # our backbone's config arguments that the names fix
    head: Optional[str]  # our head type, None for an ImageNet backbone
    num_classes: Optional[int]  # logits channels as stored in TF
    decoder: bool
    # contrib.quantize's ranges (an 8-bit checkpoint, quantize.md)
    quantized: bool = False

    @property
    def has_head(self) -> bool:
        return self.head is not None

    @property
    def arch(self) -> Optional[int]:
        return self.backbone.get('arch')


def family_of(name: str) -> Optional[nt.Family]:
    for family in nt.FAMILIES:
        if family.root.match(name):
            return family
    return None


def inspect_variables(shapes: Dict[str, tuple]) -> CheckpointInfo:
    """Detect backbone family and variant, head and classes.

    Raises:
        ConversionError: no supported backbone (naming the family found
            and the supported ones), or several.
    """
    families, others = {}, set()
    for name in shapes:
        if IGNORED_RE.search(name) or nt.HEAD_ROOTS.match(name):
            continue
        family = family_of(name)
        if family is None:
            others.add(name.split('/')[0])
            continue
        match = family.root.match(name)
        families.setdefault((family.name, match.group(0)), (family, match))
    supported = ', '.join(f'{f.name} ({f.model_type})' for f in nt.FAMILIES)
    if not families:
        for pattern, family_name in nt.UNSUPPORTED_FAMILIES:
            found = sorted(o for o in others if pattern.match(o + '/'))
            if found:
                raise ConversionError(
                    f'a {family_name} checkpoint (variables under '
                    f'{found[0]}/), which is not supported; supported '
                    f'backbone families: {supported}')
        raise ConversionError(
            'no supported backbone found (top-level scopes: '
            f'{", ".join(sorted(others)[:5]) or "none"}); supported '
            f'backbone families: {supported}')
    if len(families) > 1:
        raise ConversionError(
            'variables of several backbones: ' +
            ', '.join(sorted(root for _, root in families)))
    (family, match), = families.values()
    backbone = family.variant(shapes, match)
    if None in backbone.values():
        raise ConversionError(
            f'a {family.name} checkpoint whose layer shapes fit none of the '
            f'known variants ({backbone})')
    variant = family.variant_name(backbone)
    logits = shapes.get('logits/semantic/weights')
    if any(name.startswith('meta_architecture/') for name in shapes):
        head = 'DensePredictionCellHead'
    elif logits is not None:
        head = 'DeepLabV3PlusTFHead'
    elif nt.SUM_MERGE_LOGITS in shapes:
        head, logits = 'LRASPPTFHead', shapes[nt.SUM_MERGE_LOGITS]
    else:
        head = None
    return CheckpointInfo(
        family=family.name,
        variant=variant,
        backbone=backbone,
        head=head,
        num_classes=int(logits[-1]) if logits is not None else None,
        decoder='decoder/feature_projection0/weights' in shapes,
        quantized=any(nt.QUANT_RANGE.match(name) for name in shapes))
