"""Distributed SyncBN training through tools/dist_train.sh equals
single-process training through tools/train.py (CPU, gloo, 2 ranks), with a
GroupNorm control and a plain-BN negative control; CPUSyncBatchNorm's edge
cases; the launch scripts work on a CPU-only torch, and dist_test.sh gives
test.py's metrics."""
import json
import os
import os.path as osp
import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import REPO, TESTS_DIR, run_script, run_tool
from deeplabplus_mm.engine import register_safe_checkpoints

register_safe_checkpoints()  # our training checkpoints load weights_only


def torchrun(nproc, *args, port):
    # A few seconds normally: a hang fails the test in minutes, not hours.
    return run_tool('-m', 'torch.distributed.run', f'--nproc_per_node={nproc}',
                    f'--master_port={port}', *args, timeout=300)


# A user's config as issue 11 describes it: custom_imports only, an
# AlignedXception-41 (OS 16) with the zoo's DeepLab v3+ head (image pooling,
# ASPP, decoder), 8 images of 32x32 with 4 classes and no 255, an
# InfiniteSampler without shuffling, SGD lr 0.05 without momentum, seed 0,
# deterministic, checkpoints after every iteration.
SYNC_CFG = """\
custom_imports = dict(imports={imports!r}, allow_failed_imports=False)
default_scope = 'mmseg'
norm_cfg = {norm!r}
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(type={preprocessor!r}, mean=[127.5] * 3,
                           std=[127.5] * 3, bgr_to_rgb=True, size=(32, 32)),
    backbone=dict(type='AlignedXception', arch=41, norm_cfg=norm_cfg),
    decode_head=dict(type='DeepLabV3PlusTFHead', in_channels=2048,
                     in_index=1, channels=16, c1_channels=8, num_classes=4,
                     dropout_ratio=0, align_corners=True, norm_cfg=norm_cfg),
    test_cfg=dict(mode='whole'))
pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
            dict(type='PackSegInputs')]
train_dataloader = dict(
    batch_size={batch}, num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=False),
    dataset=dict(type='BaseSegDataset', data_root={root!r},
                 data_prefix=dict(img_path='img', seg_map_path='ann'),
                 img_suffix='.png', seg_map_suffix='.png',
                 metainfo=dict(classes=('a', 'b', 'c', 'd')),
                 pipeline=pipeline))
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.05, momentum=0))
train_cfg = dict(type='IterBasedTrainLoop', max_iters={iters})
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=1),
    logger=dict(type='LoggerHook', interval=1))
randomness = dict(seed=0, deterministic=True)
"""
NORMS = dict(
    SyncBN=dict(type='SyncBN', eps=1e-3, momentum=0.1),
    BN=dict(type='BN', eps=1e-3, momentum=0.1),
    GN=dict(type='GN', num_groups=8))


@pytest.fixture(scope='module')
def square_data(tmp_path_factory):
    """8 blurred-noise 32x32 PNGs with 4-class masks (no 255)."""
    import cv2
    import numpy as np
    root = tmp_path_factory.mktemp('square')
    (root / 'img').mkdir()
    (root / 'ann').mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        img = cv2.GaussianBlur(
            rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), (5, 5), 1.5)
        cv2.imwrite(str(root / 'img' / f'{i}.png'), img)
        cv2.imwrite(str(root / 'ann' / f'{i}.png'),
                    (img[..., 0].astype(int) * 4 // 256).astype(np.uint8))
    return str(root)


def _train(tmp_path, root, norm, ranks, float64, port=None, iters=3):
    """Train ``iters`` iterations as a user does: ``tools/train.py`` (batch 4) or
    ``tools/dist_train.sh CFG 2`` (batch 2 per rank); the checkpoints."""
    name = f'{norm}_{ranks}r_{"f64" if float64 else "f32"}'
    cfg = tmp_path / f'{name}.py'
    cfg.write_text(SYNC_CFG.format(
        imports=['deeplabplus_mm'] + (['float64_mode'] if float64 else []),
        norm=NORMS[norm], batch=4 // ranks, root=root, iters=iters,
        preprocessor=('Float64SegDataPreProcessor' if float64 else
                      'SegDataPreProcessor')))
    work = tmp_path / name
    # One thread, as torchrun gives each rank: GEMM rounding depends on the
    # thread count, and so would the comparison.
    env = dict(OMP_NUM_THREADS='1', PYTHONPATH=os.pathsep.join(
        filter(None, [TESTS_DIR, os.environ.get('PYTHONPATH')])))
    if ranks == 1:
        log = run_tool('tools/train.py', str(cfg), '--work-dir', str(work),
                       env=env).stdout
    else:
        log = run_script('tools/dist_train.sh', str(cfg), str(ranks),
                         '--work-dir', str(work), port=port, env=env).stdout
    return log, [
        torch.load(work / f'iter_{i}.pth')['state_dict']
        for i in range(1, iters + 1)
    ]


def _max_scaled_diff(a, b):
    """Max over every float tensor of |a - b| / max(1, |a|)."""
    assert a.keys() == b.keys()
    return max(((a[k].double() - b[k].double()).abs() /
                a[k].double().abs().clamp(min=1)).max().item()
               for k in a if a[k].is_floating_point())


@pytest.fixture(scope='module')
def runs(tmp_path_factory, square_data):
    """``runs(norm, ranks, float64, iters)``: the checkpoints of that
    training run, each run made once per module."""
    done, ports = {}, iter(range(29621, 29630))

    def get(norm, ranks, float64, iters):
        key = (norm, ranks, float64, iters)
        if key not in done:
            done[key] = _train(tmp_path_factory.mktemp('run'), square_data,
                               norm, ranks, float64, port=next(ports),
                               iters=iters)
        return done[key]

    return get


def test_sync_bn_two_ranks_equal_one_process(runs):
    """dist_train.sh with 2 ranks x 2 images = train.py with 4 images, for 3
    SGD steps, through the real runner, config and launcher. In float64, so
    that what is compared is the maths and not float32 rounding, which the
    random network amplifies step by step (next test)."""
    log, ckpts = runs('SyncBN', 2, True, 3)
    assert "model_wrapper_cfg = dict(type='CPUDistributedDataParallel')" in log
    single = runs('SyncBN', 1, True, 3)[1]
    # several DDP buckets (25 MB each by default): 20M float64 parameters
    assert sum(v.numel() * v.element_size() for v in single[0].values()
               if v.is_floating_point()) > 4 * 25 * 2**20
    for a, b in zip(single, ckpts):
        assert _max_scaled_diff(a, b) <= 1e-6  # measured: 1.5e-8
    # BN really trained: running statistics moved, weights changed.
    var = single[2]['backbone.exit_flow.block2.unit_1.separable_conv3.'
                    'pointwise_conv.bn.running_var']
    assert (var - 1).abs().max() > 1e-3
    assert _max_scaled_diff(single[0], single[2]) > 1e-3


def test_float32_step_with_controls(runs):
    """In float32 the split batch computes the one-process step to rounding
    (CPUSyncBatchNorm's forward is torch's BatchNorm bit for bit; the
    earlier float32 sums gave 5e-5 here), as close as a batch-independent
    GroupNorm does (the control: data split, sampler and DDP averaging
    agree), while unsynchronised BN does not (the negative control: the
    comparison can fail). Later float32 steps drift apart as rounding noise
    grows through the random network, as it does between two single-process
    runs that differ only in their thread count."""
    sync = _max_scaled_diff(runs('SyncBN', 1, False, 1)[1][0],
                            runs('SyncBN', 2, False, 1)[1][0])
    group = _max_scaled_diff(runs('GN', 1, False, 1)[1][0],
                             runs('GN', 2, False, 1)[1][0])
    plain = _max_scaled_diff(runs('SyncBN', 1, False, 1)[1][0],
                             runs('BN', 2, False, 1)[1][0])
    assert sync <= 1e-6 and group <= 1e-6
    assert plain > 1e-3, plain


def test_cpu_sync_bn_edge_cases(tmp_path):
    """CPUSyncBatchNorm over two gloo ranks against torch's BatchNorm on the
    whole batch: uneven (3 + 1) and empty batches, momentum=None with and
    without running statistics, bf16 autocast, one value per channel."""
    out = tmp_path / 'edge'
    torchrun(2, 'tests/dist_worker.py', str(out), port=29630)
    for rank in (0, 1):
        res = json.loads((tmp_path / f'edge.{rank}.json').read_text())
        steps = [res['uneven_3_1'], res['empty_rank'], res['untracked_train']
                 ] + res['momentum_none']
        for found in steps:
            assert found['finite'], found
            for key in ('y', 'dx', 'mean', 'var'):
                assert found.get(key, 0) <= 1e-6, (key, found)
            for key in ('dw', 'db'):  # sums over the batch, up to ~30
                assert found[key] <= 1e-5, (key, found)
        assert res['momentum_none'][-1]['tracked'] == 3
        assert res['untracked_eval'] <= 1e-6
        bf16 = res['bf16']
        assert bf16['dtype'] == 'torch.bfloat16'
        assert bf16['mean_rel'] <= 1e-6 and bf16['var_rel'] <= 1e-5
        assert bf16['y'] <= 2**-7 * bf16['y_scale']  # bf16 rounding
        one = res['one_value']
        assert one['raised'] is not None
        assert one['raised'].startswith(
            'Expected more than 1 value per channel when training')
        if rank == 0:
            assert one['raised'] == one['torch']


def test_finish_launcher_keeps_buffered_output(tmp_path):
    """finish_launcher ends both gloo ranks with status 0 through os._exit
    without losing what a log handler still buffers (fails without its
    logging.shutdown). Without a process group it just returns."""
    script = tmp_path / 'finish.py'
    script.write_text(textwrap.dedent("""\
        import logging, logging.handlers, sys
        import torch.distributed as dist
        from deeplabplus_mm.engine import finish_launcher
        finish_launcher()  # no process group yet: returns
        dist.init_process_group('gloo')
        rank = dist.get_rank()
        log = logging.getLogger('finish')
        log.addHandler(logging.handlers.MemoryHandler(
            capacity=1000, flushLevel=logging.CRITICAL,
            target=logging.FileHandler(f'{sys.argv[1]}.{rank}')))
        log.warning('rank %d logged', rank)
        print(f'rank {rank} printed')  # (torchrun runs python -u)
        finish_launcher()
        print('not reached')
        """))
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONUNBUFFERED'}
    env['PYTHONPATH'] = REPO
    proc = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
         '--master_port=29615', str(script), str(tmp_path / 'log')],
        cwd=str(tmp_path), env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    for rank in (0, 1):
        assert f'rank {rank} printed' in proc.stdout
        assert (tmp_path / f'log.{rank}').read_text() == \
            f'rank {rank} logged\n'
    assert 'not reached' not in proc.stdout


def test_run_main_ends_a_failed_gloo_rank_at_once(tmp_path):
    """run_main: when main() raises under a gloo group, the rank prints its
    traceback and leaves with status 1 through os._exit (no barrier, no
    atexit, no gloo teardown), even while the other rank is still busy;
    SystemExit keeps its code; without a group exceptions propagate."""
    script = tmp_path / 'fail.py'
    script.write_text(textwrap.dedent("""\
        import atexit, sys, time
        import torch.distributed as dist
        from deeplabplus_mm.engine import run_main
        def plain():
            raise KeyError('no group yet')
        try:
            run_main(plain)
        except KeyError:
            print('propagated')
        atexit.register(lambda: print('atexit ran'))
        def main():
            dist.init_process_group('gloo')
            if dist.get_rank() == 0:
                raise RuntimeError('boom on rank 0')
            time.sleep(3)  # still working when rank 0 fails
            sys.exit(3)
        run_main(main)
        """))
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
         '--master_port=29631', str(script)],
        cwd=str(tmp_path), env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=300)
    out = proc.stdout
    assert proc.returncode != 0
    assert out.count('propagated') == 2
    assert 'RuntimeError: boom on rank 0' in out and 'Traceback' in out
    assert 'atexit ran' not in out, out[-3000:]
    assert 'exitcode  : 1' in out, out[-3000:]
    assert 'SIGABRT' not in out and 'terminate called' not in out
