"""Matching a checkpoint's variables with a model's parameters
(:func:`plan`), and reading each matched entry in torch's layout."""
from typing import Callable, Dict, NamedTuple, Optional

import numpy as np

from . import name_tables as nt
from .detect import (IGNORED_RE, CheckpointInfo, ConversionError,
                     inspect_variables)
from .naming import Namer, tf_shape, to_torch_layout

# TF DeepLab's ADE20K models predict 151 classes with class 0 ("other")
# ignored in training; mmseg's ADE20K has the 150 real ones
# (reduce_zero_label), so logits channel 0 is dropped by default.
ADE20K_TF_CLASSES = 151


class Entry(NamedTuple):
    """One ``state_dict`` entry and where it comes from."""
    key: str
    tf_name: Optional[str]  # None: a num_batches_tracked buffer (0)
    shape: tuple  # torch shape
    drop_first: bool = False  # drop channel 0 (TF's ADE20K "other" class)


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
    namer = Namer(info, segmentor, model)
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
        if (IGNORED_RE.search(name) or family.ignored.match(name)
                or nt.QUANT_RANGE.match(name)):  # a float model's ranges
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


def classes_after_drop(info: CheckpointInfo,
                       drop_background_class: Optional[bool]
                       ) -> Optional[int]:
    """The number of classes the model gets from a checkpoint's logits
    (see :func:`plan`'s ``drop_background_class``)."""
    if info.num_classes is None:
        return None
    drop = (info.num_classes == ADE20K_TF_CLASSES
            if drop_background_class is None else drop_background_class)
    return info.num_classes - int(drop)
