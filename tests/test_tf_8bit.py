"""The 8-bit model zoo checkpoints (quantize.md) against TensorFlow's own
fake-quantised eval graph (tools/tf_references/quant_reference.py:
contrib.quantize.create_eval_graph of TF DeepLab's model, references in
tests/tf_eval/<case>/): a TF-format checkpoint with every variable of the
rewritten graph (float and range ones, tf_values.model_variable_value) is
converted by tools/convert_tf_checkpoint.py with the config it suggests
(the -int8 one) and must give TF's logits; into the float config it
converts with the ranges dropped and reported."""
import os.path as osp

import numpy as np
import pytest
import torch

import tf_values
from conftest import REPO, build_model, run_tool
from deeplabplus_mm.converters import write_checkpoint
from deeplabplus_mm.converters.tf_deeplab import (load_model_config,
                                                  tf_variables)
from deeplabplus_mm.models.utils.tf_fake_quant import fake_quant, nudged_range

REFS = osp.join(REPO, 'tests', 'tf_eval')
# case -> the zoo row's config (fake-quantised) and its float config
CASES = {
    'mobilenetv2_dm05_voc_8bit':
    ('configs/deeplabv3/deeplabv3_mobilenetv2-dm05-int8-d16_4xb4-30k_'
     'voc12aug-513x513.py',
     'configs/deeplabv3/deeplabv3_mobilenetv2-dm05-d16_4xb4-30k_voc12aug-'
     '513x513.py'),
    'mobilenetv2_voc_8bit':
    ('configs/deeplabv3/deeplabv3_mobilenetv2-int8-d16_4xb4-30k_voc12aug-'
     '513x513.py',
     'configs/deeplabv3/deeplabv3_mobilenetv2-d16_4xb4-30k_voc12aug-'
     '513x513.py'),
}
SIZES = ['65x65', '57x71']  # aligned to output stride 16 (+1), odd
# logits' quantisation steps by which we may differ from TF (measured; see
# test_fake_quant_logits_match_tensorflow)
STEPS = {'mobilenetv2_dm05_voc_8bit': 0, 'mobilenetv2_voc_8bit': 4}
ATOL = 1e-4


def read_variables(case):
    table = {}
    with open(osp.join(REFS, case, 'variables.tsv')) as f:
        for line in f:
            name, shape = line.rstrip('\n').split('\t')
            table[name] = tuple(int(s) for s in shape.split(',') if s)
    return table


def references(case):
    return np.load(osp.join(REFS, case, 'logits.npz'))


@pytest.mark.parametrize('case', sorted(CASES))
def test_name_table_gives_tfs_variables(case):
    """The converter's tables (no model built) name exactly the variables
    of TF's rewritten graph: float ones and every range."""
    expected = read_variables(case)
    ours = tf_variables(load_model_config(osp.join(REPO, CASES[case][0])))
    assert ours == expected
    assert sum(n.endswith('_quant/min') for n in ours) == 120


def _checkpoint(case, folder):
    tensors = {'global_step': np.asarray(3000, np.int64)}
    for name, shape in read_variables(case).items():
        tensors[name] = tf_values.model_variable_value(name, shape)
    write_checkpoint(str(folder / 'model.ckpt'), tensors)
    return tensors


@pytest.fixture(scope='module', params=sorted(CASES))
def converted(request, tmp_path_factory):
    """(case, checkpoint folder, its tensors, the converted model)."""
    case = request.param
    folder = tmp_path_factory.mktemp(case)
    tensors = _checkpoint(case, folder)
    out = folder / 'converted.pth'
    log = run_tool('tools/convert_tf_checkpoint.py', str(folder),
                   str(out)).stdout
    assert f'config: {CASES[case][0]}' in log  # the -int8 one suggested
    assert '8-bit: 120 fake-quantisation ranges loaded' in log
    model = build_model(osp.join(REPO, CASES[case][0])).eval()
    model.data_preprocessor.test_cfg = None  # references: crop = input
    model.load_state_dict(torch.load(out)['state_dict'], strict=True)
    return case, folder, tensors, model


def _run(model, image):
    from test_tf_parity import preprocess
    data = preprocess(model, image)
    with torch.no_grad():
        logits = model.decode_head(model.extract_feat(data['inputs']))
        samples = model.predict(data['inputs'], data['data_samples'])
    return (logits.permute(0, 2, 3, 1).numpy(),
            samples[0].seg_logits.data.permute(1, 2, 0)[None].numpy())


@pytest.mark.parametrize('size', SIZES)
def test_fake_quant_logits_match_tensorflow(converted, size):
    """Logits at the output stride and resized to the image against TF's
    fake-quantised graph. Our FakeQuant is TF's bit for bit, but a value one
    float32 ulp from a rounding boundary (TF folds the batch norms with
    Eigen's approximate Rsqrt, and sums convolutions in another order) can
    land one 8-bit step apart, and the head spreads that step. Measured
    (README): depth multiplier 0.5 none, the logits equal bit for bit; 1.0
    one folded weight (expanded_conv_7/expand) and one activation
    (expanded_conv_16/project), then logits up to STEPS[case] steps of
    their grid apart."""
    case, _, _, model = converted
    refs = references(case)
    logits, upsampled = _run(model, refs[f'image_{size}'][0])
    ref = refs[f'logits_{size}']
    assert logits.shape == ref.shape
    step = nudged_range(
        tf_values.quant_range_value('logits/semantic/act_quant/min'),
        tf_values.quant_range_value('logits/semantic/act_quant/max'),
        False)[2]
    bound = STEPS[case] * step + ATOL
    for ours, tf, what in ((logits, ref, 'logits'),
                           (upsampled, refs[f'upsampled_{size}'],
                            'upsampled')):
        diff = np.abs(ours.astype(np.float64) - tf)
        assert diff.max() <= bound, f'{what}: {diff.max()} > {bound}'
        # the label agrees wherever TF's top-2 margin exceeds the bound
        top2 = np.sort(tf, axis=-1)[..., -2:]
        decided = top2[..., 1] - top2[..., 0] > 2 * bound
        assert (ours.argmax(-1) == tf.argmax(-1))[decided].all(), what
    # the quantisation is really there: TF's float graph is far away
    assert np.abs(refs[f'float_logits_{size}'] - ref).max() > 5 * step


def test_float_conversion_reports_the_ranges(converted, tmp_path):
    """Option (a): the 8-bit checkpoint into the float config: the ranges
    are dropped, listed in the log and kept in the output's meta."""
    case, folder, tensors, _ = converted
    out = tmp_path / 'float.pth'
    log = run_tool('tools/convert_tf_checkpoint.py', str(folder), str(out),
                   '--config', CASES[case][1]).stdout
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


def test_fake_quant_model_refuses_training(converted):
    model = converted[3]
    model.train()
    try:
        with pytest.raises(NotImplementedError, match='inference only'):
            model.extract_feat(torch.zeros(1, 3, 33, 33))
    finally:
        model.eval()
