"""Repeat a stored TF training reference with our tools and compare.

A reference (tests/tf_train/<case>/, made by
tools/tf_references/train_reference.py with TensorFlow) holds three steps
of TF DeepLab's train.py on a fixed batch from known initial values
(tests/tf_values.py). Here the same initial values become a TF checkpoint
(our bundle writer), ``tools/convert_tf_checkpoint.py`` converts it,
``tools/train.py`` trains 3 iterations with the family's shipped config
(only the run set-up changed: data, batch 2 without shuffling or random
ops, crop 129, dropout 0, learning rate 0.007 over a 10-iteration poly
horizon, checkpoints after iterations 1 and 3, ``load_from``) and every
stored update is compared with ours.
"""
import glob
import json
import os
import os.path as osp
import textwrap

import numpy as np

import tf_values
from conftest import REPO, run_tool

DATA = osp.join(REPO, 'tests', 'tf_train')
STEPS = (1, 3)
# Tolerances: an update within 1e-3 of the largest of its tensor's update
# (or 4 float32 ulps of the weight: updates below rounding), each step's
# cross-entropy within 1e-4 relative.
UPDATE_RTOL = 1e-3
WEIGHT_ULPS = 4
CE_RTOL = 1e-4


def cases():
    """The stored references' case names."""
    return sorted(osp.basename(osp.dirname(p)) for p in glob.glob(
        osp.join(DATA, '*', 'reference.json')))


def load_reference(case):
    with open(osp.join(DATA, case, 'reference.json')) as f:
        ref = json.load(f)
    with np.load(osp.join(DATA, case, 'updates.npz')) as npz:
        ref['updates'] = {k: npz[k] for k in npz.files}
    return ref


def initial_tensors(ref):
    """TF name -> initial value, in TF's layout."""
    return {v['name']: tf_values.train_variable_value(v['name'], v['shape'])
            for v in ref['variables']}


def write_batch(ref, root):
    """The reference's batch as image/label PNGs ``0.png``, ``1.png``."""
    import cv2
    images, labels = tf_values.make_batch(ref['crop'], ref['num_classes'],
                                          ref['ignore_label'])
    for sub in ('img', 'ann'):
        os.makedirs(osp.join(root, sub), exist_ok=True)
    for i, (image, label) in enumerate(zip(images, labels)):
        cv2.imwrite(osp.join(root, 'img', f'{i}.png'), image[..., ::-1])
        cv2.imwrite(osp.join(root, 'ann', f'{i}.png'), label)
    return root


def parity_config(ref, config, data_root, load_from, path):
    """``config`` (a shipped config) with only the run set-up changed; the
    schedule's horizon goes on the command line (:data:`HORIZON_OPTION`),
    so the shipped schedule's type stays."""
    crop = ref['crop']
    classes = tuple(str(c) for c in range(ref['num_classes']))
    text = f"""\
        _base_ = [{osp.join(REPO, config)!r}]
        pipeline = [dict(type='LoadImageFromFile'),
                    dict(type='LoadAnnotations'),
                    dict(type='PackSegInputs')]
        train_dataloader = dict(
            batch_size=2, num_workers=0, persistent_workers=False,
            sampler=dict(type='InfiniteSampler', shuffle=False),
            dataset=dict(
                _delete_=True, type='BaseSegDataset',
                data_root={data_root!r},
                data_prefix=dict(img_path='img', seg_map_path='ann'),
                img_suffix='.png', seg_map_suffix='.png',
                metainfo=dict(classes={classes!r}),
                pipeline=pipeline))
        val_dataloader = None
        val_evaluator = None
        val_cfg = None
        test_dataloader = None
        test_evaluator = None
        test_cfg = None
        data_preprocessor = dict(size=({crop}, {crop}))
        model = dict(
            data_preprocessor=data_preprocessor,
            backbone=dict(init_cfg=None),
            decode_head=dict(dropout_ratio=0.0,
                             num_classes={ref['num_classes']},
                             ignore_index={ref['ignore_label']}))
        optim_wrapper = dict(optimizer=dict(lr=0.007))
        train_cfg = dict(max_iters=3, val_interval=1000)
        log_processor = dict(window_size=1)
        default_hooks = dict(
            logger=dict(interval=1),
            checkpoint=dict(interval=2, save_begin=1, max_keep_ckpts=-1,
                            save_optimizer=False, save_param_scheduler=False))
        load_from = {load_from!r}
        """
    with open(path, 'w') as f:
        f.write(textwrap.dedent(text))
    return str(path)


# TF's training_number_of_steps 10 as the shipped schedule's end.
HORIZON_OPTION = ['--cfg-options', 'param_scheduler.0.end=10']


def train_like_tf(ref, tmp_path):
    """Initial checkpoint -> convert -> train; returns the work dir and the
    converter's info for naming."""
    from deeplabplus_mm.converters import inspect_variables, write_checkpoint
    init = initial_tensors(ref)
    write_checkpoint(str(tmp_path / 'init' / 'model.ckpt'), init)
    pth = str(tmp_path / 'init.pth')
    data = write_batch(ref, str(tmp_path / 'data'))
    cfg = parity_config(ref, ref['our_config'], data, pth,
                        tmp_path / 'parity.py')
    # converted for the config trained (ADE20K: all 151 TF classes)
    convert = ['tools/convert_tf_checkpoint.py', str(tmp_path / 'init'), pth,
               '--config', cfg]
    if ref['num_classes'] == 151:
        convert.append('--keep-background-class')
    run_tool(*convert)
    work_dir = str(tmp_path / 'work')
    out = run_tool('tools/train.py', cfg, '--work-dir', work_dir,
                   *HORIZON_OPTION).stdout
    info = inspect_variables({k: v.shape for k, v in init.items()})
    return work_dir, out, init, info


def read_log(work_dir):
    """Per iteration (cross-entropy, learning rate) from mmengine's
    scalars.json (full precision, unlike the text log)."""
    (path, ) = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    rows = sorted((r for r in rows if 'decode.loss_ce' in r),
                  key=lambda r: r['step'])
    return [(r['decode.loss_ce'], r['lr']) for r in rows]


def to_tf_layout(name, value):
    """Our conv ``[cout, cin, kh, kw]`` / depthwise ``[c, 1, kh, kw]`` in
    TF's ``[kh, kw, cin, cout]`` / ``[kh, kw, c, 1]``."""
    if name.endswith('/depthwise_weights'):
        return value.transpose(2, 3, 0, 1)
    if name.endswith('/weights'):
        return value.transpose(2, 3, 1, 0)
    return value


def update_error(ours, ref, weight):
    """(error relative to the largest stored update, error in float32
    ulps of the largest weight) of one tensor's sampled update."""
    err = float(np.max(np.abs(ours.astype(np.float64) - ref)))
    scale = float(np.max(np.abs(ref)))
    ulp = float(np.spacing(np.float32(np.max(np.abs(weight)))))
    rel = err / scale if scale else (0.0 if err == 0 else np.inf)
    return rel, err / ulp


def compare(ref, work_dir, init, info):
    """Every stored update against ours; returns (failures, summary):
    failures as 'name step k: ...' lines."""
    import torch
    from deeplabplus_mm.converters import map_name
    failures, rels, unmapped = [], [], []
    for step in STEPS:
        state = torch.load(osp.join(work_dir, f'iter_{step}.pth'),
                           map_location='cpu',
                           weights_only=False)['state_dict']
        for var in ref['variables']:
            name = var['name']
            key = map_name(name, info)
            if key is None or key not in state:
                unmapped.append(name)
                continue
            after = to_tf_layout(name, state[key].double().numpy())
            update = (after - init[name]).reshape(-1)
            idx = tf_values.sample_indices(name, update.size)
            stored = ref['updates'][f'{name}|{step}'].astype(np.float64)
            rel, ulps = update_error(update[idx], stored,
                                     after.reshape(-1)[idx])
            norm_ref = var['update_norm'][str(step)]
            norm = float(np.linalg.norm(update))
            norm_err = abs(norm - norm_ref)
            # in ulps of the weight per sqrt(size): n elements' rounding
            norm_ulps = norm_err / float(np.spacing(np.float32(
                np.max(np.abs(after))))) / max(1.0, np.sqrt(update.size))
            rels.append(min(rel, 1.0))
            bad = []
            if rel > UPDATE_RTOL and ulps > WEIGHT_ULPS:
                bad.append(f'update rel err {rel:.2e} ({ulps:.1f} ulp)')
            if norm_err > UPDATE_RTOL * norm_ref and norm_ulps > WEIGHT_ULPS:
                bad.append(f'norm {norm:.6g} vs TF {norm_ref:.6g}')
            if bad:
                failures.append(f'{name} step {step}: ' + ', '.join(bad))
    summary = dict(tensor_steps=len(rels),
                   median_rel=float(np.median(rels)) if rels else None,
                   unmapped=sorted(set(unmapped)))
    return failures, summary


def step_errors(ref, work_dir):
    """Lines for the steps whose cross-entropy is not TF's within CE_RTOL
    or whose learning rate is not within 1e-6."""
    ours = read_log(work_dir)
    assert len(ours) == len(ref['steps']), (ours, ref['steps'])
    lines = []
    for (ce, lr), tf in zip(ours, ref['steps']):
        if abs(ce - tf['cross_entropy']) > CE_RTOL * tf['cross_entropy']:
            lines.append(f'step {tf["step"]}: cross-entropy {ce:.7g}, TF '
                         f'{tf["cross_entropy"]:.7g}')
        if abs(lr - tf['learning_rate']) > 1e-6 * tf['learning_rate']:
            lines.append(f'step {tf["step"]}: learning rate {lr:.8g}, TF '
                         f'{tf["learning_rate"]:.8g}')
    return lines
