"""Training parity with TF DeepLab's ``train.py``: the machinery, for any
family's shipped config and TF training reference.

A reference folder (``shared/tf_deeplab/<case>_train/``, README "Training")
holds a fixed batch (``image_<i>.png``, ``label_<i>.png``), the run's flags
(``options.json``), per-step learning rates and losses
(``train_steps.json``) and real TF checkpoints before the first step
(``ckpt_init/``) and after some steps (``ckpt_step<k>/``).
:func:`run_parity` trains the shipped config with our ``tools/train.py``
on that batch, changing only the run's set-up (data, batch, no random
transforms, crop, dropout off, learning rate, schedule horizon, length,
checkpoints, ``load_from``), and compares every update ``after - before``
with TF's; the recipe (loss, decay, multipliers, momentum, BN, schedule)
is the shipped config's.
"""
import glob
import json
import os
import os.path as osp
import re
import shutil
from typing import Dict, List, Optional

import numpy as np

from conftest import run_tool

# The TF flags that are the recipe, and where the shipped config holds them.
RECIPE_FLAGS = {
    'momentum': 'optim_wrapper.optimizer.momentum',
    'weight_decay': 'optim_wrapper.optimizer.weight_decay',
    'learning_power': 'param_scheduler.0.power',
    'end_learning_rate': 'param_scheduler.0.eta_min',
    'last_layer_gradient_multiplier':
    'optim_wrapper.paramwise_cfg.last_layer_gradient_multiplier',
}


def load_reference(ref_dir: str) -> dict:
    """``options.json`` and ``train_steps.json`` of a reference folder."""
    with open(osp.join(ref_dir, 'options.json')) as f:
        options = json.load(f)
    with open(osp.join(ref_dir, 'train_steps.json')) as f:
        steps = json.load(f)
    flags = options['train_flags']
    return dict(
        options=options,
        flags=flags,
        steps=steps['steps'],
        checkpoints={int(re.fullmatch(r'after_step_(\d+)', k).group(1)):
                     osp.join(ref_dir, v)
                     for k, v in steps['checkpoints'].items()},
        batch=int(flags['train_batch_size']),
        crop=tuple(int(c) for c in flags['train_crop_size']),
        num_classes=int(options['num_classes']))


def _get(cfg, dotted: str):
    for part in dotted.split('.'):
        cfg = cfg[int(part)] if isinstance(cfg, list) else cfg[part]
    return cfg


def recipe_mismatches(config: str, ref: dict) -> List[str]:
    """The recipe flags of the reference that the shipped ``config`` does
    not hold (a parity run would then not test the shipped recipe); also
    the schedule's type."""
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    found = []
    for flag, key in RECIPE_FLAGS.items():
        want, got = float(ref['flags'][flag]), float(_get(cfg, key))
        if not np.isclose(want, got, rtol=1e-12, atol=0):
            found.append(f'{flag}: TF {want}, {key} {got}')
    if ref['flags']['learning_policy'] != 'poly' or len(
            cfg.param_scheduler) != 1 or \
            cfg.param_scheduler[0].type != 'TFPolyLR':
        found.append('schedule: TF poly vs '
                     f'{[s.type for s in cfg.param_scheduler]}')
    return found


def write_voc_folder(root: str, images: List[str], labels: List[str]
                     ) -> str:
    """A VOC-layout data set under ``root`` from PNG files: images
    (lossless) in ``JPEGImages/``, labels in ``SegmentationClassAug/``,
    ``ImageSets/Segmentation/trainaug.txt`` listing them in order."""
    names = [f'sample_{i}' for i in range(len(images))]
    for sub in ('JPEGImages', 'SegmentationClassAug',
                'ImageSets/Segmentation'):
        os.makedirs(osp.join(root, sub), exist_ok=True)
    for name, image, label in zip(names, images, labels):
        shutil.copy(image, osp.join(root, 'JPEGImages', name + '.png'))
        shutil.copy(label,
                    osp.join(root, 'SegmentationClassAug', name + '.png'))
    with open(osp.join(root, 'ImageSets/Segmentation/trainaug.txt'),
              'w') as f:
        f.write('\n'.join(names) + '\n')
    return root


def make_voc_folder(ref_dir: str, root: str, batch: int) -> str:
    """The reference batch (``image_<i>.png``, ``label_<i>.png``) as a
    VOC-layout data set (:func:`write_voc_folder`), in batch order."""
    return write_voc_folder(
        root, [osp.join(ref_dir, f'image_{i}.png') for i in range(batch)],
        [osp.join(ref_dir, f'label_{i}.png') for i in range(batch)])


def write_derived_config(path: str, config: str, data_root: str,
                         load_from: str, max_iters: int, batch: int,
                         crop: tuple, num_classes: int, lr: float,
                         head: Optional[dict] = None, **extra) -> str:
    """A config that inherits the shipped ``config`` and changes only the
    run's set-up: the data set under ``data_root`` (:func:`write_voc_folder`;
    ``batch`` images per step, no shuffling, loaded and packed without
    random transforms, padded to ``crop``), dropout off (the references'
    one deviation), base learning rate ``lr``, ``max_iters`` steps with a
    checkpoint and a log line (window 1) after each, no validation,
    ``load_from``; ``head``: more decode-head settings (the classes and
    ignored label of a data set's TF training); ``extra``: more top-level
    keys. The schedule's horizon is set on the command line
    (:func:`train_args`)."""
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadVOCAnnotations', num_classes=num_classes),
        dict(type='PackSegInputs'),
    ]
    derived = dict(
        train_dataloader=dict(
            batch_size=batch,
            num_workers=0,
            persistent_workers=False,
            sampler=dict(type='InfiniteSampler', shuffle=False),
            dataset=dict(
                _delete_=True,
                type='PascalVOCAugDataset',
                data_root=osp.abspath(data_root),
                data_prefix=dict(img_path='JPEGImages',
                                 seg_map_path='SegmentationClassAug'),
                ann_file='ImageSets/Segmentation/trainaug.txt',
                img_suffix='.png',
                pipeline=pipeline)),
        val_dataloader=None, val_cfg=None, val_evaluator=None,
        test_dataloader=None, test_cfg=None, test_evaluator=None,
        model=dict(
            data_preprocessor=dict(size=tuple(crop)),
            backbone=dict(init_cfg=None),
            decode_head=dict(dropout_ratio=0.0, **(head or {}))),
        optim_wrapper=dict(optimizer=dict(lr=float(lr))),
        train_cfg=dict(max_iters=max_iters),
        log_processor=dict(window_size=1),
        default_hooks=dict(
            logger=dict(interval=1),
            checkpoint=dict(interval=1, max_keep_ckpts=-1)),
        load_from=osp.abspath(load_from),
        **extra)
    lines = [f'_base_ = [{osp.abspath(config)!r}]']
    lines += [f'{key} = {value!r}' for key, value in derived.items()]
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return path


def train_args(horizon: int) -> List[str]:
    """Command-line options of a run: the schedule's horizon (TF's
    ``training_number_of_steps``) in the place the shipped schedule sets
    its own (its ``end``)."""
    return ['--cfg-options', f'param_scheduler.0.end={int(horizon)}']


def convert(prefix: str, out: str, config: str, *extra) -> str:
    """``tools/convert_tf_checkpoint.py prefix out --config config``."""
    run_tool('tools/convert_tf_checkpoint.py', prefix, out, '--config',
             config, *extra)
    return out


def load_state(path: str) -> Dict[str, np.ndarray]:
    """A checkpoint's ``state_dict`` as float64 arrays (without
    ``num_batches_tracked``, which TF has not)."""
    import torch

    from deeplabplus_mm.engine import register_safe_checkpoints
    register_safe_checkpoints()  # our training checkpoints' safe globals
    state = torch.load(path, map_location='cpu', weights_only=True)
    state = state.get('state_dict', state)
    return {k: v.double().numpy() for k, v in state.items()
            if not k.endswith('num_batches_tracked')}


def compare_updates(before: Dict[str, np.ndarray],
                    ours: Dict[str, np.ndarray],
                    tf: Dict[str, np.ndarray]) -> Dict[str, dict]:
    """Per tensor, of the updates ``d = after - before``: ``rel`` =
    ||d_ours - d_TF|| / ||d_TF||, ``ulp`` = ||d_ours - d_TF|| / ||ulp(w)||
    (the same difference in float32 ulps of TF's weight after the step, as
    norms over the tensor: where an update is a few ulps of its weight,
    float32 cannot resolve 1e-3 of it) and ``norm`` = ||d_TF||."""
    assert set(before) == set(ours) == set(tf), (
        sorted(set(before) ^ set(ours)) + sorted(set(before) ^ set(tf)))[:5]
    result = {}
    for key in before:
        d_ours, d_tf = ours[key] - before[key], tf[key] - before[key]
        err, norm = np.linalg.norm(d_ours - d_tf), np.linalg.norm(d_tf)
        ulp = np.linalg.norm(np.spacing(
            np.abs(tf[key]).astype(np.float32)).astype(np.float64))
        result[key] = dict(
            rel=err / norm if norm > 0 else (0.0 if err == 0 else np.inf),
            ulp=err / ulp if ulp > 0 else np.inf,
            norm=norm)
    return result


def failures(diffs: Dict[str, dict], rel: float = 1e-3,
             ulps: float = 4) -> List[str]:
    """Tensors off by more than ``rel`` relative and ``ulps`` ulps."""
    return [f'{k}: rel {d["rel"]:.3g}, {d["ulp"]:.3g} ulp'
            for k, d in diffs.items() if d['rel'] > rel and d['ulp'] > ulps]


def read_train_log(work_dir: str) -> List[dict]:
    """The per-iteration records of the run's json log
    (``<work_dir>/<timestamp>/vis_data/scalars.json``), by iteration."""
    logs = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                     'scalars.json')))
    assert logs, f'no json log under {work_dir}'
    with open(logs[-1]) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return sorted((r for r in records if 'iter' in r and 'lr' in r),
                  key=lambda r: r['iter'])


def run_parity(config: str, ref_dir: str, tmp_dir: str,
               max_iters: Optional[int] = None) -> dict:
    """Train ``config`` on the reference batch with ``tools/train.py`` and
    compare with TF.

    Returns:
        dict: ``updates`` {step: :func:`compare_updates`} for every TF
        checkpoint step, ``log`` (our per-iteration records: ``lr``,
        ``decode.loss_ce``...), ``ref`` (:func:`load_reference`),
        ``recipe`` (:func:`recipe_mismatches`).
    """
    ref = load_reference(ref_dir)
    steps = max_iters or max(ref['checkpoints'])
    data_root = make_voc_folder(ref_dir, osp.join(tmp_dir, 'data'),
                                ref['batch'])
    init = convert(osp.join(ref_dir, 'ckpt_init', 'model.ckpt'),
                   osp.join(tmp_dir, 'tf_init.pth'), config)
    cfg = write_derived_config(
        osp.join(tmp_dir, 'parity.py'), config, data_root, init, steps,
        batch=ref['batch'], crop=ref['crop'],
        num_classes=ref['num_classes'],
        lr=float(ref['flags']['base_learning_rate']))
    work_dir = osp.join(tmp_dir, 'work')
    run_tool('tools/train.py', cfg, '--work-dir', work_dir,
             *train_args(ref['flags']['training_number_of_steps']))
    before = load_state(init)
    updates = {}
    for step, prefix in sorted(ref['checkpoints'].items()):
        if step > steps:
            continue
        tf_after = load_state(convert(
            prefix, osp.join(tmp_dir, f'tf_step{step}.pth'), config))
        ours = load_state(osp.join(work_dir, f'iter_{step}.pth'))
        updates[step] = compare_updates(before, ours, tf_after)
    return dict(updates=updates, log=read_train_log(work_dir), ref=ref,
                recipe=recipe_mismatches(config, ref))
