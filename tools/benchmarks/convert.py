"""Time and memory of converting a full-size TF DeepLab checkpoint.

    python tools/benchmarks/convert.py [--quick] [--tf-python PYTHON]

The whole ``tools/convert_tf_checkpoint.py`` process and its parts against
a process that imports TensorFlow and reads every tensor, each in a fresh
process, round-robin. Method: ``docs/benchmarks.md``.
"""
import importlib.util
import os
import os.path as osp
import sys
import time

import _checkout  # noqa: F401  (first: the checkout on sys.path)
from tools.benchmarks import _checkpoint
from tools.benchmarks import _harness as common

CLI_IMPORTS = ("import runpy; runpy.run_path('tools/convert_tf_checkpoint."
               "py')['import_converters'](); import mmengine.config")
TF_READ = ('import sys, tensorflow as tf; r = tf.train.load_checkpoint('
           'sys.argv[1]); v = {n: r.get_tensor(n) for n in '
           'r.get_variable_to_shape_map()}')


def child_convert(spec):
    """Child: the conversion itself, after the imports."""
    from deeplabplus_mm.converters import convert_checkpoint, open_checkpoint
    mem, start = common.PeakRSS().start(), time.perf_counter()
    with open_checkpoint(spec['src']) as reader:
        meta = convert_checkpoint(reader, spec['out'])
    return dict(seconds=time.perf_counter() - start, rss_mib=mem.delta_mib(),
                baseline_mib=mem.baseline_mib, tensors=meta['num_tensors'],
                ignored=len(meta['ignored']),
                out_mib=osp.getsize(spec['out']) / 2**20)


def main():
    p = common.parser(__doc__, 'smoke run: 1 repeat of each', cache=True,
                      repeats=(1, 3, 'runs of each'))
    p.add_argument('--tf-python', help='a Python interpreter with TensorFlow'
                   ' (default: this one, if it has TensorFlow)')
    args = common.parse(p)
    prefix = _checkpoint.reference_checkpoint(args.cache)
    size = _checkpoint.checkpoint_bytes(prefix) / 2**20
    common.start(args)
    out = osp.join(args.cache, f'converted-{os.getpid()}.pth')
    py, tf_py = sys.executable, args.tf_python or (
        importlib.util.find_spec('tensorflow') and sys.executable)
    steps = dict(  # name: (a whole process's argv or a child's kind, row)
        cli=([py, 'tools/convert_tf_checkpoint.py', prefix, out], 'ours: '
             'python tools/convert_tf_checkpoint.py (whole process)'),
        imports=([py, '-c', CLI_IMPORTS],
                 f'  of which imports: python -c "{CLI_IMPORTS}"'),
        convert=('convert', '  of which open_checkpoint + convert_checkpoint'
                 ' (RSS: growth after imports)'),
        read=('read', 'ours: open_checkpoint + read every tensor (crc32c '
              'checked; growth)'),
        tf=([tf_py, '-c', TF_READ, prefix], 'TF {}: python -c "import '
            'tensorflow; load_checkpoint; get_tensor (all)" (whole process)'),
        tf_read=('tf', '  of which load_checkpoint + get_tensor (all; '
                 'growth)'))
    runs = {k: [] for k in steps if tf_py or 'tf' not in k}

    def run(name):  # [result], [] when TensorFlow's child failed
        step = steps[name][0]
        spec = dict(kind=step, src=prefix, out=out, what='keep', verify=True)
        res = (common.run_command(step) if isinstance(step, list) else
               _checkpoint.tf_read(spec, tf_py) if step == 'tf' else
               common.run_child(__file__, spec))
        error = res.get('error') or res.get('code') and f'exit {res["code"]}'
        if error and name != 'tf_read':  # without it, that row is left out
            sys.exit(f'{name} failed: {error} {res.get("out", "")[-2000:]}')
        res.setdefault('rss_mib', res.get('maxrss_mib'))  # whole process
        return [] if error else [res]

    for i in range(args.repeats + 1):  # round-robin, round 0: page cache
        for name in runs if i else {'cli', 'tf'} & set(runs):
            runs[name] += run(name)[:i]  # round 0's results are dropped
    os.remove(out)
    s, mib = ({k: f([r[key] for r in v]) for k, v in runs.items() if v}
              for f, key in ((common.median, 'seconds'), (max, 'rss_mib')))
    version = (runs.get('tf_read') or [{}])[0].get('version', '?')
    rows = [[label.format(version), f'{s[k]:.2f}'] + (
        ['-', '-'] if k == 'imports' else [f'+{mib[k]:.0f}', '-'] if
        isinstance(step, str) else [f'{mib[k]:.0f}', f'{mib[k] / size:.2f}'])
        for k, (step, label) in steps.items() if k in s]
    ratio = tf_py and s['cli'] / s['tf']
    note = (f'TensorFlow {version} process {s["tf"]:.2f} s: ours {ratio:.2f}x'
            f' (goal <= 1.2x: {"met" if ratio <= 1.2 else "NOT met"})'
            if tf_py else 'TensorFlow: skipped (not installed)')
    rows += [] if tf_py else [['TensorFlow process', 'skipped: not '
                                'installed', '-', '-']]
    conv, cli = runs['convert'][0], mib['cli']
    print(f'\ncheckpoint: {size:.0f} MiB, {conv["tensors"]} tensors '
          f'converted, {conv["ignored"]} ignored (Momentum slots, '
          f'global_step); output {conv["out_mib"]:.0f} MiB; conversion child'
          f' RSS after imports {conv["baseline_mib"]:.0f} MiB; {prefix}, '
          f'median of {args.repeats} after 1 untimed run (page cache warm)')
    print(common.table(['what', 'wall s', 'peak RSS MiB',
                        'peak / checkpoint'], rows))
    print(f'\nSUMMARY: conversion as a user runs it (whole CLI process) '
          f'{s["cli"]:.2f} s, peak RSS {cli:.0f} MiB = {cli / size:.2f}x the'
          f' {size:.0f} MiB checkpoint (goal <= 1.5x: '
          f'{"met" if cli <= 1.5 * size else "NOT met"}); {note}; '
          f'conversion after imports {s["convert"]:.2f} s, imports '
          f'{s["imports"]:.2f} s')


if __name__ == '__main__':
    sys.exit(common.entry(main, read=_checkpoint.read_child,
                          convert=child_convert))
