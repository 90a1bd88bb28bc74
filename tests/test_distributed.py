"""Distributed SyncBN training equals single-process training (CPU, gloo,
2 processes through torchrun), the launch scripts work on a CPU-only torch,
and dist_test.sh gives test.py's metrics."""
import os
import os.path as osp
import re
import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import REPO, run_tool


def torchrun(nproc, *args, port):
    # A few seconds normally: a hang fails the test in minutes, not hours.
    return run_tool('-m', 'torch.distributed.run', f'--nproc_per_node={nproc}',
                    f'--master_port={port}', *args, timeout=300)


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp('ref') / 'single.pth'
    run_tool('tests/dist_worker.py', str(out))
    return torch.load(out)


def _max_diff(a, b):
    return max((a[k].double() - b[k].double()).abs().max().item()
               for k in a if a[k].is_floating_point())


def test_sync_bn_two_ranks_equal_one_process(tmp_path, reference):
    out = tmp_path / 'dist.pth'
    torchrun(2, 'tests/dist_worker.py', str(out), port=29611)
    dist = torch.load(out)
    assert dist['bn_types'] == ['CPUSyncBatchNorm']
    assert reference['bn_types'] == ['BatchNorm2d']
    state, ref_state = dist['state'], reference['state']
    assert state.keys() == ref_state.keys()
    for key in ref_state:
        if key.endswith(('running_mean', 'running_var')):
            torch.testing.assert_close(state[key], ref_state[key], atol=1e-5,
                                       rtol=0, msg=key)
    assert _max_diff(dist['grads'], reference['grads']) <= 1e-5
    assert _max_diff(state, ref_state) <= 1e-5


def test_plain_bn_two_ranks_differ(tmp_path, reference):
    """The negative control: without synchronisation the result is not the
    single-process one, so the test above can fail."""
    out = tmp_path / 'plain.pth'
    torchrun(2, 'tests/dist_worker.py', str(out), '--plain-bn', port=29612)
    plain = torch.load(out)
    assert plain['bn_types'] == ['BatchNorm2d']
    assert _max_diff(plain['grads'], reference['grads']) > 1e-3
    assert _max_diff(plain['state'], reference['state']) > 1e-3


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


def _bash(*args, port):
    env = dict(PYTHON=sys.executable, PORT=str(port), PYTHONUNBUFFERED='1')
    proc = subprocess.run(['bash', *args], cwd=REPO,
                          env=dict(os.environ, **env),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:]
    return proc.stdout


def test_dist_train_and_test_scripts_on_cpu(tmp_path, synth_voc):
    """dist_train.sh trains a custom_imports-only SyncBN config on a CPU
    torch; dist_test.sh reports the metrics tools/test.py reports."""
    assert not torch.cuda.is_available() or pytest.skip('CPU-only check')
    cfg = _user_config(tmp_path, synth_voc)
    work = tmp_path / 'work'
    log = _bash('tools/dist_train.sh', cfg, '2', '--work-dir', str(work),
                port=29613)
    assert "model_wrapper_cfg = dict(type='CPUDistributedDataParallel')" in log
    assert 'Saving checkpoint at 2 iterations' in log
    ckpt = str(work / 'iter_2.pth')
    assert osp.isfile(ckpt)
    single = run_tool('tools/test.py', cfg, ckpt, '--work-dir',
                      str(tmp_path / 't1')).stdout
    multi = _bash('tools/dist_test.sh', cfg, ckpt, '2', '--work-dir',
                  str(tmp_path / 't2'), port=29614)

    def metrics(text):
        found = re.findall(r'aAcc: (\S+)\s+mIoU: (\S+)\s+mAcc: (\S+)', text)
        assert found, text[-3000:]
        return found[-1]

    assert metrics(single) == metrics(multi)


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
