"""How CPU distributed runs end: exit status of repeated launcher runs.

    python tools/benchmarks/dist_exit.py [--runs 10] [--ranks 2] [--failing]

Rounds of ``dist_train.sh`` (demo model, 2 iterations), ``dist_test.sh`` and
with ``--failing`` a training failing at once (expected: exit 1, traceback):
exit N, abort or hang? (gloo: README, "Distributed on a CPU-only torch")"""
import argparse
import os
import os.path as osp
import re
import signal
import subprocess
import sys
import tempfile
from collections import Counter

import _checkout  # noqa: F401  (first: the checkout on sys.path)
from tools import REPO
from tools.benchmarks import _harness as common
from tools.fixtures.synthetic_voc import make_synthetic_voc

CFG = 'configs/demo/deeplabv3plus_xception41-d16_1xb8-300it_synthvoc-97x97.py'
RUNS = dict(train='dist_train.sh {cfg} {ranks} --work-dir {w} --cfg-options',
            test='dist_test.sh {cfg} {w}/iter_2.pth {ranks} --work-dir {w} '
            '--cfg-options', failing='dist_train.sh {cfg} {ranks} --work-dir '
            '{w}f --cfg-options model.decode_head.num_classes=2')
OPTS = ['train_dataloader.batch_size=2', 'train_cfg.max_iters=2',
        'train_cfg.val_interval=1000', 'default_hooks.checkpoint.interval=2']
# (run, outcome) -> what its output must show, the outcome where it does not
CHECKS = {('test', 'exit 0'): (r'mIoU: \d', 'exit 0 without metrics'),
          ('failing', 'exit 1'): ('Traceback', 'exit 1 without traceback')}
ABORT = r'terminate called|SIGABRT|Signal 6|exitcode  : -6'


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--runs', type=int, default=10, help='rounds')
    p.add_argument('--ranks', type=int, default=2)
    p.add_argument('--failing', action='store_true', help='add a failing run')
    p.add_argument('--timeout', type=float, default=600, help='seconds')
    p.add_argument('--quick', action='store_true', help='one round')
    args = p.parse_args()
    runs, tally = 1 if args.quick else args.runs, {k: Counter() for k in RUNS}
    env = dict(os.environ, PYTHON=sys.executable, PYTHONUNBUFFERED='1')
    with tempfile.TemporaryDirectory() as tmp:
        make_synthetic_voc(osp.join(tmp, 'voc'), num_train=8, num_val=2,
                           size_range=(61, 83), seed=1)
        opts = OPTS + [f'{s}_dataloader.dataset.data_root={tmp}/voc'
                       for s in ('train', 'val', 'test')]
        for i, j, name in [(i, j, n) for i in range(runs) for j, n in
                           enumerate(list(RUNS)[:2 + args.failing])]:
            script, *argv = (a.format(cfg=CFG, ranks=args.ranks, w=osp.join(
                tmp, f'run{i}')) for a in RUNS[name].split())
            if name == 'test' and not osp.isfile(argv[1]):
                continue
            # its own process group: a hang ends with the launcher's ranks
            proc = subprocess.Popen(
                ['bash', 'tools/' + script, *argv, *opts], text=True,
                cwd=REPO, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, start_new_session=True,
                env=dict(env, PORT=str(29700 + 3 * i + j)))
            try:
                out, code = proc.communicate(timeout=args.timeout)[0], (
                    proc.returncode)
                outcome = ('abort' if code < 0 or re.search(ABORT, out) else
                           f'exit {code}')
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                out, outcome = proc.communicate()[0], 'hang'
            sign, other = CHECKS.get((name, outcome), ('', outcome))
            outcome = outcome if re.search(sign, out) else other
            tally[name][outcome] += 1
            print(f'round {i + 1}/{runs} {name}: {outcome}', flush=True)
    print(f'\n{common.cpu_model()}, {args.ranks} ranks, {runs} rounds, load '
          f'{common.load_average():.1f}\n' + '\n'.join(f'{k:8s}: ' + ', '.join(
              f'{n} of {sum(v.values())} {o}' for o, n in v.most_common())
              for k, v in tally.items() if v))


if __name__ == '__main__':
    main()
