"""Shared fixtures: repository paths, the TF references, generated data and
a helper that runs our tools like a user does (subprocess)."""
import os
import os.path as osp
import subprocess
import sys
import textwrap

import pytest

# One compute thread per process. `make test` runs two test processes side
# by side (pytest-xdist) on a 2-core machine, and the tools a test starts
# inherit this: OpenMP threads waiting at every barrier for a preempted
# sibling made 2-thread runs 5-10x slower on a busy machine (a 97x97
# training step: 0.55 s with one thread, 1-8 s with two under load). Tests
# that need another setting set it themselves.
os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('MKL_NUM_THREADS', '1')

TESTS_DIR = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(TESTS_DIR)  # the checkout (the tests' one place for it)
# The tools' shared modules (tools.fixtures, the benchmarks' harness...) are
# imported as tools.*, from the checkout.
if REPO not in sys.path:
    sys.path.insert(0, REPO)
# TensorFlow's reference outputs: $DEEPLAB_TF_REFS, else beside the checkout.
TF_REFS = os.environ.get('DEEPLAB_TF_REFS',
                         osp.join(REPO, '..', 'shared', 'tf_deeplab'))
DEMO_CONFIG = osp.join(
    REPO, 'configs/demo/deeplabv3plus_xception41-d16_1xb8-300it_synthvoc-97x97.py')


@pytest.fixture
def one_thread():
    """One torch thread in the test process for the test's duration (the
    modules that build models in-process use it), whatever
    OMP_NUM_THREADS says."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build_model(config, seed=None):
    """:func:`deeplabplus_mm.apis.build_model` (imported when first used:
    after the thread settings above)."""
    from deeplabplus_mm.apis import build_model
    return build_model(config, seed)


def small_tf_segmentor(test_size=None):
    """Xception-41 + TF head (32 channels), test images padded to
    ``test_size`` when given, BN statistics measured on random images
    (momentum 1) so that predictions vary over the image; eval mode."""
    from mmengine.config import ConfigDict

    from tools.benchmarks._cases import calibrate_bn
    norm_cfg = dict(type='BN', eps=1e-3, momentum=1.0)
    preprocessor = dict(type='SegDataPreProcessor', mean=[127.5] * 3,
                        std=[127.5] * 3, bgr_to_rgb=True)
    if test_size is not None:
        preprocessor['test_cfg'] = dict(size=test_size)
    model = build_model(ConfigDict(
        type='EncoderDecoder',
        data_preprocessor=preprocessor,
        backbone=dict(type='AlignedXception', arch=41, norm_cfg=norm_cfg),
        decode_head=dict(type='DeepLabV3PlusTFHead', in_channels=2048,
                         in_index=1, channels=32, c1_channels=8,
                         num_classes=21, align_corners=True,
                         norm_cfg=norm_cfg),
        test_cfg=dict(mode='whole')), seed=0)
    return calibrate_bn(model, 65)  # one batch from the seeded global RNG


def tf_refs_folder(case):
    """``shared/tf_deeplab/<case>`` (TensorFlow's own outputs), or skip with
    one line naming the folder looked for. A user's clone has no
    ``../shared``: only the comparisons with TensorFlow's numbers need it.
    With ``DEEPLAB_REQUIRE_TF_REFS=1`` (CI) a missing folder fails instead,
    so the parity tests cannot pass there by skipping."""
    path = osp.join(TF_REFS, case)
    if not osp.isdir(path):
        message = (f'TF references not found: {osp.normpath(path)} (set '
                   'DEEPLAB_TF_REFS to the tf_deeplab folder)')
        if os.environ.get('DEEPLAB_REQUIRE_TF_REFS') == '1':
            pytest.fail(message + '; DEEPLAB_REQUIRE_TF_REFS=1',
                        pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope='session')
def tf_refs():
    """The tf_deeplab folder of TensorFlow's references (see
    :func:`tf_refs_folder`)."""
    return osp.dirname(tf_refs_folder('xception65_os16'))


@pytest.fixture(scope='session')
def tf_weights(tf_refs):
    """The ``weights`` module of the references (numpy only)."""
    sys.path.insert(0, tf_refs)
    try:
        import weights
    finally:
        sys.path.remove(tf_refs)
    return weights


@pytest.fixture(scope='session')
def synth_voc(tmp_path_factory):
    """A tiny synthetic VOC-layout data set: 8 train, 3 val images."""
    from tools.fixtures.synthetic_voc import make_synthetic_voc
    root = str(tmp_path_factory.mktemp('synthvoc'))
    make_synthetic_voc(root, num_train=8, num_val=3, size_range=(61, 83),
                       seed=1)
    return root


def run_tool(*args, cwd=REPO, timeout=600, check=True, env=None):
    """Run ``python ARGS...`` in the repo like a user; return the output."""
    full_env = dict(os.environ, PYTHONUNBUFFERED='1', **(env or {}))
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=full_env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f'{args} exited with {proc.returncode}:\n'
                             f'{proc.stdout[-6000:]}')
    return proc


def run_script(*args, port, env=None, check=True, timeout=600):
    """Run ``bash ARGS...`` (a launch script) in the repo like a user, with
    this interpreter as $PYTHON and ``port`` as the master port."""
    full_env = dict(os.environ, PYTHON=sys.executable, PORT=str(port),
                    MASTER_PORT=str(port), PYTHONUNBUFFERED='1')
    full_env.update(env or {})
    proc = subprocess.run(['bash', *args], cwd=REPO, env=full_env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f'{args} exited with {proc.returncode}:\n'
                             f'{proc.stdout[-6000:]}')
    return proc


def tiny_config(tmp_path, data_root, max_iters, val_interval=2,
                checkpoint_interval=2, deterministic=False, workers=0,
                schedule_iters=None):
    """The demo config on ``data_root`` with batch 2, ``workers`` training
    loader workers (persistent, as our configs have them, when > 0),
    ``max_iters`` iterations and a poly LR schedule over ``schedule_iters``
    (default ``max_iters``); returns its path (a user's config file)."""
    cfg = tmp_path / f'tiny_{max_iters}_w{workers}.py'
    cfg.write_text(textwrap.dedent(f"""\
        _base_ = [{DEMO_CONFIG!r}]
        data_root = {data_root!r}
        train_dataloader = dict(
            batch_size=2, num_workers={workers},
            persistent_workers={workers > 0},
            dataset=dict(data_root=data_root))
        val_dataloader = dict(
            num_workers=0, persistent_workers=False,
            dataset=dict(data_root=data_root))
        test_dataloader = val_dataloader
        param_scheduler = [dict(type='TFPolyLR', power=0.9, eta_min=0.0,
                                begin=0, end={schedule_iters or max_iters},
                                by_epoch=False)]
        train_cfg = dict(max_iters={max_iters}, val_interval={val_interval})
        default_hooks = dict(
            logger=dict(interval=1),
            checkpoint=dict(interval={checkpoint_interval},
                            max_keep_ckpts=10))
        """))
    if deterministic:
        with open(cfg, 'a') as f:
            f.write('randomness = dict(seed=0, deterministic=True)\n')
    return str(cfg)


FAKE_SRUN = r'''#!/usr/bin/env bash
# Stand-in for srun: starts --ntasks local tasks with the variables srun sets,
# stops the others when one fails (--kill-on-bad-exit), exits with the first
# failure's status. Records its arguments.
echo "$@" > "$(dirname "$0")/srun.args"
ntasks=1
while [ $# -gt 0 ]; do
    case $1 in
        -p|--partition) shift 2 ;;
        --ntasks=*) ntasks=${1#--ntasks=}; shift ;;
        -*) shift ;;
        *) break ;;
    esac
done
pids=()
for ((i = 0; i < ntasks; i++)); do
    SLURM_PROCID=$i SLURM_NTASKS=$ntasks SLURM_LOCALID=$i \
    SLURM_NODELIST=node[01] "$@" &
    pids+=($!)
done
status=0
for ((i = 0; i < ntasks; i++)); do
    wait -n; rc=$?
    if [ $rc -ne 0 ] && [ $status -eq 0 ]; then
        status=$rc; kill "${pids[@]}" 2>/dev/null
    fi
done
exit $status
'''
FAKE_SCONTROL = r'''#!/usr/bin/env bash
# Stand-in for `scontrol show hostname NODELIST`: the first node is this host.
[ "$1 $2" = "show hostname" ] && [ "$3" = "node[01]" ] && echo 127.0.0.1
'''


@pytest.fixture
def fake_slurm(tmp_path):
    """A stand-in srun and scontrol first on PATH; (their folder, the
    environment of a 2-task CPU job)."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    for name, text in (('srun', FAKE_SRUN), ('scontrol', FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    assert 'MASTER_ADDR' not in os.environ  # scontrol must name the master
    return bin_dir, dict(PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
                         GPUS='2', GPUS_PER_NODE='0', CPUS_PER_TASK='1',
                         OMP_NUM_THREADS='1')
