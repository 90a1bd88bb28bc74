"""TF-faithfulness of every family with a stored evaluation reference
(tests/tf_eval/<case>/, made by tools/tf_references/eval_reference.py with
TF DeepLab's own code): a TF-format checkpoint of TF's variable names and the
name-seeded values of tests/tf_values.py goes through
``tools/convert_tf_checkpoint.py`` (its config suggestion) into the model of
the case's shipped config, which must give TF's logits within 1e-4 at every
stored size (ADE20K: TF's classes 1-150, the converter drops class 0). The converter's name tables must also list exactly TF's
variables, with no model built. Needs no ../shared."""
import glob
import json
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config

import tf_values
from conftest import REPO, build_model, run_tool
from deeplabplus_mm.converters import tf_variables
from tools.fixtures.tf_bundle_writer import write_checkpoint

ATOL = 1e-4


def _model_cases():
    """Cases of a whole model (backbone-only cases have no config: their
    tests are the backbone's, e.g. test_mobilenet_v3_parity.py)."""
    cases = []
    for path in glob.glob(osp.join(REPO, 'tests', 'tf_eval', '*',
                                   'reference.json')):
        with open(path) as f:
            if json.load(f)['config']:
                cases.append(osp.basename(osp.dirname(path)))
    return sorted(cases)


CASES = _model_cases()


def read_reference(case):
    folder = osp.join(REPO, 'tests', 'tf_eval', case)
    with open(osp.join(folder, 'reference.json')) as f:
        meta = json.load(f)
    table = []
    with open(osp.join(folder, 'variables.tsv')) as f:
        for line in f:
            name, shape = line.rstrip('\n').split('\t')
            table.append((name, tuple(int(s) for s in shape.split(',')
                                      if s)))
    return meta, table, np.load(osp.join(folder, 'logits.npz'))


def model_inputs(model, image_rgb):
    """A BGR uint8 image, as LoadImageFromFile gives it, through the
    model's data preprocessor (no padding: TF's crop size = image size)."""
    from mmseg.structures import SegDataSample
    bgr = torch.from_numpy(np.ascontiguousarray(image_rgb[..., ::-1]))
    h, w = image_rgb.shape[:2]
    sample = SegDataSample(metainfo=dict(
        ori_shape=(h, w), img_shape=(h, w), pad_shape=(h, w),
        padding_size=[0, 0, 0, 0]))
    return model.data_preprocessor(
        dict(inputs=[bgr.permute(2, 0, 1)], data_samples=[sample]),
        False)['inputs']


@pytest.mark.parametrize('case', CASES)
def test_name_tables_list_tfs_variables(case):
    meta, table, _ = read_reference(case)
    model = Config.fromfile(osp.join(REPO, meta['config'])).model
    # TF's logits layer (ADE20K: 151 classes; our config has mmseg's 150)
    model.decode_head.num_classes = meta['num_classes']
    ours = {name: tuple(shape) for name, shape in tf_variables(model).items()}
    tf_model = {name: shape for name, shape in table
                if not name.endswith('/Momentum')}
    assert ours == tf_model


def is_quantized(case):
    """An 8-bit case, whose logits tests/test_tf_8bit.py checks (TF and we
    may round a tie apart)."""
    with open(osp.join(REPO, 'tests', 'tf_eval', case,
                       'reference.json')) as f:
        return json.load(f).get('quantize', False)


@pytest.mark.parametrize('case', [c for c in CASES if not is_quantized(c)])
def test_converted_checkpoint_gives_tfs_logits(case, tmp_path):
    meta, table, ref = read_reference(case)
    prefix = tmp_path / 'tf' / 'model.ckpt'
    prefix.parent.mkdir()
    write_checkpoint(str(prefix), {
        name: tf_values.model_variable_value(name, shape)
        for name, shape in table})
    out = tmp_path / 'converted.pth'
    log = run_tool('tools/convert_tf_checkpoint.py', str(prefix),
                   str(out)).stdout
    assert meta['config'] in log  # the converter suggests the case's config
    cfg = Config.fromfile(osp.join(REPO, meta['config']))
    # what the case's flags set differently from the shipped config (e.g.
    # the MobileNetV3 head's pooling window at small sizes)
    cfg.merge_from_dict(meta.get('cfg_options', {}))
    cfg.model.data_preprocessor.test_cfg = None
    model = build_model(cfg.model).eval()
    model.load_state_dict(torch.load(out)['state_dict'], strict=True)
    for size in meta['sizes']:
        h, w = (int(s) for s in size.split('x'))
        inputs = model_inputs(model, tf_values.make_image(h, w)[0])
        with torch.no_grad():
            logits = model.decode_head(model.extract_feat(inputs))
        ours = logits.permute(0, 2, 3, 1).numpy().astype(np.float64)
        theirs = ref[f'logits_{size}']
        if theirs.shape[-1] == ours.shape[-1] + 1:
            theirs = theirs[..., 1:]  # ADE20K's "other", dropped by the tool
        assert ours.shape == theirs.shape, size
        diff = np.abs(ours - theirs)
        print(f'{case} {size}: max |diff| {diff.max():.3g} '
              f'(|logits| up to {np.abs(theirs).max():.3g})')
        assert diff.max() <= ATOL, (
            f'{case} {size}: max |diff| {diff.max():.3g} at '
            f'{np.unravel_index(diff.argmax(), diff.shape)}')
