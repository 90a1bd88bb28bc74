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


def test_zoo_row_edgetpu_slim(tmp_path):
    """``--zoo EdgeTPU-DeepLab-slim`` from a mirror folder: a tarball with
    TF's variables of that model (the stored reference's names) and
    global_step converts with the row's config,
    and the printed commands test it at OS 16 and at the zoo's OS 32 with
    TF's figures."""
    from test_zoo import zoo_cli, zoo_tarball
    from deeplabplus_mm.converters.zoo import ZOO
    row = ZOO['EdgeTPU-DeepLab-slim']
    _, shapes, _ = read_reference('edgetpu_slim_cityscapes_os16')
    data, tensors = zoo_tarball(tmp_path, list(shapes.items()),
                                member='edgetpu-deeplab-slim/model.ckpt')
    (tmp_path / 'mirror').mkdir()
    (tmp_path / 'mirror' / row.filename).write_bytes(data)
    out = tmp_path / 'slim.pth'
    log = zoo_cli(row.name, str(out), '--mirror', str(tmp_path / 'mirror'),
                  cache=tmp_path / 'cache').stdout
    d16 = ('configs/deeplabv3/deeplabv3_mobilenetv3-edgetpu-dm075-d16_4xb2-'
           '90k_cityscapes-769x769.py')
    assert row.config == d16 and 'mobilenet_edgetpu_dm0.75' in log
    assert f'python tools/test.py {d16.replace("-d16_", "-d32_")} {out}' \
        in log
    assert "TF's published mIoU: 73.20 (val, OS 16, scale 1.0)" in log
    assert "TF's published mIoU: 70.00 (val, OS 32, scale 1.0)" in log
    state_dict = torch.load(out)['state_dict']
    name = 'MobilenetEdgeTPU/expanded_conv_5/expand/weights'  # fused 3x3
    assert np.array_equal(
        state_dict['backbone.expanded_conv_5.expand.conv.weight'].numpy(),
        tensors[name].transpose(3, 2, 0, 1))
