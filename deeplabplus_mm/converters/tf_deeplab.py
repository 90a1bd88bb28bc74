"""TF DeepLab checkpoints -> our ``state_dict``.

The steps, one module each:

* :mod:`.detect`: which backbone family and variant, head and number of
  classes a checkpoint holds (:func:`inspect_variables`).
* :mod:`.configs`: the config of ours that fits it and the parameters
  (``state_dict`` keys and shapes) its model has, computed from the
  pure-python architecture descriptions of :mod:`deeplabplus_mm.archs`
  (:func:`expected_from_config`), or those of a built model
  (:func:`expected_state_shapes`).
* :mod:`.naming` and :mod:`.planning`: :func:`plan` matches the two through
  the tables of :mod:`.name_tables` and names the first TF variables that
  do not fit.
* here: :func:`convert_checkpoint` streams a checkpoint into a ``.pth``
  file (:mod:`.torch_format`, no torch needed); :func:`convert` returns
  torch tensors for use in Python.

Nothing here imports mmseg or mmcv (nor torch, except :func:`convert`).
"""
import os
import os.path as osp
from collections.abc import Mapping
from typing import Callable, Dict, Optional

import numpy as np

from . import name_tables as nt
from .configs import (DEFAULT_CONFIGS_DIR, expected_from_config,
                      load_model_config, suggest_config)
from .detect import ConversionError, inspect_variables
from .planning import classes_after_drop, plan, read_entry


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
            model, info, classes_after_drop(info, drop_background_class))
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
        classes = classes_after_drop(info, drop)
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
    # an 8-bit checkpoint into a float model: its ranges, reported
    dropped = [name for name in ignored if nt.QUANT_RANGE.match(name)]
    ignored = [name for name in ignored if name not in dropped]
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
        momentum=len(slots) if momentum else None,
        fake_quant=sum(e.key.endswith('quant.min') for e in entries),
        dropped_quant_ranges={name: float(reader.get(name))
                              for name in dropped})
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
