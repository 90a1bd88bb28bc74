"""Our training step and evaluation forward against TensorFlow DeepLab's.

    python tools/benchmarks/vs_tf.py --tf-python PY --tf-code DIR [--quick]

Xception-65 OS 16 (the VOC zoo configuration), float32, the same thread
count on both sides. Ours: the training step of ``tools/train.py`` (forward,
loss, backward and the config's optimizer step, input channels_last as the
config's ``train_channels_last``) at batch 2, and the evaluation forward on
the default fast path (BN folded, channels_last), batch 1. TensorFlow's
(``--tf-python``, an interpreter with TensorFlow 2.15 and tf_slim;
``--tf-code``: the official code as tools/tf_references/train_reference.py
describes): TF DeepLab's ``train.py`` step and ``model.predict_labels``
(tools/tf_references/speed_child.py). Every measurement is a child process
that times ``--steps`` steps after an untimed one; ours and TF's alternate,
``--rounds`` times, so that a drifting load hits both alike. Method:
docs/benchmarks.md, section 9.
"""
import json
import os
import os.path as osp
import statistics
import sys
import time

import _checkout  # noqa: F401  (first: the checkout on sys.path)
from tools import REPO
from tools.benchmarks import _cases
from tools.benchmarks import _harness as common

CASE, TF_CASE = 'xception65-d16', 'xception65_voc'
GOAL = 0.8  # our time / TF's time, at most
TF_CHILD = osp.join(REPO, 'tools', 'tf_references', 'speed_child.py')


def child_ours(spec):
    """Child: our step (train: variant cl-input + optimizer; eval: fuse+cl)
    timed ``steps`` times after one untimed."""
    common.set_threads(spec['threads'])
    start = time.perf_counter()
    train = spec['mode'] == 'train'
    step, _, _ = _cases.prepare(
        CASE, spec['mode'], 'cl-input' if train else 'fuse+cl', spec['size'],
        batch=spec['batch'] if train else 1, optimizer=train)
    step()
    build_s, seconds = time.perf_counter() - start, []
    for _ in range(spec['steps']):
        t = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - t)
    return dict(seconds=seconds, build_s=build_s)


def main():
    p = common.parser(__doc__, 'smoke run: 257x257, 1 round of 1 step',
                      size=(257, 513, 'square input size'),
                      rounds=(1, 3, 'alternations of ours and TF'),
                      steps=(1, 3, 'timed steps per child'))
    p.add_argument('--tf-python', required=True,
                   help='a Python interpreter with TensorFlow and tf_slim')
    p.add_argument('--tf-code', required=True,
                   help="the official code's folder (deeplab/, nets/, "
                   'deployment/)')
    p.add_argument('--batch', type=int, default=2, help='training batch')
    p.add_argument('--modes', default='train,eval')
    args = common.parse(p)
    if not os.access(args.tf_python, os.X_OK):
        sys.exit(f'error: --tf-python {args.tf_python}: no such interpreter')
    if not osp.isfile(osp.join(args.tf_code, 'deeplab', 'model.py')):
        sys.exit(f'error: --tf-code {args.tf_code}: no deeplab/model.py '
                 '(tensorflow/models research/deeplab) in it')
    load, threads = common.start(args)
    env = dict(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    runs = {(m, who): [] for m in args.modes.split(',')
            for who in ('ours', 'tf')}
    for r in range(args.rounds):
        for mode, who in runs:
            spec = dict(mode=mode, size=args.size, batch=args.batch,
                        threads=threads, steps=args.steps)
            with common.Interference(children=True) as probe:
                if who == 'ours':
                    res = common.run_child(__file__, dict(spec, kind='ours'),
                                           env)
                else:
                    res = common.child_result(
                        [args.tf_python, TF_CHILD, '--tf-code',
                         args.tf_code, json.dumps(
                             dict(spec, case=TF_CASE))],
                        dict(env, TF_CPP_MIN_LOG_LEVEL='2'))
            if 'error' in res:
                sys.exit(f'{who} {mode} failed: {res["error"]}')
            res['other_cores'] = probe.cores
            runs[mode, who].append(res)
            print(f'round {r + 1} {mode} {who}: '
                  f'{[round(s, 3) for s in res["seconds"]]} s/step (set-up '
                  f'{res["build_s"]:.1f} s, other processes '
                  f'{probe.cores:.2f} cores)', flush=True)
    rows, summary = [], []
    for mode in args.modes.split(','):
        ours = [min(r['seconds']) for r in runs[mode, 'ours']]
        tf = [min(r['seconds']) for r in runs[mode, 'tf']]
        ratios = [a / b for a, b in zip(ours, tf)]
        ratio = statistics.median(ratios)
        version = runs[mode, 'tf'][0].get('version', '?')
        what = (f'train step, batch {args.batch}' if mode == 'train' else
                'eval forward, batch 1')
        met = 'met' if ratio <= GOAL else 'NOT met'
        rows.append([what, f'{statistics.median(ours):.3f}',
                     f'{statistics.median(tf):.3f}',
                     ' '.join(f'{x:.2f}' for x in ratios), f'{ratio:.2f}',
                     f'<= {GOAL}: {met}'])
        summary.append(f'{mode} {ratio:.2f}x TF {version} ({met})')
    print(f'\nxception65 OS16, {args.size}x{args.size}, float32, {threads} '
          f'threads each; per child the fastest of {args.steps} steps after '
          f'1 untimed; {args.rounds} rounds, ours and TF alternating; load '
          f'average at start {load:.2f}')
    print(common.table(['what', 'ours s', 'TF s', 'ratio per round',
                        'median ratio', 'goal'], rows))
    print('\nSUMMARY: ' + '; '.join(summary))


if __name__ == '__main__':
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    sys.exit(common.entry(main, ours=child_ours))
