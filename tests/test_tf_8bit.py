"""The 8-bit model zoo checkpoints (quantize.md) against TensorFlow's own
fake-quantised eval graph (tests/tf_eval/*_8bit/, made by
tools/tf_references/eval_reference.py: TF DeepLab's model rewritten by
contrib.quantize.create_eval_graph). A TF-format checkpoint of every
variable of the rewritten graph (float and range ones,
tf_values.model_variable_value) converts with tools/convert_tf_checkpoint.py
into the config it suggests (the -int8 one) and gives TF's logits; into the
float config it converts with the ranges dropped and reported.
(test_tf_eval_refs.py checks the name tables against TF's variables.)"""
import json
import os.path as osp
import re

import numpy as np
import pytest
import torch

import tf_values
from conftest import REPO, build_model, run_tool
from deeplabplus_mm.models.utils.tf_fake_quant import fake_quant, nudged_range
from tools.fixtures.tf_bundle_writer import write_checkpoint

REFS = osp.join(REPO, 'tests', 'tf_eval')
# case -> the float config of the same model
FLOAT_CONFIGS = {
    'mobilenetv2_dm05_voc_8bit':
    'configs/deeplabv3/deeplabv3_mobilenetv2-dm05-d16_4xb4-30k_voc12aug-'
    '513x513.py',
    'mobilenetv2_voc_8bit':
    'configs/deeplabv3/deeplabv3_mobilenetv2-d16_4xb4-30k_voc12aug-'
    '513x513.py',
}
# logits' quantisation steps by which we may differ from TF (measured; see
# test_fake_quant_logits_match_tensorflow)
STEPS = {'mobilenetv2_dm05_voc_8bit': 0, 'mobilenetv2_voc_8bit': 4}
ATOL = 1e-4


def reference(case):
    folder = osp.join(REFS, case)
    with open(osp.join(folder, 'reference.json')) as f:
        meta = json.load(f)
    table = {}
    with open(osp.join(folder, 'variables.tsv')) as f:
        for line in f:
            name, shape = line.rstrip('\n').split('\t')
            table[name] = tuple(int(s) for s in shape.split(',') if s)
    return meta, table, np.load(osp.join(folder, 'logits.npz'))


@pytest.fixture(scope='module', params=sorted(FLOAT_CONFIGS))
def converted(request, tmp_path_factory):
    """(case, checkpoint folder, its tensors, the converted model)."""
    case = request.param
    meta, table, _ = reference(case)
    assert meta['quantize']
    folder = tmp_path_factory.mktemp(case)
    tensors = {'global_step': np.asarray(3000, np.int64)}
    for name, shape in table.items():
        tensors[name] = tf_values.model_variable_value(name, shape)
    write_checkpoint(str(folder / 'model.ckpt'), tensors)
    out = folder / 'converted.pth'
    log = run_tool('tools/convert_tf_checkpoint.py', str(folder),
                   str(out)).stdout
    assert f'config: {meta["config"]}' in log  # the -int8 one suggested
    assert '8-bit: 120 fake-quantisation ranges loaded' in log
    model = build_model(osp.join(REPO, meta['config'])).eval()
    model.data_preprocessor.test_cfg = None  # references: crop = input
    model.load_state_dict(torch.load(out)['state_dict'], strict=True)
    return case, folder, tensors, model


def test_fake_quant_logits_match_tensorflow(converted):
    """Logits against TF's fake-quantised graph at every stored size. Our
    FakeQuant is TF's bit for bit, but a value one float32 ulp from a
    rounding boundary (TF folds the batch norms with Eigen's approximate
    Rsqrt, and sums convolutions in another order) can land one 8-bit step
    apart, and the head spreads that step. Measured (README): depth
    multiplier 0.5: none, the logits equal bit for bit at both sizes; 1.0:
    equal at 71x93, 2 steps at 65x65 (158 of 525 logits; one folded
    weight of expanded_conv_7/expand and one activation of
    expanded_conv_16/project land apart), 4 steps at 57x71 (tried)."""
    from test_tf_eval_refs import model_inputs
    case, _, _, model = converted
    meta, _, refs = reference(case)
    step = nudged_range(
        tf_values.quant_range_value('logits/semantic/act_quant/min'),
        tf_values.quant_range_value('logits/semantic/act_quant/max'),
        False)[2]
    bound = STEPS[case] * step + ATOL
    for size in meta['sizes']:
        h, w = (int(s) for s in size.split('x'))
        inputs = model_inputs(model, tf_values.make_image(h, w)[0])
        with torch.no_grad():
            logits = model.decode_head(model.extract_feat(inputs))
        ours = logits.permute(0, 2, 3, 1).numpy().astype(np.float64)
        tf = refs[f'logits_{size}']
        assert ours.shape == tf.shape
        diff = np.abs(ours - tf)
        print(f'{case} {size}: max |diff| {diff.max():.3g} '
              f'({diff.max() / step:.2f} steps), {(diff > ATOL).sum()} of '
              f'{diff.size} logits > {ATOL}')
        assert diff.max() <= bound, f'{size}: {diff.max()} > {bound}'
        # the label agrees wherever TF's top-2 margin exceeds the bound
        top2 = np.sort(tf, axis=-1)[..., -2:]
        decided = top2[..., 1] - top2[..., 0] > 2 * bound
        assert (ours.argmax(-1) == tf.argmax(-1))[decided].all(), size
        # the quantisation is really there: TF's float graph is far away
        assert np.abs(refs[f'float_logits_{size}'] - tf).max() > 5 * step


def test_float_conversion_reports_the_ranges(converted, tmp_path):
    """The 8-bit checkpoint into the float config: the ranges are dropped,
    listed in the log and kept in the output's meta."""
    case, folder, tensors, _ = converted
    out = tmp_path / 'float.pth'
    log = run_tool('tools/convert_tf_checkpoint.py', str(folder), str(out),
                   '--config', FLOAT_CONFIGS[case]).stdout
    assert 'dropped its 240 fake-quantisation range ends' in log
    saved = torch.load(out)
    ranges = saved['meta']['dropped_quant_ranges']
    assert ranges == {n: pytest.approx(float(v)) for n, v in tensors.items()
                      if n.endswith(('_quant/min', '_quant/max'))}
    assert not any('quant' in k for k in saved['state_dict'])


def test_fake_quant_is_tfs_nudged_rounding():
    """TF's FakeQuantWithMinMaxVars: the range nudged so that 0 is on the
    grid, values clamped, rounded half up."""
    nudged_min, nudged_max, scale = nudged_range(-0.1, 5.0, False)
    assert scale == np.float32(5.1 / 255)
    assert nudged_min == -np.float32(5.1 / 255) * 5  # zero point 4.99 -> 5
    x = torch.tensor([-1.0, 0.0, 1e-3, 2.5, 9.0])
    q = fake_quant(x, -0.1, 5.0)
    assert q[1] == 0 and q[0] == nudged_min and q[-1] == nudged_max
    assert torch.allclose(q[2:4], torch.round(x[2:4] / scale) * scale)
    # narrow range (weights): 254 steps, codes 1..255
    assert nudged_range(-1.0, 1.0, True)[2] == np.float32(2 / 254)


def test_tools_test_py_predicts_tfs_labels(converted, tmp_path):
    """tools/test.py with the -int8 config and the converted checkpoint on
    the references' images, labelled with TF's prediction (the argmax of
    its 8-bit logits resized to the image; 255 where TF's top-2 margin is
    within the case's bound): 100 % mIoU. The fast path stays off (the
    config's fast_inference = False) and folds nothing of the model."""
    import cv2
    from mmseg.models.utils import resize

    from deeplabplus_mm.datasets.voc_meta import save_palette_png
    from deeplabplus_mm.models.utils import fusable_conv_modules
    case, folder, _, model = converted
    assert fusable_conv_modules(model) == []
    meta, _, refs = reference(case)
    step = nudged_range(
        tf_values.quant_range_value('logits/semantic/act_quant/min'),
        tf_values.quant_range_value('logits/semantic/act_quant/max'),
        False)[2]
    root = tmp_path / 'voc'
    for sub in ('JPEGImages', 'SegmentationClass', 'ImageSets/Segmentation'):
        (root / sub).mkdir(parents=True)
    for size in meta['sizes']:
        h, w = (int(s) for s in size.split('x'))
        logits = torch.from_numpy(refs[f'logits_{size}']).permute(0, 3, 1, 2)
        up = resize(logits, (h, w), mode='bilinear', align_corners=True)
        up = up[0].permute(1, 2, 0).numpy()
        top2 = np.sort(up, axis=-1)[..., -2:]
        label = up.argmax(-1).astype(np.uint8)
        label[top2[..., 1] - top2[..., 0] <= 2 * (STEPS[case] * step +
                                                  ATOL)] = 255
        cv2.imwrite(str(root / 'JPEGImages' / f'tf_{size}.png'),
                    tf_values.make_image(h, w)[0][..., ::-1])
        save_palette_png(str(root / 'SegmentationClass' / f'tf_{size}.png'),
                         label)
    (root / 'ImageSets/Segmentation/val.txt').write_text(
        '\n'.join(f'tf_{s}' for s in meta['sizes']) + '\n')
    log = run_tool(
        'tools/test.py', meta['config'], str(folder / 'converted.pth'),
        '--work-dir', str(tmp_path / 'w'), '--cfg-options',
        f'test_dataloader.dataset.data_root={root}',
        'test_dataloader.dataset.img_suffix=.png',
        'test_dataloader.dataset.ann_file=ImageSets/Segmentation/val.txt',
        'model.data_preprocessor.test_cfg.size=None',
        'model.data_preprocessor.test_cfg.size_divisor=1',
        'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False').stdout
    assert 'FastInferenceHook: off' in log
    assert 'missing keys' not in log and 'do not match' not in log
    assert float(re.findall(r'mIoU: (\d+\.\d+)', log)[-1]) == 100.0


def test_fake_quant_model_refuses_training(converted):
    model = converted[3]
    model.train()
    try:
        with pytest.raises(NotImplementedError, match='inference only'):
            model.extract_feat(torch.zeros(1, 3, 33, 33))
    finally:
        model.eval()
