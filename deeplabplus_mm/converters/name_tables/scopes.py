"""The machinery of the name tables: leaf maps, :class:`ScopeTable`
(rules usable in both directions) and :class:`Family` (a backbone's table
with its variant detection)."""
import re
from typing import Callable, Dict, NamedTuple, Optional, Sequence, Tuple


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
