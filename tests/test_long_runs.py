"""Long runs (README, "Long runs"), through the launchers as a user runs
them, on CPU / gloo: a rank killed by SIGKILL and restarted by torchrun
(tools/dist_train.sh, MAX_RESTARTS) or a Slurm job requeued
(tools/slurm_train.sh with a stand-in srun) resumes by itself and ends with
the weights of an uninterrupted run, bit for bit; two "machines" (NNODES=2)
train as one with two ranks; a node that never comes is an error within
RDZV_TIMEOUT; a kill or a full disk during a checkpoint save leaves the
previous checkpoint usable; a NaN loss stops the run."""
import os
import os.path as osp
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from conftest import REPO, TESTS_DIR, run_script, run_tool, tiny_config
from deeplabplus_mm.engine import register_safe_checkpoints

register_safe_checkpoints()  # our training checkpoints load weights_only

pytestmark = pytest.mark.skipif(torch.cuda.is_available(),
                                reason='checks the CPU (gloo) path')
TIMEOUT = 300  # a hang fails the test in minutes, not hours


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _state(work, it):
    return torch.load(osp.join(work, f'iter_{it}.pth'))['state_dict']


def _assert_identical(a, b):
    assert a.keys() == b.keys()
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differing, differing[:5]


def _last(work):
    return open(osp.join(work, 'last_checkpoint')).read().strip()


def _script_env(port, **extra):
    """What run_script gives a launch script, as a Popen environment."""
    return dict(os.environ, PYTHON=sys.executable, PORT=str(port),
                MASTER_PORT=str(port), PYTHONUNBUFFERED='1', **extra)


def _children(pid):
    children = []
    for task in os.listdir(f'/proc/{pid}/task'):
        with open(f'/proc/{pid}/task/{task}/children') as f:
            children += [int(c) for c in f.read().split()]
    return children


def _rank_process(pid, variable, rank):
    """The child of ``pid`` whose environment has ``variable=rank``."""
    for child in _children(pid):
        try:
            with open(f'/proc/{child}/environ', 'rb') as f:
                env = f.read().split(b'\0')
        except FileNotFoundError:
            continue
        if f'{variable}={rank}'.encode() in env:
            return child
    raise AssertionError(f'no child of {pid} with {variable}={rank}')


def _kill_rank_after(proc, work, checkpoint, variable, rank):
    """SIGKILL one rank of the launch ``proc`` once ``last_checkpoint``
    names ``checkpoint``."""
    deadline = time.time() + TIMEOUT
    while time.time() < deadline and proc.poll() is None:
        last = osp.join(work, 'last_checkpoint')
        if osp.exists(last) and checkpoint in open(last).read():
            os.kill(_rank_process(proc.pid, variable, rank), signal.SIGKILL)
            return
        time.sleep(0.05)
    raise AssertionError(f'the run ended before {checkpoint}')


@pytest.fixture(scope='module')
def two_ranks(tmp_path_factory, synth_voc):
    """The demo config for 4 iterations (checkpoint every iteration, 2
    persistent loader workers, deterministic) and the iteration-4 weights
    of an uninterrupted ``dist_train.sh CFG 2`` run."""
    tmp = tmp_path_factory.mktemp('long')
    cfg = tiny_config(tmp, synth_voc, 4, val_interval=4,
                      checkpoint_interval=1, deterministic=True, workers=2)
    work = str(tmp / 'uninterrupted')
    run_script('tools/dist_train.sh', cfg, '2', '--work-dir', work,
               port=_free_port(), timeout=TIMEOUT)
    return dict(cfg=cfg, state=_state(work, 4))


def test_torchrun_restarts_a_lost_rank(tmp_path, two_ranks):
    """MAX_RESTARTS=1: rank 1 killed (SIGKILL) after the iteration-2
    checkpoint; torchrun restarts both ranks, train.py resumes by itself
    and the run ends (exit 0) with the uninterrupted run's weights."""
    work, log = str(tmp_path / 'work'), tmp_path / 'log'
    with open(log, 'w') as out:
        proc = subprocess.Popen(
            ['bash', 'tools/dist_train.sh', two_ranks['cfg'], '2',
             '--work-dir', work], cwd=REPO, stdout=out,
            stderr=subprocess.STDOUT,
            env=_script_env(_free_port(), MAX_RESTARTS='1'))
        try:
            _kill_rank_after(proc, work, 'iter_2.pth', 'RANK', 1)
            assert proc.wait(timeout=TIMEOUT) == 0, log.read_text()[-3000:]
        finally:
            proc.kill()
    text = log.read_text()
    assert 'exitcode: -9' in text and 'local_rank: 1' in text, text[-3000:]
    assert 'Restarted (TORCHELASTIC_RESTART_COUNT=1): resuming from ' \
        f'{work}/iter_' in text, text[-3000:]
    assert re.search(r'resumed epoch: 0, iter: [23]\b', text)
    _assert_identical(two_ranks['state'], _state(work, 4))


def test_slurm_requeue_resumes(tmp_path, two_ranks, fake_slurm):
    """slurm_train.sh (2 tasks): task 0, the one that saves, killed after
    the iteration-2 checkpoint ends the job step; the requeued job (the
    same command with SLURM_RESTART_COUNT=1, as Slurm reruns it) resumes
    by itself and ends with the uninterrupted run's weights. A first start
    resumes nothing."""
    work, log = str(tmp_path / 'work'), tmp_path / 'log'
    env = _script_env(_free_port(), **fake_slurm[1])
    args = ['bash', 'tools/slurm_train.sh', 'cpu', 'deeplab',
            two_ranks['cfg'], '--work-dir', work]
    with open(log, 'w') as out:
        proc = subprocess.Popen(args, cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT, env=env)
        try:
            _kill_rank_after(proc, work, 'iter_2.pth', 'SLURM_PROCID', 0)
            assert proc.wait(timeout=TIMEOUT) == 128 + signal.SIGKILL
        finally:
            proc.kill()
    assert 'Restarted' not in log.read_text()
    assert not osp.exists(osp.join(work, 'iter_4.pth'))
    # The requeued job: a new job step, on a port of its own (the killed
    # step's surviving task may still hold the first one for a moment).
    port = str(_free_port())
    env.update(SLURM_RESTART_COUNT='1', PORT=port, MASTER_PORT=port)
    proc = subprocess.run(args, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert 'Restarted (SLURM_RESTART_COUNT=1): resuming from ' \
        f'{work}/iter_' in proc.stdout, proc.stdout[-3000:]
    assert re.search(r'resumed epoch: 0, iter: [23]\b', proc.stdout)
    _assert_identical(two_ranks['state'], _state(work, 4))


def test_two_nodes_equal_one(tmp_path, two_ranks):
    """dist_train.sh CFG 1 on two "machines" (NNODES=2, NODE_RANK 0 and 1,
    one MASTER_ADDR / PORT) = dist_train.sh CFG 2 on one, bit for bit."""
    work, port = str(tmp_path / 'work'), _free_port()
    procs = []
    for node in (0, 1):
        procs.append(subprocess.Popen(
            ['bash', 'tools/dist_train.sh', two_ranks['cfg'], '1',
             '--work-dir', work], cwd=REPO, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
            env=_script_env(port, NNODES='2', NODE_RANK=str(node),
                            MASTER_ADDR='127.0.0.1')))
    outs = [p.communicate(timeout=TIMEOUT)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-3000:]
    assert 'dist_train.sh: node 1 of 2, meeting the others at ' \
        f'127.0.0.1:{port} (waiting at most 600s)' in outs[1]
    assert 'Distributed training: True' in outs[0]
    _assert_identical(two_ranks['state'], _state(work, 4))


@pytest.mark.parametrize('node', [0, 1])
def test_missing_node_is_an_error(tmp_path, synth_voc, node):
    """NNODES=2 but only one node starts (the master, or the other one):
    one line of error after RDZV_TIMEOUT (here 5 s), no hang."""
    cfg = tiny_config(tmp_path, synth_voc, 1)
    start = time.time()
    proc = run_script('tools/dist_train.sh', cfg, '1', '--work-dir',
                      str(tmp_path / 'w'), port=_free_port(), check=False,
                      timeout=120,
                      env=dict(NNODES='2', NODE_RANK=str(node),
                               MASTER_ADDR='127.0.0.1', RDZV_TIMEOUT='5'))
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert time.time() - start < 60
    last = proc.stdout.strip().splitlines()[-1]
    if node == 0:
        assert last == ('error: torchrun: DistStoreError: Timed out after 6 '
                        'seconds waiting for clients. 1/2 clients joined.')
    else:
        assert last.startswith('error: torchrun: DistNetworkError: The '
                               'client socket has timed out after 5000ms')
    assert 'Traceback' not in proc.stdout


def _single_config(tmp_path, data_root):
    """tiny_config (4 iterations, checkpoint every iteration, no loader
    workers), importing crash_in_save, keeping 1 checkpoint."""
    cfg = tiny_config(tmp_path, data_root, 4, val_interval=4,
                      checkpoint_interval=1, deterministic=True)
    with open(cfg, 'a') as f:
        f.write("custom_imports = dict(imports=['deeplabplus_mm', "
                "'crash_in_save'], allow_failed_imports=False)\n"
                "default_hooks['checkpoint']['max_keep_ckpts'] = 1\n")
    return cfg


def _train(cfg, work, *args, check=True, env=None, ulimit=None):
    """tools/train.py CFG --work-dir WORK ARGS (under ``ulimit -f``, in KiB,
    when given), with tests/ on the path for crash_in_save."""
    env = dict(env or {}, PYTHONPATH=os.pathsep.join(
        filter(None, [TESTS_DIR, os.environ.get('PYTHONPATH')])))
    if ulimit is None:
        return run_tool('tools/train.py', cfg, '--work-dir', work, *args,
                        check=check, env=env, timeout=TIMEOUT)
    return subprocess.run(
        ['bash', '-c', f'ulimit -f {ulimit}; exec "$0" "$@"',
         sys.executable, 'tools/train.py', cfg, '--work-dir', work, *args],
        cwd=REPO, env=dict(os.environ, PYTHONUNBUFFERED='1', **env),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=TIMEOUT)


@pytest.fixture(scope='module')
def one_process(tmp_path_factory, synth_voc):
    """The single-process config (max_keep_ckpts=1) and its uninterrupted
    iteration-4 weights."""
    tmp = tmp_path_factory.mktemp('single')
    cfg = _single_config(tmp, synth_voc)
    work = str(tmp / 'uninterrupted')
    _train(cfg, work)
    assert sorted(p for p in os.listdir(work) if p.endswith('.pth')) == [
        'iter_4.pth']  # max_keep_ckpts=1
    return dict(cfg=cfg, state=_state(work, 4))


def test_kill_during_a_save(tmp_path, one_process):
    """Killed (SIGKILL) half-way through writing the iteration-3
    checkpoint: no iter_3.pth, iter_2.pth and last_checkpoint intact (with
    max_keep_ckpts=1: iter_2.pth is deleted only after iter_3.pth is in
    place); --resume removes the partial file, continues from iteration 2
    and ends with the uninterrupted run's weights."""
    work = str(tmp_path / 'work')
    proc = _train(one_process['cfg'], work, check=False,
                  env=dict(CRASH_IN_SAVE='iter_3.pth'))
    assert proc.returncode == -signal.SIGKILL, proc.stdout[-3000:]
    assert sorted(os.listdir(work)).count('iter_3.pth.part') == 1
    assert not osp.exists(osp.join(work, 'iter_3.pth'))
    assert _last(work) == osp.join(work, 'iter_2.pth')
    assert torch.load(_last(work))['meta']['iter'] == 2
    out = _train(one_process['cfg'], work, '--resume').stdout
    assert f'Removed {work}/iter_3.pth.part, left by an interrupted ' \
        'checkpoint save' in out
    assert 'resumed epoch: 0, iter: 2' in out, out[-3000:]
    assert not any(p.endswith('.part') for p in os.listdir(work))
    _assert_identical(one_process['state'], _state(work, 4))


def test_full_disk_during_a_save(tmp_path, one_process):
    """A save that fails (file-size limit: ``ulimit -f``) ends the run with
    one line naming the file and the cause; iter_2.pth and last_checkpoint
    stay (max_keep_ckpts=1 deletes nothing), no partial file; --resume
    then ends with the uninterrupted run's weights."""
    work = str(tmp_path / 'work')
    _train(one_process['cfg'], work, '--cfg-options',
           'train_cfg.max_iters=2')
    size_kib = osp.getsize(osp.join(work, 'iter_2.pth')) // 1024
    proc = _train(one_process['cfg'], work, '--resume',
                  ulimit=size_kib // 2)
    assert proc.returncode == 1, proc.stdout[-3000:]
    ckpt2, ckpt3 = osp.join(work, 'iter_2.pth'), osp.join(work, 'iter_3.pth')
    assert proc.stdout.strip().splitlines()[-1] == (
        f'error: cannot save checkpoint {ckpt3}: File too large (EFBIG); '
        f'last_checkpoint still names {ckpt2}: --resume continues from it')
    assert 'Traceback' not in proc.stdout
    assert sorted(p for p in os.listdir(work) if 'pth' in p) == [
        'iter_2.pth']
    assert _last(work) == ckpt2
    out = _train(one_process['cfg'], work, '--resume').stdout
    assert 'resumed epoch: 0, iter: 2' in out, out[-3000:]
    _assert_identical(one_process['state'], _state(work, 4))


def test_failed_save_stops_every_rank(tmp_path, synth_voc):
    """2 ranks under a file-size limit smaller than a checkpoint: the first
    save fails on rank 0 and both ranks stop there (rank 0 broadcasts the
    outcome), with one error line from rank 0 and none from rank 1."""
    cfg = tiny_config(tmp_path, synth_voc, 4, checkpoint_interval=1)
    work = str(tmp_path / 'work')
    proc = subprocess.run(
        ['bash', '-c', 'ulimit -f 100000; exec bash tools/dist_train.sh '
         '"$@"', 'ulimit', cfg, '2', '--work-dir', work], cwd=REPO,
        env=_script_env(_free_port()), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT)
    out = proc.stdout
    assert proc.returncode != 0
    errors = [line for line in out.splitlines() if line.startswith('error:')]
    assert errors == [
        f'error: cannot save checkpoint {work}/iter_1.pth: File too large '
        '(EFBIG); no earlier checkpoint to resume from'], out[-3000:]
    assert 'exitcode  : 1' in out, out[-3000:]
    assert '[rank1]' not in out, out[-3000:]  # no traceback from rank 1
    assert not [p for p in os.listdir(work) if 'pth' in p or 'last' in p]


# AdamW's lr times 1e40 from the third iteration on: that step sends the
# weights to ~1e37 and the fourth iteration's loss to NaN (checkpoints
# every 2 iterations: tiny_config's default).
DIVERGING = textwrap.dedent("""\
    param_scheduler = [dict(type='MultiStepLR', milestones=[2], gamma=1e40,
                            by_epoch=False)]
    """)


def test_nan_loss_stops_the_run(tmp_path, synth_voc):
    """2 ranks diverge at iteration 4: both stop there (exit non-zero, no
    hang), rank 0 names the iteration and the loss term, iter_2.pth stays
    the last checkpoint and iter_4.pth is never written."""
    cfg = tiny_config(tmp_path, synth_voc, 4, val_interval=4)
    with open(cfg, 'a') as f:
        f.write(DIVERGING)
    work = str(tmp_path / 'work')
    proc = run_script('tools/dist_train.sh', cfg, '2', '--work-dir', work,
                      port=_free_port(), check=False, timeout=TIMEOUT)
    out = proc.stdout
    assert proc.returncode != 0
    assert re.search(r'Iter\(train\) \[3/4\]', out), out[-3000:]
    ckpt2 = osp.join(work, 'iter_2.pth')
    errors = [line for line in out.splitlines()
              if line.startswith('error: non-finite loss')]
    assert errors == [
        'error: non-finite loss at iteration 4: decode.loss_ce = nan '
        '(rank 0), nan (rank 1); training stopped before saving it, the '
        f'last checkpoint, {ckpt2}, is kept (--cfg-options '
        'stop_on_nonfinite_loss=False trains on)'], out[-3000:]
    assert _last(work) == ckpt2
    assert not osp.exists(osp.join(work, 'iter_4.pth'))
    assert all(v.isfinite().all() for v in _state(work, 2).values()
               if v.is_floating_point())


def test_nan_loss_switch(tmp_path, synth_voc):
    """stop_on_nonfinite_loss=False: the same diverging run trains on to
    the end (and saves NaN weights)."""
    cfg = tiny_config(tmp_path, synth_voc, 4, val_interval=4)
    with open(cfg, 'a') as f:
        f.write(DIVERGING)
    work = str(tmp_path / 'work')
    run_tool('tools/train.py', cfg, '--work-dir', work, '--cfg-options',
             'stop_on_nonfinite_loss=False', timeout=TIMEOUT)
    state = _state(work, 4)
    assert not all(v.isfinite().all() for v in state.values()
                   if v.is_floating_point())


def test_what_a_restart_resumes(tmp_path, monkeypatch):
    """resume_after_restart (tools/train.py): a first start (no counter, or
    0) and a restart before any checkpoint leave the config as it is (its
    load_from of pretrained weights included); a restart with a checkpoint
    resumes from the work dir's last_checkpoint, not from load_from."""
    from mmengine.config import Config

    from deeplabplus_mm.engine import resume_after_restart

    for name in ('TORCHELASTIC_RESTART_COUNT', 'SLURM_RESTART_COUNT'):
        monkeypatch.delenv(name, raising=False)

    def config():
        return Config(dict(work_dir=str(tmp_path), resume=False,
                           load_from='pretrained.pth'))

    def resumed(**env):
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        cfg = config()
        found = resume_after_restart(cfg)
        for name in env:
            monkeypatch.delenv(name)
        return found, cfg.resume, cfg.load_from

    unchanged = (None, False, 'pretrained.pth')
    assert resumed() == unchanged
    assert resumed(SLURM_RESTART_COUNT='0') == unchanged
    assert resumed(TORCHELASTIC_RESTART_COUNT='1') == unchanged
    ckpt = str(tmp_path / 'iter_2.pth')
    open(ckpt, 'wb').close()
    (tmp_path / 'last_checkpoint').write_text(ckpt)
    assert resumed(TORCHELASTIC_RESTART_COUNT='0') == unchanged
    for env in (dict(TORCHELASTIC_RESTART_COUNT='2'),
                dict(SLURM_RESTART_COUNT='1')):
        assert resumed(**env) == (ckpt, True, ckpt)
