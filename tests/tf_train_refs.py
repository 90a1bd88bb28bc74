"""Repeat a stored TF training reference with our tools and compare.

A reference (tests/tf_train/<case>/, made by
tools/tf_references/train_reference.py with TensorFlow) holds three steps
of TF DeepLab's train.py on a fixed batch from known initial values
(tests/tf_values.py). Here the same initial values become a TF checkpoint
(our bundle writer), ``tools/convert_tf_checkpoint.py`` converts it,
``tools/train.py`` trains 3 iterations with the family's shipped config
(only the run set-up changed: data, batch 2 without shuffling or random
ops, crop 129, dropout 0, learning rate 0.007 over a 10-iteration poly
horizon, a checkpoint after each iteration, ``load_from``; the set-up of
tests/train_parity.py, shared with the MobileNetV2 test) and every
stored update is compared with ours.
"""
import glob
import json
import os
import os.path as osp

import numpy as np

import tf_values
import train_parity as parity
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
    """The reference's batch as a VOC-layout data set
    (:func:`train_parity.write_voc_folder`), in batch order."""
    import cv2
    images, labels = tf_values.make_batch(ref['crop'], ref['num_classes'],
                                          ref['ignore_label'])
    os.makedirs(osp.join(root, 'png'), exist_ok=True)
    image_files, label_files = [], []
    for i, (image, label) in enumerate(zip(images, labels)):
        image_files.append(osp.join(root, 'png', f'image_{i}.png'))
        label_files.append(osp.join(root, 'png', f'label_{i}.png'))
        cv2.imwrite(image_files[-1], image[..., ::-1])
        cv2.imwrite(label_files[-1], label)
    return parity.write_voc_folder(osp.join(root, 'voc'), image_files,
                                   label_files)


def flag(ref, name):
    """The value of TF's ``--name=value`` flag of the reference run."""
    prefix = f'--{name}='
    return next(f[len(prefix):] for f in ref['flags'] if f.startswith(prefix))


def train_like_tf(ref, tmp_path):
    """Initial checkpoint -> convert -> train (the shipped config with only
    the run set-up changed: :func:`train_parity.write_derived_config`);
    returns the work dir, the run's output, the initial values and the
    converter's info for naming."""
    from deeplabplus_mm.converters import inspect_variables
    from tools.fixtures.tf_bundle_writer import write_checkpoint
    init = initial_tensors(ref)
    write_checkpoint(str(tmp_path / 'init' / 'model.ckpt'), init)
    pth = str(tmp_path / 'init.pth')
    data = write_batch(ref, str(tmp_path / 'data'))
    cfg = parity.write_derived_config(
        str(tmp_path / 'parity.py'), osp.join(REPO, ref['our_config']),
        data, pth, max_iters=len(ref['steps']),
        batch=int(flag(ref, 'train_batch_size')),
        crop=(ref['crop'], ref['crop']), num_classes=ref['num_classes'],
        lr=float(flag(ref, 'base_learning_rate')),
        head=dict(num_classes=ref['num_classes'],
                  ignore_index=ref['ignore_label']))
    # converted for the config trained (ADE20K: all 151 TF classes)
    extra = ['--keep-background-class'] if ref['num_classes'] == 151 else []
    parity.convert(str(tmp_path / 'init'), pth, cfg, *extra)
    work_dir = str(tmp_path / 'work')
    out = run_tool('tools/train.py', cfg, '--work-dir', work_dir,
                   *parity.train_args(
                       int(flag(ref, 'training_number_of_steps')))).stdout
    info = inspect_variables({k: v.shape for k, v in init.items()})
    return work_dir, out, init, info


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
    from deeplabplus_mm.converters import map_name
    failures, rels, unmapped = [], [], []
    for step in STEPS:
        state = parity.load_state(osp.join(work_dir, f'iter_{step}.pth'))
        for var in ref['variables']:
            name = var['name']
            key = map_name(name, info)
            if key is None or key not in state:
                unmapped.append(name)
                continue
            after = to_tf_layout(name, state[key])
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
    ours = [(r['decode.loss_ce'], r['lr'])
            for r in parity.read_train_log(work_dir)]
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
