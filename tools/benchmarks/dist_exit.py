"""How CPU distributed runs end: exit status of repeated launcher runs.

torch 2.13's gloo teardown at process exit aborts a rank now and then
("terminate called without an active exception", SIGABRT) or hangs; the
tools end gloo runs with ``run_main`` / ``finish_launcher`` instead. This
script counts, over repeated runs of the real launch scripts on synthetic
data, how many ended with status 0, with another status, by a signal, or
not at all (a hang, after ``--timeout`` seconds)::

    python tools/benchmarks/dist_exit.py [--runs 10] [--ranks 2] [--quick]

Each round runs ``tools/dist_train.sh`` (the demo model, 2 iterations) and
``tools/dist_test.sh`` on the checkpoint it wrote, and, with ``--failing``,
a ``dist_train.sh`` run of a config that fails in its first iteration
(expected: status 1 with its own traceback, never SIGABRT or a hang).
"""
import argparse
import os
import os.path as osp
import re
import subprocess
import sys
import tempfile
from collections import Counter

from deeplabplus_mm.utils import benchmark as common

DEMO = osp.join(common.REPO, 'configs', 'demo',
                'deeplabv3plus_xception41-d16_1xb8-300it_synthvoc-97x97.py')
ABORT_SIGNS = ('terminate called', 'SIGABRT', 'Signal 6', 'exitcode  : -6')


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--runs', type=int, default=10,
                        help='rounds (each: one dist_train.sh, one '
                        'dist_test.sh)')
    parser.add_argument('--ranks', type=int, default=2)
    parser.add_argument('--failing', action='store_true',
                        help='also a run that fails in its first iteration')
    parser.add_argument('--timeout', type=float, default=600,
                        help='seconds before a run counts as hung')
    parser.add_argument('--quick', action='store_true', help='one round')
    return parser.parse_args()


def launch(script, args, port, timeout):
    """Run a launch script; (outcome, output). Outcome: 'exit 0',
    'exit N', 'abort' (SIGABRT seen) or 'hang'."""
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(port),
               PYTHONUNBUFFERED='1')
    try:
        proc = subprocess.run(['bash', osp.join(common.REPO, 'tools', script),
                               *args], cwd=common.REPO, env=env,
                              stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return 'hang', e.output or ''
    out = proc.stdout
    if any(sign in out for sign in ABORT_SIGNS) or proc.returncode < 0:
        return 'abort', out
    return f'exit {proc.returncode}', out


def main():
    args = parse_args()
    runs = 1 if args.quick else args.runs
    from deeplabplus_mm.datasets.synthetic import make_synthetic_voc
    tally = {name: Counter() for name in ('train', 'test', 'failing')}
    with tempfile.TemporaryDirectory() as tmp:
        data = osp.join(tmp, 'synthvoc')
        make_synthetic_voc(data, num_train=8, num_val=2, size_range=(61, 83),
                           seed=1)
        common_opts = [
            f'train_dataloader.dataset.data_root={data}',
            f'val_dataloader.dataset.data_root={data}',
            f'test_dataloader.dataset.data_root={data}',
            'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False',
            'test_dataloader.num_workers=0',
            'test_dataloader.persistent_workers=False',
            'train_cfg.max_iters=2', 'train_cfg.val_interval=1000',
            'default_hooks.checkpoint.interval=2'
        ]
        port = 29700
        for i in range(runs):
            work = osp.join(tmp, f'run{i}')
            outcome, out = launch(
                'dist_train.sh',
                [DEMO, str(args.ranks), '--work-dir', work, '--cfg-options',
                 *common_opts], port, args.timeout)
            tally['train'][outcome] += 1
            ckpt = osp.join(work, 'iter_2.pth')
            if osp.isfile(ckpt):
                outcome, out = launch(
                    'dist_test.sh',
                    [DEMO, ckpt, str(args.ranks), '--work-dir', work,
                     '--cfg-options', *common_opts], port + 1, args.timeout)
                if outcome == 'exit 0' and not re.search(r'mIoU: \d', out):
                    outcome = 'exit 0 without metrics'
                tally['test'][outcome] += 1
            if args.failing:
                outcome, out = launch(
                    'dist_train.sh',
                    [DEMO, str(args.ranks), '--work-dir', work + 'f',
                     '--cfg-options', *common_opts,
                     'model.decode_head.num_classes=2'], port + 2,
                    args.timeout)
                if outcome == 'exit 1' and 'Traceback' not in out:
                    outcome = 'exit 1 without traceback'
                tally['failing'][outcome] += 1
            port += 3
            print(f'round {i + 1}/{runs}: ' + '; '.join(
                f'{k} {dict(v)}' for k, v in tally.items() if v), flush=True)
    print(f'\n{common.cpu_model()}, {args.ranks} ranks, {runs} rounds, load '
          f'{common.load_average():.1f}')
    for name, counts in tally.items():
        if counts:
            total = sum(counts.values())
            print(f'{name:8s}: ' + ', '.join(
                f'{n} of {total} {outcome}'
                for outcome, n in counts.most_common()))


if __name__ == '__main__':
    main()
