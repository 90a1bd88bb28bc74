"""TF DeepLab checkpoints -> our ``state_dict``, driven by name tables.

* :func:`inspect_variables` detects, from the variable names (and the
  shapes where names cannot tell, e.g. MobileNetV2's depth multiplier), the
  backbone family and variant, the head and the number of classes.
* The expected parameters (``state_dict`` keys and shapes) come from a
  config's ``model`` through the pure-python architecture descriptions of
  :mod:`deeplabplus_mm.archs` (:func:`expected_from_config`), or from a
  model (:func:`expected_state_shapes`).
* :func:`plan` matches the two through the tables of :mod:`.name_tables`
  and names the first TF variables that do not fit.
* :func:`convert_checkpoint` streams a checkpoint into a ``.pth`` file
  (:mod:`.torch_format`, no torch needed); :func:`convert` returns torch
  tensors for use in Python.

Nothing here imports mmseg or mmcv (nor torch, except :func:`convert`).
"""
import glob
import os
import os.path as osp
import re
from collections.abc import Mapping
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from ..archs import model_convs, state_shapes
from . import name_tables as nt

# Variables that are no model parameters: step counter, optimizer slots.
IGNORED_RE = re.compile(r'(^global_step$|/Momentum$|/ExponentialMovingAverage$'
                        r'|/Adam(_1)?$|/RMSProp(_1)?$|^beta[12]_power)')
# TF DeepLab's ADE20K models predict 151 classes with class 0 ("other")
# ignored in training; mmseg's ADE20K has the 150 real ones
# (reduce_zero_label), so logits channel 0 is dropped by default.
ADE20K_TF_CLASSES = 151
# Number of classes -> data set part of our config names.
DATASET_BY_CLASSES = {21: 'voc12aug', 19: 'cityscapes', 150: 'ade20k',
                      151: 'ade20k'}
DEFAULT_CONFIGS_DIR = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs')


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

    @property
    def has_head(self) -> bool:
        return self.head is not None

    @property
    def arch(self) -> Optional[int]:
        return self.backbone.get('arch')


def _family(name: str) -> Optional[nt.Family]:
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
        family = _family(name)
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
        decoder='decoder/feature_projection0/weights' in shapes)


def suggest_config(info: CheckpointInfo,
                   configs_dir: str = DEFAULT_CONFIGS_DIR) -> Optional[str]:
    """Our config for a checkpoint: its algorithm (DeepLab v3+ with a
    decoder, v3 without, DPC), backbone and, by its number of classes, data
    set, at output stride 16 (as the zoo trained); None if none fits."""
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
        convs = model_convs(model, backbone_only=not info.has_head)
    except (KeyError, TypeError, ValueError) as e:
        raise ConversionError(f'cannot describe the config\'s model: {e}')
    return state_shapes(convs)


def expected_state_shapes(model) -> Dict[str, tuple]:
    """``state_dict`` key -> shape of a built model."""
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


class Entry(NamedTuple):
    """One ``state_dict`` entry and where it comes from."""
    key: str
    tf_name: Optional[str]  # None: a num_batches_tracked buffer (0)
    shape: tuple  # torch shape
    drop_first: bool = False  # drop channel 0 (TF's ADE20K "other" class)


def _split_key(key: str) -> Tuple[str, str, str]:
    """``(module path, torch leaf, kind)`` of a ``state_dict`` key."""
    for leaf in ('conv.weight', 'bn.weight', 'bn.bias', 'bn.running_mean',
                 'bn.running_var', 'bn.num_batches_tracked'):
        if key.endswith('.' + leaf):
            return key[:-len(leaf) - 1], leaf, 'norm'
    module, _, leaf = key.rpartition('.')
    return module, leaf, 'plain'


class _Namer:
    """TF name <-> ``state_dict`` key through the tables, for one
    checkpoint (its family and TF root scope) and one head."""

    def __init__(self, info: CheckpointInfo, segmentor: bool,
                 model: Optional[dict] = None):
        """With ``model`` (a config's model dict), TF names follow its
        backbone family and variant and its head; else the checkpoint's."""
        if model is not None:
            backbone = dict(model['backbone'])
            self.family = next((f for f in nt.FAMILIES
                                if f.model_type == backbone.get('type')),
                               None)
            if self.family is None:
                raise ConversionError(
                    f'backbone type {backbone.get("type")!r} has no TF name '
                    'table; supported: ' +
                    ', '.join(f.model_type for f in nt.FAMILIES))
            self.root = self.family.root_of(backbone)
            head = (model.get('decode_head') or {}).get('type')
        else:
            self.family = nt.family_named(info.family)
            self.root = self.family.root_of(info.backbone)
            head = info.head
        self.head = nt.HEADS.get(head) if head else None
        self.segmentor = segmentor

    def tf_name(self, key: str) -> Optional[str]:
        """The TF variable of ``key`` (None for num_batches_tracked and
        modules no table knows)."""
        module, leaf, kind = _split_key(key)
        if leaf == 'bn.num_batches_tracked':
            return None
        if not self.segmentor:
            table, root, path = self.family.table, self.root, module
        elif module.startswith('backbone.'):
            table, root = self.family.table, self.root
            path = module[len('backbone.'):]
        elif module.startswith('decode_head.') and self.head is not None:
            table, root = self.head, ''
            path = module[len('decode_head.'):]
        else:
            return None
        found = table.to_tf(path)
        if found is None or found[1] != kind:
            return None
        scope = root + found[0]
        tf_leaf = nt.TORCH_LEAVES[kind].get(leaf)
        if tf_leaf == 'weights' and scope.endswith('depthwise'):
            tf_leaf = 'depthwise_weights'
        return None if tf_leaf is None else f'{scope}/{tf_leaf}'

    def key(self, tf_name: str) -> Optional[str]:
        """The ``state_dict`` key of a TF variable, or None."""
        scope, _, leaf = tf_name.rpartition('/')
        if scope.endswith('/BatchNorm'):
            scope = scope[:-len('/BatchNorm')]
            leaf = 'BatchNorm/' + leaf
        match = self.family.root.match(scope + '/')
        if match and match.group(0) == self.root:
            table, prefix = self.family.table, 'backbone.'
            scope = scope[match.end():]
        elif self.head is not None:
            table, prefix = self.head, 'decode_head.'
        else:
            return None
        found = table.to_torch(scope)
        if found is None:
            return None
        path, kind = found
        leaves = (nt.NORM_CONV_LEAVES
                  if kind == 'norm' else nt.PLAIN_CONV_LEAVES)
        if leaf not in leaves:
            return None
        prefix = prefix if self.segmentor else ''
        return f'{prefix}{path}.{leaves[leaf]}'


def tf_shape(tf_name: str, torch_shape: tuple) -> tuple:
    """The TF shape of a variable whose torch shape is ``torch_shape``."""
    if tf_name.endswith('/depthwise_weights'):
        c, m, kh, kw = torch_shape
        return (kh, kw, c, m)
    if tf_name.endswith('/weights'):
        cout, cin, kh, kw = torch_shape
        return (kh, kw, cin, cout)
    return tuple(torch_shape)


def to_torch_layout(tf_name: str, value: np.ndarray) -> np.ndarray:
    """Conv ``[kh,kw,cin,cout]`` -> ``[cout,cin,kh,kw]``; depthwise
    ``[kh,kw,c,1]`` -> ``[c,1,kh,kw]``; others unchanged."""
    if tf_name.endswith('/depthwise_weights'):
        return value.transpose(2, 3, 0, 1)
    if tf_name.endswith('/weights'):
        return value.transpose(3, 2, 0, 1)
    return value


def _head(items, n=5):
    shown = ', '.join(items[:n])
    return shown + (f' ... (+{len(items) - n} more)' if len(items) > n else '')


def plan(shapes: Dict[str, tuple],
         expected: Dict[str, tuple],
         info: Optional[CheckpointInfo] = None,
         drop_background_class: Optional[bool] = None,
         what: str = 'the model',
         model: Optional[dict] = None):
    """Match a checkpoint's variables with the expected parameters.

    Args:
        shapes: TF name -> shape of every variable of the checkpoint.
        expected: ``state_dict`` key -> shape (:func:`expected_from_config`
            or :func:`expected_state_shapes`); keys without a
            ``backbone.``/``decode_head.`` prefix mean a backbone alone.
        info: :func:`inspect_variables` of ``shapes`` (computed if None).
        drop_background_class: drop logits channel 0 (TF ADE20K's 151
            classes -> 150). None: when TF has 151 classes and the model
            150; False: never.
        what: how to name the expected model in messages (a config).
        model: the config's model dict ``expected`` comes from; TF names
            then follow its backbone variant and head (else the
            checkpoint's).

    Returns:
        tuple: ``(entries, ignored)``: one :class:`Entry` per expected key
        in its order, and the sorted names of the TF variables left out
        (optimizer slots, step counter, classifier).

    Raises:
        ConversionError: naming the first TF variables that do not fit:
            missing ones, ones no parameter takes, shape mismatches.
    """
    info = info or inspect_variables(shapes)
    segmentor = any(k.startswith(('backbone.', 'decode_head.'))
                    for k in expected)
    namer = _Namer(info, segmentor, model)
    family = namer.family
    entries, missing, wrong, wanted = [], [], [], set()
    for key, shape in expected.items():
        shape = tuple(shape)
        name = namer.tf_name(key)
        if name is None:
            if key.endswith('.num_batches_tracked'):
                entries.append(Entry(key, None, shape))
            else:
                missing.append(f'? (for {key}: no TF scope maps to it)')
            continue
        wanted.add(name)
        if name not in shapes:
            missing.append(f'{name} (for {key})')
            continue
        want, got = tf_shape(name, shape), tuple(shapes[name])
        drop = False
        if (name.startswith('logits/semantic/') and got != want
                and drop_background_class is not False
                and got[-1] == want[-1] + 1 and got[:-1] == want[:-1]):
            drop = drop_background_class or got[-1] == ADE20K_TF_CLASSES
        if got != want and not drop:
            wrong.append(f'{name} {got} vs {want}')
        entries.append(Entry(key, name, shape, drop))
    ignored, unexpected = [], []
    for name in shapes:
        if name in wanted:
            continue
        if IGNORED_RE.search(name) or family.ignored.match(name):
            ignored.append(name)
        elif not segmentor and nt.HEAD_ROOTS.match(name):
            ignored.append(name)
        else:
            unexpected.append(name)
    problems = []
    if model is not None and namer.root != nt.family_named(
            info.family).root_of(info.backbone):
        problems.append(f'the checkpoint holds {info.variant}, {what} '
                        f'builds {namer.root.rstrip("/")}')
    if wrong:
        problems.append(f'shape mismatch (checkpoint vs {what}): ' +
                        _head(wrong))
    if missing:
        problems.append(f'{len(missing)} parameters of {what} have no TF '
                        'variable: ' + _head(missing))
    if unexpected:
        problems.append(f'{len(unexpected)} TF variables fit no parameter '
                        f'of {what}: ' + _head(sorted(unexpected)))
    if problems:
        raise ConversionError('; '.join(problems))
    return entries, sorted(ignored)


def read_entry(entry: Entry, read: Callable[[str], np.ndarray],
               slot: Optional[str] = None) -> np.ndarray:
    """The value of one entry, or of its optimizer ``slot`` (TF's
    ``<variable>/<slot>``, e.g. ``'Momentum'``), in torch's layout (a new
    array)."""
    if entry.tf_name is None:
        return np.zeros((), np.int64)
    name = entry.tf_name if slot is None else f'{entry.tf_name}/{slot}'
    value = to_torch_layout(entry.tf_name, read(name))
    if entry.drop_first:
        value = value[1:]
    return np.require(value, requirements='C')


def convert(tf_tensors: Mapping,
            expected: Optional[Dict[str, tuple]] = None,
            drop_background_class: Optional[bool] = None,
            shapes: Optional[Dict[str, tuple]] = None):
    """Convert TF arrays to a torch ``state_dict`` (imports torch).

    Args:
        tf_tensors: TF variable name -> array (numeric tensors only).
        expected: ``state_dict`` key -> shape of the model to fill
            (:func:`expected_state_shapes` of a model, or
            :func:`expected_from_config`); None: the model of
            :func:`suggest_config`.
        drop_background_class: see :func:`plan`.
        shapes: TF name -> shape, when ``tf_tensors`` reads lazily.

    Returns:
        tuple: ``(state_dict, info, ignored)``.
    """
    import torch
    if shapes is None:
        shapes = {k: tuple(np.shape(v)) for k, v in tf_tensors.items()}
    info = inspect_variables(shapes)
    what = 'the model'
    if expected is None:
        config = suggest_config(info)
        if config is None:
            raise ConversionError(f'no config of ours fits {info.variant}')
        model = load_model_config(config)
        expected = expected_from_config(
            model, info, _classes_after_drop(info, drop_background_class))
        what = osp.relpath(config)
    else:
        model = None
    entries, ignored = plan(shapes, expected, info, drop_background_class,
                            what, model)
    state_dict = {
        e.key: torch.from_numpy(read_entry(e, tf_tensors.__getitem__))
        for e in entries
    }
    return state_dict, info, ignored


def _classes_after_drop(info, drop_background_class):
    if info.num_classes is None:
        return None
    drop = (info.num_classes == ADE20K_TF_CLASSES
            if drop_background_class is None else drop_background_class)
    return info.num_classes - int(drop)


def convert_checkpoint(reader,
                       out: str,
                       config: Optional[str] = None,
                       keep_background_class: bool = False,
                       configs_dir: str = DEFAULT_CONFIGS_DIR,
                       progress: Optional[Callable[[int, int], None]] = None,
                       momentum: bool = False) -> dict:
    """Convert an open checkpoint into a ``.pth`` file (torch's format,
    written without torch, atomically: ``out + '.tmp'`` then renamed).

    Args:
        reader: a :class:`CheckpointReader` (``open_checkpoint``).
        out: output path.
        config: the config whose model the checkpoint must fill; None: the
            suggested one (:func:`suggest_config`), whose number of classes
            then follows the checkpoint.
        keep_background_class: keep logits channel 0 of 151-class (ADE20K)
            checkpoints instead of dropping it.
        configs_dir: where suggested configs are looked up.
        progress: called with (tensors written so far, tensors to write).
        momentum: also write the ``/Momentum`` slots (TF's momentum
            accumulators, in torch's layout) of the converted variables as
            ``tf_momentum`` (``state_dict`` key -> tensor), for
            ``load_momentum = True`` (:class:`~deeplabplus_mm.engine.
            LoadMomentumHook`); variables without a slot start from 0 as in
            TF.

    Returns:
        dict: the ``meta`` saved with the ``state_dict`` (plain data);
        ``momentum`` holds the number of slots written (None without
        ``momentum``).

    Raises:
        ConversionError: see :func:`inspect_variables` and :func:`plan`;
            ``momentum`` for a checkpoint without ``/Momentum`` slots.
        TFCheckpointError: a corrupt tensor (crc mismatch...).
    """
    from .torch_format import TorchFileWriter
    shapes = {name: tuple(reader.shape(name)) for name in reader.names()}
    info = inspect_variables(shapes)
    drop = False if keep_background_class else None
    classes = None
    if config is None:
        config = suggest_config(info, configs_dir)
        if config is None:
            raise ConversionError(
                f'no config of ours for {info.variant}; name one with '
                '--config')
        classes = _classes_after_drop(info, drop)
    model = load_model_config(config)
    what = f'config {_short(config)}'
    expected = expected_from_config(model, info, classes)
    entries, ignored = plan(shapes, expected, info, drop, what, model)
    head_classes = None
    if info.has_head:
        head_classes = next(e.shape[0] for e in entries
                            if e.key == 'decode_head.conv_seg.bias')
    slots = [e for e in entries
             if e.tf_name is not None and f'{e.tf_name}/Momentum' in shapes]
    if momentum and not slots:
        raise ConversionError('no /Momentum slots of the converted '
                              'variables in the checkpoint (--momentum)')
    if momentum:
        carried = {f'{e.tf_name}/Momentum' for e in slots}
        ignored = [name for name in ignored if name not in carried]
    step = reader.get('global_step') if 'global_step' in shapes else None
    meta = dict(
        source=reader.prefix,
        family=info.family,
        variant=info.variant,
        segmentor=info.has_head,
        config=_short(config),
        config_num_classes=(model['decode_head'].get('num_classes')
                            if info.has_head else None),
        num_classes=head_classes,
        tf_num_classes=info.num_classes,
        global_step=None if step is None else int(step),
        ignored=ignored,
        skipped=list(reader.skipped),
        momentum=len(slots) if momentum else None)
    tmp = f'{out}.tmp'
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    try:
        with TorchFileWriter(tmp) as writer:
            state_dict = {}
            total = len(entries) + (len(slots) if momentum else 0)
            for i, entry in enumerate(entries):
                state_dict[entry.key] = writer.add_tensor(
                    read_entry(entry, reader.get))
                if progress is not None:
                    progress(i + 1, total)
            content = dict(state_dict=state_dict, meta=meta)
            if momentum:
                content['tf_momentum'] = {}
                for i, entry in enumerate(slots):
                    content['tf_momentum'][entry.key] = writer.add_tensor(
                        read_entry(entry, reader.get, 'Momentum'))
                    if progress is not None:
                        progress(len(entries) + i + 1, total)
            writer.finish(content)
        os.replace(tmp, out)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    meta['num_tensors'] = len(entries)
    return meta


def _short(path: str) -> str:
    """A config path relative to the working directory when inside it."""
    rel = osp.relpath(path)
    return path if rel.startswith('..') else rel


def map_scope(scope: str,
              head: str = 'DeepLabV3PlusTFHead',
              segmentor: bool = True) -> Optional[str]:
    """Our module path of a TF variable scope, or None if not ours.

    ``'xception_65/entry_flow/block2/unit_1/xception_module/separable_conv2_pointwise'``
    -> ``'backbone.entry_flow.block2.unit_1.separable_conv2.pointwise_conv'``;
    ``'aspp0'`` -> ``'decode_head.aspp.0'``.
    """
    family = _family(scope + '/')
    if family is not None:
        match = family.root.match(scope + '/')
        found = family.table.to_torch(scope[match.end():])
        prefix = 'backbone.' if segmentor else ''
    else:
        found = nt.HEADS[head].to_torch(scope) if segmentor else None
        prefix = 'decode_head.'
    return None if found is None else prefix + found[0]


def tf_variable_names(model: dict) -> Dict[str, Optional[str]]:
    """``state_dict`` key -> TF variable name (None for
    ``num_batches_tracked``) of a config's segmentor ``model`` (a dict),
    through the name tables; the model is not built."""
    namer = _Namer(None, True, model)
    return {key: namer.tf_name(key)
            for key in state_shapes(model_convs(model))}


def tf_variables(model: dict) -> Dict[str, tuple]:
    """TF variable name -> TF shape of a config's segmentor: the model
    variables a TF DeepLab checkpoint for it holds (no optimizer slots, no
    ``global_step``); the model is not built."""
    shapes = state_shapes(model_convs(model))
    return {name: tf_shape(name, shapes[key])
            for key, name in tf_variable_names(model).items() if name}


def map_name(tf_name: str,
             info: CheckpointInfo,
             segmentor: bool = True) -> Optional[str]:
    """The ``state_dict`` key of a TF variable of a checkpoint described by
    ``info``, or None (optimizer slots, classifier, unknown scopes)."""
    if IGNORED_RE.search(tf_name):
        return None
    return _Namer(info, segmentor).key(tf_name)


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
    configs = [config]
    other = config.replace('-d16_', '-d8_')
    if other != config and osp.isfile(other):
        configs.append(other)
    lines = ['test it with (d16: output stride 16 as trained; d8: the '
             'zoo\'s OS 8 evaluation):' if len(configs) > 1 else
             'test it with:']
    lines += [f'  python tools/test.py {c} {checkpoint}{options}'
              for c in configs]
    return lines
