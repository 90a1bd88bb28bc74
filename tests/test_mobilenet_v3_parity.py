"""MobileNetV3 Large / Small backbones against TF DeepLab's own feature
extractor (``feature_extractor.extract_features``, model variants
``mobilenet_v3_{large,small}_seg``): the references
tests/tf_eval/mobilenetv3_*_backbone_os16/ (eval_reference.py, ``network:
'backbone'``) store TF's features and decoder end points
(``layer_N/depthwise_output``) at an aligned (65x65) and an odd (71x93)
size. The TF-named values of tests/tf_values.py go through the converter's
name table into ``MobileNetV3TF``; its features must match TF's within
1e-4. The EdgeTPU backbone is checked end to end by test_tf_eval_refs.py
(the EdgeTPU-DeepLab cases). Needs no ../shared."""
import glob
import json
import os.path as osp

import numpy as np
import pytest
import torch

import tf_values
from conftest import REPO
from deeplabplus_mm.archs import BACKBONE_CONVS, state_shapes
from deeplabplus_mm.converters import convert, inspect_variables, plan

ATOL = 1e-4
FOLDER = osp.join(REPO, 'tests', 'tf_eval')


def _backbone_cases():
    cases = []
    for path in sorted(glob.glob(osp.join(FOLDER, '*', 'reference.json'))):
        with open(path) as f:
            if json.load(f).get('network') == 'backbone':
                cases.append(osp.basename(osp.dirname(path)))
    return cases


CASES = _backbone_cases()


def read_reference(case):
    folder = osp.join(FOLDER, case)
    with open(osp.join(folder, 'reference.json')) as f:
        meta = json.load(f)
    shapes = {}
    with open(osp.join(folder, 'variables.tsv')) as f:
        for line in f:
            name, shape = line.rstrip('\n').split('\t')
            shapes[name] = tuple(int(s) for s in shape.split(',') if s)
    return meta, shapes, np.load(osp.join(folder, 'logits.npz'))


def test_references_exist():
    assert {'mobilenetv3_large_backbone_os16',
            'mobilenetv3_small_backbone_os16'} <= set(CASES)


@pytest.mark.parametrize('case', CASES)
def test_name_table_lists_tfs_variables(case):
    """The backbone's TF variables, from archs and the name table alone (no
    model built), are exactly those TF created."""
    meta, shapes, _ = read_reference(case)
    info = inspect_variables(shapes)
    args = {k: v for k, v in meta['backbone'].items() if k != 'type'}
    assert info.backbone == dict(arch=args['arch'], depth_multiplier=1.0)
    assert not info.has_head
    convs = BACKBONE_CONVS[meta['backbone']['type']](**args)
    entries, ignored = plan(shapes, state_shapes(convs), info)
    assert {e.tf_name for e in entries} - {None} == set(shapes)
    assert ignored == []


def _pixels(h, w):
    """make_image through TF's preprocessing: x * 2 / 255 - 1 (the configs'
    data_preprocessor), NCHW."""
    image = torch.from_numpy(tf_values.make_image(h, w)[0].astype(np.float32))
    return (image.permute(2, 0, 1)[None] - 127.5) / 127.5


@pytest.mark.parametrize('case', CASES)
def test_features_and_end_points_match_tf(case):
    from deeplabplus_mm.models.backbones import MobileNetV3TF
    meta, shapes, ref = read_reference(case)
    points = meta['end_points']  # TF end point -> stored key
    args = {k: v for k, v in meta['backbone'].items() if k != 'type'}
    tensors = {name: tf_values.variable_value(name, shape)
               for name, shape in shapes.items()}
    for stride, (point, key) in zip((4, 8, 16), points.items()):
        model = MobileNetV3TF(**args, low_level_stride=stride,
                              out_indices=(0, -1)).eval()
        state_dict, _, _ = convert(
            tensors, {k: tuple(v.shape)
                      for k, v in model.state_dict().items()})
        model.load_state_dict(state_dict, strict=True)
        for size in meta['sizes']:
            h, w = (int(s) for s in size.split('x'))
            with torch.no_grad():
                low, features = model(_pixels(h, w))
            for ours, theirs, what in ((low, ref[f'{key}_{size}'], point),
                                       (features, ref[f'features_{size}'],
                                        'features')):
                ours = ours.permute(0, 2, 3, 1).numpy()
                assert ours.shape == theirs.shape, (what, size)
                diff = np.abs(ours - theirs).max()
                print(f'{case} {size} {what}: max |diff| {diff:.3g} '
                      f'(|TF| up to {np.abs(theirs).max():.3g})')
                assert diff <= ATOL, (case, size, what, diff)
