"""Our training steps against TF DeepLab's, for every model-zoo family.

Each stored reference (tests/tf_train/<case>/) is three steps of TF
DeepLab's own train.py; ``tools/train.py`` with the family's shipped config
must move every weight and moving statistic as TF did (tests/tf_train_refs.py
says how, and the tolerances). The references live in the repository, so
these tests need neither TensorFlow nor ../shared.
"""
import json
import sys

import pytest

import tf_train_refs as tp

CASES = tp.cases()


def test_references_are_stored():
    assert {'xception65_voc', 'xception41_voc', 'xception71_voc',
            'mobilenetv2_dm05_voc', 'mobilenetv2_ade20k',
            'xception71_dpc_cityscapes'} <= set(CASES)


@pytest.mark.parametrize('case', CASES)
def test_reference_is_consistent(case):
    """What the test relies on: TF agreed with itself well inside the
    tolerances, and the stored samples are where tf_values says."""
    ref = tp.load_reference(case)
    for run in ref['self_agreement'].values():
        assert run['num_outside'] == 0, run['outside_1e3_or_4ulp'][:3]
        assert run['cross_entropy_max_relative'] < tp.CE_RTOL / 10
    for var in ref['variables']:
        size = 1
        for s in var['shape']:
            size *= s
        n = len(tp.tf_values.sample_indices(var['name'], size))
        for step in tp.STEPS:
            assert ref['updates'][f'{var["name"]}|{step}'].shape == (n, )
    lrs = [s['learning_rate'] for s in ref['steps']]
    assert lrs == pytest.approx([0.007 * (1 - k / 10)**0.9 for k in range(3)],
                                rel=1e-6)


@pytest.mark.parametrize('case', CASES)
def test_three_steps_move_every_weight_as_tensorflow(case, tmp_path):
    ref = tp.load_reference(case)
    work_dir, out, init, info = tp.train_like_tf(ref, tmp_path)
    failures, summary = tp.compare(ref, work_dir, init, info)
    assert not summary['unmapped'], summary['unmapped'][:10]
    report = tp.step_errors(ref, work_dir) + failures
    assert not report, (
        f'{case}: {len(failures)} of {summary["tensor_steps"]} tensor-steps '
        f'differ from TF:\n' + '\n'.join(report[:40]))


def test_speed_benchmark_needs_tensorflow_and_its_code(tmp_path):
    """tools/benchmarks/vs_tf.py (run with TensorFlow: docs/benchmarks.md,
    section 9) names what is missing before it measures anything."""
    from conftest import run_tool
    out = run_tool('tools/benchmarks/vs_tf.py', '--tf-python',
                   str(tmp_path / 'python'), '--tf-code', str(tmp_path),
                   check=False)
    assert out.returncode == 1
    assert out.stdout.strip().endswith(
        f'error: --tf-python {tmp_path / "python"}: no such interpreter')
    out = run_tool('tools/benchmarks/vs_tf.py', '--tf-python', sys.executable,
                   '--tf-code', str(tmp_path), check=False)
    assert out.returncode == 1
    assert out.stdout.strip().endswith(
        f'error: --tf-code {tmp_path}: no deeplab/model.py '
        '(tensorflow/models research/deeplab) in it')
    # our side's child, as the benchmark runs it (TensorFlow's needs TF)
    spec = '{"kind": "ours", "mode": "eval", "size": 65, "batch": 2, ' \
           '"threads": 1, "steps": 1}'
    out = run_tool('tools/benchmarks/vs_tf.py', '--child', spec).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert len(result['seconds']) == 1 and result['seconds'][0] > 0
