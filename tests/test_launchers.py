"""The launch scripts as a user runs them on a CPU-only torch: torchrun
(tools/dist_train.sh, dist_test.sh), Slurm (tools/slurm_train.sh,
slurm_test.sh through a stand-in srun / scontrol that start local tasks
with the SLURM_* variables), MPI's environment, a run that fails in its
first iteration, and which python the scripts pick."""
import os
import os.path as osp
import re
import shutil
import stat
import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import REPO, run_script, run_tool
from deeplabplus_mm.engine import register_safe_checkpoints

register_safe_checkpoints()  # our training checkpoints load weights_only

pytestmark = pytest.mark.skipif(torch.cuda.is_available(),
                                reason='checks the CPU (gloo) path')


def _user_config(tmp_path, data_root):
    """A user's own config: only custom_imports ties it to us; SyncBN."""
    cfg = tmp_path / 'user_syncbn.py'
    cfg.write_text(textwrap.dedent(f"""\
        custom_imports = dict(imports=['deeplabplus_mm'],
                              allow_failed_imports=False)
        default_scope = 'mmseg'
        norm_cfg = dict(type='SyncBN', eps=1e-3, momentum=0.1)
        model = dict(
            type='EncoderDecoder',
            data_preprocessor=dict(type='SegDataPreProcessor',
                                   mean=[127.5] * 3, std=[127.5] * 3,
                                   bgr_to_rgb=True, size=(65, 65)),
            backbone=dict(type='AlignedXception', arch=41,
                          norm_cfg=norm_cfg),
            decode_head=dict(type='DeepLabV3PlusTFHead', in_channels=2048,
                             in_index=1, channels=32, c1_channels=8,
                             num_classes=21, align_corners=True,
                             norm_cfg=norm_cfg),
            test_cfg=dict(mode='whole'))
        train_pipeline = [dict(type='LoadImageFromFile'),
                          dict(type='LoadAnnotations'),
                          dict(type='RandomCrop', crop_size=(65, 65)),
                          dict(type='PackSegInputs')]
        test_pipeline = [dict(type='LoadImageFromFile'),
                         dict(type='LoadAnnotations'),
                         dict(type='PackSegInputs')]
        dataset = dict(type='PascalVOCDataset', data_root={data_root!r},
                       data_prefix=dict(img_path='JPEGImages',
                                        seg_map_path='SegmentationClass'))
        train_dataloader = dict(
            batch_size=2, num_workers=0,
            sampler=dict(type='InfiniteSampler', shuffle=True),
            dataset=dict(dataset, ann_file='ImageSets/Segmentation/train.txt',
                         pipeline=train_pipeline))
        test_dataloader = dict(
            batch_size=1, num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=False),
            dataset=dict(dataset, ann_file='ImageSets/Segmentation/val.txt',
                         pipeline=test_pipeline))
        test_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
        test_cfg = dict(type='TestLoop')
        optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01))
        train_cfg = dict(type='IterBasedTrainLoop', max_iters=2)
        default_hooks = dict(checkpoint=dict(type='CheckpointHook',
                                             by_epoch=False, interval=2),
                             logger=dict(type='LoggerHook', interval=1))
        """))
    return str(cfg)


def _metrics(text):
    found = re.findall(r'aAcc: (\S+)\s+mIoU: (\S+)\s+mAcc: (\S+)', text)
    assert found, text[-3000:]
    return found[-1]


def _state(path):
    return torch.load(path)['state_dict']


@pytest.fixture(scope='module')
def trained(tmp_path_factory, synth_voc):
    """A custom_imports-only SyncBN config trained for 2 iterations by
    dist_train.sh (2 ranks), and what single-process tools/test.py reports
    for its checkpoint."""
    tmp = tmp_path_factory.mktemp('launch')
    cfg = _user_config(tmp, synth_voc)
    work = tmp / 'work'
    log = run_script('tools/dist_train.sh', cfg, '2', '--work-dir', str(work),
                port=29641).stdout
    assert "model_wrapper_cfg = dict(type='CPUDistributedDataParallel')" in log
    assert 'Saving checkpoint at 2 iterations' in log
    ckpt = str(work / 'iter_2.pth')
    single = run_tool('tools/test.py', cfg, ckpt, '--work-dir',
                      str(tmp / 't1')).stdout
    return dict(cfg=cfg, ckpt=ckpt, metrics=_metrics(single), tmp=tmp)


def test_dist_test_script_equals_test_py(trained):
    """dist_test.sh reports the metrics tools/test.py reports."""
    multi = run_script('tools/dist_test.sh', trained['cfg'], trained['ckpt'], '2',
                  '--work-dir', str(trained['tmp'] / 't2'),
                  port=29642).stdout
    assert _metrics(multi) == trained['metrics']


def test_slurm_scripts(tmp_path, trained, fake_slurm):
    """slurm_train.sh trains with --launcher slurm on 2 gloo ranks (the
    master from scontrol); slurm_test.sh reports tools/test.py's metrics."""
    bin_dir, env = fake_slurm
    work = tmp_path / 'work'
    proc = run_script('tools/slurm_train.sh', 'cpu', 'deeplab', trained['cfg'],
                 '--work-dir', str(work), port=29643, env=env)
    args = (bin_dir / 'srun.args').read_text()
    assert '-p cpu --job-name=deeplab --ntasks=2 --ntasks-per-node=2' in args
    assert '--kill-on-bad-exit=1' in args and '--gres' not in args
    assert '--launcher slurm' in args
    for line in ('Distributed launcher: slurm', 'Distributed training: True',
                 "model_wrapper_cfg = dict(type='CPUDistributedDataParallel')",
                 'GPU number: 2',  # mmengine's name for the world size
                 'Saving checkpoint at 2 iterations'):
        assert line in proc.stdout, line
    assert _state(work / 'iter_2.pth').keys() == _state(
        trained['ckpt']).keys()
    proc = run_script('tools/slurm_test.sh', 'cpu', 'deeplab', trained['cfg'],
                 trained['ckpt'], '--work-dir', str(tmp_path / 't'),
                 port=29644, env=env)
    assert _metrics(proc.stdout) == trained['metrics']


def test_mpi_environment(tmp_path, trained):
    """tools/test.py --launcher mpi on gloo from Open MPI's variables (two
    local processes stand in for mpirun)."""
    procs = []
    for rank in (0, 1):
        env = dict(os.environ, OMPI_COMM_WORLD_RANK=str(rank),
                   OMPI_COMM_WORLD_SIZE='2', OMPI_COMM_WORLD_LOCAL_RANK=str(rank),
                   MASTER_ADDR='127.0.0.1', MASTER_PORT='29645',
                   PYTHONUNBUFFERED='1')
        procs.append(subprocess.Popen(
            [sys.executable, 'tools/test.py', trained['cfg'], trained['ckpt'],
             '--launcher', 'mpi', '--work-dir', str(tmp_path / 'mpi')],
            cwd=REPO, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-3000:]
    assert _metrics(outs[0]) == trained['metrics']


def test_launcher_without_its_environment(tmp_path, trained):
    """--launcher slurm outside srun: one clear line, no CUDA call."""
    env = {k: v for k, v in os.environ.items() if not k.startswith('SLURM')}
    proc = subprocess.run(
        [sys.executable, 'tools/test.py', trained['cfg'], trained['ckpt'],
         '--launcher', 'slurm', '--work-dir', str(tmp_path)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=300)
    assert proc.returncode != 0
    assert ('--launcher slurm needs SLURM_PROCID and SLURM_NTASKS in the '
            'environment') in proc.stdout
    assert 'cuda' not in proc.stdout.lower()


@pytest.mark.parametrize('launcher', ['dist_train.sh', 'slurm_train.sh'])
def test_failing_run_exits_with_its_error(tmp_path, synth_voc, fake_slurm,
                                          launcher):
    """A config that raises in the first iteration (labels beyond
    num_classes): every rank prints its own traceback and exits 1, the
    launcher exits non-zero, no SIGABRT, no hang (5 minutes at most)."""
    cfg = _user_config(tmp_path, synth_voc)
    with open(cfg, 'a') as f:
        f.write("model['decode_head']['num_classes'] = 2\n")
    if launcher == 'dist_train.sh':
        args, env = ('tools/dist_train.sh', cfg, '2'), None
    else:
        args, env = ('tools/slurm_train.sh', 'cpu', 'job', cfg), fake_slurm[1]
    proc = run_script(*args, '--work-dir', str(tmp_path / 'w'), port=29646,
                 env=env, check=False, timeout=300)
    out = proc.stdout
    assert proc.returncode != 0, out[-3000:]
    assert 'Traceback' in out and 'out of bounds' in out, out[-3000:]
    for sign in ('SIGABRT', 'Signal 6', 'exitcode  : -6', 'terminate called'):
        assert sign not in out, out[-3000:]


def test_scripts_use_the_project_environment(tmp_path):
    """The launch scripts run the .venv that `make` created (not the first
    python on PATH) unless PYTHON says otherwise."""
    tools = tmp_path / 'repo' / 'tools'
    tools.mkdir(parents=True)
    shutil.copy(osp.join(REPO, 'tools', 'python_env.sh'), tools)
    show = f'source {tools}/python_env.sh; echo "$PYTHON|$PYTHONPATH"'
    env = {k: v for k, v in os.environ.items()
           if k not in ('PYTHON', 'PYTHONPATH')}

    def chosen(**extra):
        out = subprocess.run(['bash', '-c', show], env=dict(env, **extra),
                             stdout=subprocess.PIPE, text=True, check=True)
        return out.stdout.strip().split('|')

    assert chosen() == ['python', f'{tools}/..']
    venv_python = tmp_path / 'repo' / '.venv' / 'bin' / 'python'
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text('#!/bin/sh\n')
    venv_python.chmod(venv_python.stat().st_mode | stat.S_IEXEC)
    assert chosen() == [f'{tools}/../.venv/bin/python', f'{tools}/..']
    assert chosen(PYTHON='/opt/py', PYTHONPATH='/x')[0] == '/opt/py'
    assert chosen(PYTHONPATH='/x')[1] == f'{tools}/..:/x'
    def text(script):
        return open(osp.join(REPO, 'tools', script)).read()

    srun = text('slurm_srun.sh')  # what the slurm scripts run through
    assert 'python_env.sh"' in srun and '"$PYTHON"' in srun
    for script in ('dist_train.sh', 'dist_test.sh'):
        assert 'source "$(dirname "$0")/python_env.sh"' in text(script)
        assert '"$PYTHON"' in text(script)
    for script in ('slurm_train.sh', 'slurm_test.sh'):
        assert 'source "$(dirname "$0")/slurm_srun.sh"' in text(script)
