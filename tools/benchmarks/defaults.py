"""What users run without flags: each path's default command (test, TTA,
infer) before and after the fast path became the default.

    python tools/benchmarks/defaults.py            # xception65 OS16, 513x513
    python tools/benchmarks/defaults.py --quick    # the demo config, tiny

"before": the command with ``--no-fast`` (the plain model, its default
before), "after": the command as it is; fresh processes, round-robin, each
log checked for the path it took. Method: docs/benchmarks.md, section 8.
"""
import json
import os
import os.path as osp
import runpy
import sys
import tempfile
import time

import torch

import _checkout  # noqa: F401  (first: the checkout on sys.path)
from deeplabplus_mm.apis import build_model
from tools import REPO
from tools.benchmarks import _cases
from tools.benchmarks import _harness as common
from tools.fixtures.synthetic_voc import make_synthetic_voc

CONFIG = {False: 'configs/deeplabv3plus/deeplabv3plus_xception65-d16_4xb4-'
          '30k_voc12aug-513x513.py',
          True: 'configs/demo/deeplabv3plus_xception41-d16_1xb8-300it_'
          'synthvoc-97x97.py'}  # --quick -> config
HOOK = ('FastInferenceHook: test on a copy of the model',
        'FastInferenceHook: off')
LOG = dict(test=HOOK, tta=HOOK, infer=(  # the log on the fast, plain path
    'model: BN folded into the convs, channels_last', 'model: plain'))
DATA = """_base_ = [{base!r}]
test_dataloader = dict(
    dataset=dict(type='PascalVOCAugDataset', data_root={root!r},
                 data_prefix=dict(img_path='JPEGImages',
                                  seg_map_path='SegmentationClass'),
                 ann_file='ImageSets/Segmentation/val.txt'))
"""


def make_data(args, folder):
    """A checkpoint (seeded weights, BN statistics of random images), per
    path a config on the first synthetic VOC images; returns path -> its
    command up to its output folder."""
    base, commands = osp.join(REPO, args.config), {}
    model = _cases.calibrate_bn(build_model(base, seed=0),
                                97 if args.quick else 257, batches=2, seed=0)
    ckpt = osp.join(folder, 'model.pth')
    torch.save(dict(state_dict=model.state_dict(), meta={}), ckpt)
    for path in args.paths:
        n = args.tta_images if path == 'tta' else args.images
        root, config = osp.join(folder, f'voc{n}'), osp.join(folder, f'{n}.py')
        make_synthetic_voc(root, num_train=0, num_val=n, seed=0,
                           size_range=args.sizes)
        with open(config, 'w') as f:
            f.write(DATA.format(base=base, root=root))
        commands[path] = (
            ['tools/infer.py', config, ckpt, osp.join(root, 'JPEGImages'),
             '--out-dir'] if path == 'infer' else ['tools/test.py', config,
                                                   ckpt, '--work-dir'])
    return commands


def child_run(spec):
    """The measured process: the tool's imports, then its timed main()."""
    globs = runpy.run_path(spec['argv'][0], run_name='defaults_benchmark')
    sys.argv, start = list(spec['argv']), time.perf_counter()
    try:
        globs['main']()
    except SystemExit as e:  # infer.py exits with its status
        if e.code not in (0, None):
            raise
    return dict(work=time.perf_counter() - start)


def run_once(path, variant, argv, env):
    """One command (fresh process): (wall s, work s, CPU s, other cores);
    raises with the log's tail if it failed or took the wrong path."""
    res = common.run_command([sys.executable, osp.abspath(__file__),
                              common.CHILD_FLAG,
                              json.dumps(dict(kind='run', argv=argv))], env)
    log, (fast, plain) = res['out'], LOG[path]
    result = common.printed_result(log)
    took = 'after' if fast in log else 'before' if plain in log else None
    if res['code'] or result is None or took != variant:
        tail = '\n'.join(log.splitlines()[-15:])
        raise RuntimeError(f'{" ".join(argv)}: exit {res["code"]}, the path'
                           f' of {took} (the log), not {variant}:\n{tail}')
    return res['seconds'], result['work'], res['cpu_s'], res['other_cores']


def main():
    p = common.parser(
        __doc__, 'smoke run: the demo config (xception41, 97x97 crops, no '
        'padding to 513), 2 small images, 1 round',
        images=(2, 32, 'images for test and infer'),
        tta_images=(1, 3, 'images for the TTA path'), repeats=(1, 3, 'rounds'))
    p.add_argument('--paths', default=','.join(LOG),
                   help=f'comma-separated, from {tuple(LOG)}')
    p.add_argument('--keep', help='keep the data, checkpoint and outputs here')
    args = common.parse(p)
    args.paths, args.config = args.paths.split(','), CONFIG[args.quick]
    args.sizes = (61, 83) if args.quick else (375, 500)
    for path in set(args.paths) - set(LOG):
        p.error(f'unknown path {path!r}; choose from {tuple(LOG)}')
    if min(args.images, args.tta_images, args.repeats) < 1:
        p.error('--images, --tta-images and --repeats must be at least 1')
    load, _ = common.start(args)
    env = dict(PYTHONUNBUFFERED='1', **(
        dict(OMP_NUM_THREADS=str(args.threads)) if args.threads else {}))
    runs = {(q, v): [] for q in args.paths for v in ('before', 'after')}
    with tempfile.TemporaryDirectory(prefix='deeplabplus_defaults_') as tmp:
        folder = args.keep or tmp
        os.makedirs(folder, exist_ok=True)
        commands = make_data(args, folder)
        print(f'config {args.config}; load average at start {load:.2f}; '
              f'images: {args.images} for test and infer, {args.tta_images}'
              f' for TTA (12 views each), {args.sizes[0]}..{args.sizes[1]}'
              f' px; {args.repeats} round(s) round-robin over {len(runs)} '
              'commands', flush=True)
        for r, (path, variant) in [(r, k) for r in range(args.repeats)
                                   for k in runs]:
            out = osp.join(folder, f'out_{path}_{variant}_{r}')
            argv = commands[path] + [out] + ['--tta'] * (path == 'tta') + [
                '--no-fast'] * (variant == 'before')
            for _ in range(3):  # retry runs disturbed by other processes
                run = run_once(path, variant, argv, env)
                if run[3] < args.max_other_cores:
                    break
            runs[path, variant].append(run)
            print('  round {} {:5s} {:6s}: command {:7.2f} s, work {:7.2f} '
                  's, CPU {:7.2f} s, other processes {:.2f} cores, load {:.2f}'
                  .format(r + 1, path, variant, *run, common.load_average()),
                  flush=True)
    rows, summary = [], []
    for path in args.paths:
        n = args.tta_images if path == 'tta' else args.images
        med = {v: [common.median([r[i] for r in runs[path, v]])
                   for i in range(3)] for v in ('before', 'after')}
        for v, (wall, work, cpu) in med.items():
            rows.append([path, v, f'{wall:.2f}', f'{work:.2f}',
                         f'{work / n:.3f}', f'{cpu:.2f}',
                         f'{max(r[3] for r in runs[path, v]):.2f}'])
        cmd, work, cpu = (b / a for b, a in zip(med['before'], med['after']))
        rows.append([path, 'before / after', f'{cmd:.2f}x', f'{work:.2f}x',
                     '', f'{cpu:.2f}x', ''])
        summary.append(f'{path} {work:.2f}x work, {cmd:.2f}x command, '
                       f'{cpu:.2f}x CPU time')
    print(f'\n{args.config}; medians of {args.repeats} round(s); work: '
          'main() less interpreter start and imports (TTA: 12 views an image)'
          "; CPU s: the command's, all threads; other cores: the most other "
          'processes took during a run\n' + common.table(
              ['path', 'variant', 'command s', 'work s', 'work s/image',
               'CPU s', 'other cores'], rows) + '\nload average at the end: '
          f'{common.load_average():.2f}\n\nSUMMARY: default command after /'
          ' before (speed-up): ' + '; '.join(summary))


if __name__ == '__main__':
    sys.exit(common.entry(main, run=child_run))
