"""A user's clone has nothing beside it (no ``../shared``): the suite must
pass there, with only the comparisons with TensorFlow's own numbers
skipped. This test lays the checkout's tracked files into an empty folder
(what ``git clone`` of this commit gives, with the working tree's edits)
and runs there, with the clone's package first on the path and no
``DEEPLAB_TF_REFS``: the collection of the whole suite, and the tests of
the parts that used to read the references (the converter, the TF bundle
reader and writer, the benchmark that writes the reference checkpoint:
``test_benchmark_read_quick``)."""
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

# The tests of these files that may skip in a clone: they compare with
# TensorFlow's outputs or read TensorFlow-written files.
NEEDS_REFERENCES = {
    'tests/test_convert_tool.py': {
        'test_deeplab_checkpoint_to_test_py',
        'test_generated_names_are_tensorflows'},
    'tests/test_tf_bundle.py': {
        'test_tf1_saver_every_tensor_bit_exact', 'test_tf1_saver_metadata',
        'test_tf2_object_checkpoint_skips_string_tensor',
        'test_writer_reproduces_tensorflow_files_byte_for_byte'},
}


def _tracked_files():
    try:
        out = subprocess.run(['git', 'ls-files', '-z'], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f'not a git checkout ({e}): cannot tell what a clone '
                    'holds')
    return [f for f in out.decode().split('\0') if f]


@pytest.fixture(scope='module')
def clone(tmp_path_factory):
    root = tmp_path_factory.mktemp('nothing_beside') / 'deeplabplus-mm'
    for rel in _tracked_files():
        if osp.isfile(osp.join(REPO, rel)):  # not deleted in the tree
            os.makedirs(osp.join(root, osp.dirname(rel)), exist_ok=True)
            shutil.copy2(osp.join(REPO, rel), osp.join(root, rel))
    assert not osp.exists(osp.join(root, '..', 'shared'))
    return str(root)


def _pytest(clone, *args, timeout=900):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(('DEEPLAB_', 'PYTEST_'))}
    env['PYTHONPATH'] = clone  # the clone's package, not this checkout's
    return subprocess.run(
        [sys.executable, '-m', 'pytest', '-p', 'no:cacheprovider', *args],
        cwd=clone, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=timeout)


def test_whole_suite_collects_in_a_clone(clone):
    proc = _pytest(clone, '--collect-only', '-q', 'tests')
    assert proc.returncode == 0, proc.stdout[-4000:]
    count = int(re.search(r'(\d+) tests? collected', proc.stdout).group(1))
    assert count > 400, proc.stdout[-2000:]


def test_reference_free_tests_pass_in_a_clone(clone):
    # (test_convert_tool's per-family ImageNet-initialisation trainings are
    # left to the main run: their data is written by the test either way.)
    proc = _pytest(clone, '-v', '-rs', *NEEDS_REFERENCES, '-k',
                   'not shipped_config')
    out = proc.stdout
    assert proc.returncode == 0, out[-6000:]
    outcomes = re.findall(r'^(tests/\S+?)::(\w+)\S* (PASSED|SKIPPED|FAILED)',
                          out, re.M)
    skipped = {(path, name) for path, name, what in outcomes
               if what == 'SKIPPED'}
    # Exactly the tests that need TensorFlow's files skipped; the rest ran.
    assert skipped == {(path, name) for path, names in
                       NEEDS_REFERENCES.items() for name in names}, out[-4000:]
    assert sum(what == 'PASSED' for _, _, what in outcomes) >= 30
    # Each skip says in one line which folder it looked for.
    shared = osp.normpath(osp.join(clone, '..', 'shared', 'tf_deeplab'))
    reasons = re.findall(r'^SKIPPED \[\d+\] \S+: (.*)$', out, re.M)
    assert reasons and all(
        r.startswith(f'TF references not found: {shared}/') for r in reasons)
