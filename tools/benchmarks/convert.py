"""Time and memory of converting a full-size TF DeepLab checkpoint.

    python tools/benchmarks/convert.py           # xception_65, 3 repeats
    python tools/benchmarks/convert.py --quick   # 1 repeat

The checkpoint is generated once and cached (``--cache``, default
``$TMPDIR/deeplabplus_bench``): every variable of
``shared/tf_deeplab/xception65_os16/variables.tsv`` with the values of
``shared/tf_deeplab/weights.py``, a ``<name>/Momentum`` slot for each
trainable one and ``global_step``, as a training run leaves it (~330 MB),
written with :func:`deeplabplus_mm.converters.write_checkpoint`.

Measured, each in a fresh process (page cache warm after a first untimed
run, as for a user who just downloaded the file), ours and TensorFlow's
alternating (round-robin):

* the whole command ``python tools/convert_tf_checkpoint.py SRC OUT`` as a
  user runs it: cold interpreter, imports included, wall time and the
  process's peak RSS (``ru_maxrss``); goals: <= 1.2x the time of a
  TensorFlow process that reads every tensor, peak <= 1.5x the checkpoint;
* a process that imports TensorFlow and reads every tensor with
  ``tf.train.load_checkpoint`` (wall time and peak RSS), when TensorFlow is
  importable here or ``--tf-python`` names an interpreter that has it
  (skipped otherwise), e.g.::

      python -m venv /tmp/tf && /tmp/tf/bin/pip install tensorflow-cpu
      python tools/benchmarks/convert.py --tf-python /tmp/tf/bin/python

* and, to see where the time goes: the CLI's imports alone
  (``python -c``), the conversion after the imports (``open_checkpoint`` +
  ``convert_checkpoint``, peak RSS above the process's RSS after its
  imports), our reader alone over every tensor (crc32c checked), and
  TensorFlow's reading after ``import tensorflow``.
"""
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys
import time

from deeplabplus_mm.utils import benchmark as common

def child_convert(spec):
    """Child: the conversion itself, after the imports."""
    from deeplabplus_mm.converters import convert_checkpoint, open_checkpoint
    common.set_threads(spec['threads'])
    mem = common.PeakRSS().start()
    start = time.perf_counter()
    with open_checkpoint(spec['src']) as reader:
        meta = convert_checkpoint(reader, spec['out'])
    seconds = time.perf_counter() - start
    return dict(seconds=seconds, rss_mib=mem.delta_mib(),
                rss_reset=mem.reset, baseline_mib=mem.baseline_mib,
                tensors=meta['num_tensors'], ignored=len(meta['ignored']))


def child_read(spec):
    """Child: our reader alone over every tensor (crc32c checked), the
    counterpart of TensorFlow's reader."""
    from deeplabplus_mm.converters import open_checkpoint
    mem = common.PeakRSS().start()
    start = time.perf_counter()
    with open_checkpoint(spec['src']) as reader:
        values = dict(reader.items())
    seconds = time.perf_counter() - start
    return dict(seconds=seconds, rss_mib=mem.delta_mib(), tensors=len(values))


def child_tensorflow(spec):
    """Child: TensorFlow's own reader over every tensor."""
    import tensorflow as tf
    mem = common.PeakRSS().start()
    start = time.perf_counter()
    reader = tf.train.load_checkpoint(spec['src'])
    values = {name: reader.get_tensor(name)
              for name in reader.get_variable_to_shape_map()}
    seconds = time.perf_counter() - start
    return dict(seconds=seconds, rss_mib=mem.delta_mib(), tensors=len(values),
                version=tf.__version__)


# Starts a command and prints its wall time and peak RSS. Linux counts the
# memory a process had before exec() in its ru_maxrss, so the measured
# command is started from this small launcher, not from the benchmark's
# own (large) process.
_LAUNCHER = """
import json, os, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE)
err = proc.stderr.read().decode(errors='replace')
_, status, usage = os.wait4(proc.pid, 0)
print(json.dumps(dict(seconds=time.perf_counter() - start,
                      maxrss_kb=usage.ru_maxrss,
                      code=os.waitstatus_to_exitcode(status), err=err)))
"""


def run_python(*args, python=None):
    """Wall time (interpreter start included) and peak RSS in MiB of the
    process ``python ARGS``."""
    out = subprocess.run(
        [sys.executable, '-c', _LAUNCHER, python or sys.executable, *args],
        stdout=subprocess.PIPE, text=True, cwd=common.REPO,
        check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    if result['code']:
        raise RuntimeError(f'python {" ".join(args)} failed:\n'
                           f'{result["err"][-2000:]}')
    return result['seconds'], result['maxrss_kb'] / 1024


CLI = osp.join('tools', 'convert_tf_checkpoint.py')
# What the CLI imports before it converts anything.
CLI_IMPORTS = ("import runpy; runpy.run_path('tools/convert_tf_checkpoint."
               "py')['import_converters'](); import mmengine.config")
# A process that reads every tensor with TensorFlow's own reader.
TF_READ = ('import sys, tensorflow as tf; r = tf.train.load_checkpoint('
           'sys.argv[1]); v = {n: r.get_tensor(n) for n in '
           'r.get_variable_to_shape_map()}')


def parse_args():
    parser = common.parser_for(__doc__, 'smoke run: 1 repeat of each',
                               cache=True, repeats='runs of each (default '
                               '3; 1 quick)')
    parser.add_argument('--tf-python', default=None,
                        help='a Python interpreter with TensorFlow for the '
                        'tf.train.load_checkpoint comparison (default: '
                        'this one, if it has TensorFlow)')
    return common.fill_defaults(parser.parse_args(), repeats=(1, 3))


def main():
    args = parse_args()
    prefix = common.reference_checkpoint(args.cache)
    size_mib = common.checkpoint_bytes(prefix) / 2**20
    load, threads = common.start_run(args)
    print(f'load average at start: {load:.2f}; checkpoint {prefix} '
          f'({size_mib:.0f} MiB, index + data), median of {args.repeats} '
          'after 1 untimed run (page cache warm)', flush=True)
    out = osp.join(args.cache, f'converted-{os.getpid()}.pth')
    spec = dict(src=prefix, out=out, threads=threads)

    def timed_children(kind):
        """Median seconds and largest peak RSS of ``repeats`` children."""
        runs = [common.run_child(__file__, dict(spec, kind=kind))
                for _ in range(args.repeats)]
        failed = [r['error'] for r in runs if 'error' in r]
        if failed:
            sys.exit(f'{kind} failed: {failed[0]}')
        return (common.median([r['seconds'] for r in runs]),
                max(r['rss_mib'] for r in runs), runs)

    have_tf = not (args.tf_python is None and
                   importlib.util.find_spec('tensorflow') is None)
    tf_python = args.tf_python or sys.executable

    # round-robin: the whole CLI and the whole TensorFlow process
    run_python(CLI, prefix, out)  # warm-up (page cache)
    if have_tf:
        run_python('-c', TF_READ, prefix, python=tf_python)
    cli, tf_proc = [], []
    for _ in range(args.repeats):
        cli.append(run_python(CLI, prefix, out))
        if have_tf:
            tf_proc.append(run_python('-c', TF_READ, prefix,
                                      python=tf_python))
    cli_s = common.median([s for s, _ in cli])
    cli_mib = max(m for _, m in cli)
    conv_s, conv_mib, runs = timed_children('convert')
    read_s, read_mib, _ = timed_children('read')
    imports_s = common.median(
        [run_python('-c', CLI_IMPORTS)[0] for _ in range(args.repeats)])
    out_mib = osp.getsize(out) / 2**20
    os.remove(out)

    rows = [['ours: python tools/convert_tf_checkpoint.py (whole process)',
             f'{cli_s:.2f}', f'{cli_mib:.0f}', f'{cli_mib / size_mib:.2f}'],
            [f'  of which imports: python -c "{CLI_IMPORTS}"',
             f'{imports_s:.2f}', '-', '-'],
            ['  of which open_checkpoint + convert_checkpoint (RSS: growth '
             'after imports)', f'{conv_s:.2f}', f'+{conv_mib:.0f}', '-'],
            ['ours: open_checkpoint + read every tensor (crc32c checked; '
             'growth)', f'{read_s:.2f}', f'+{read_mib:.0f}', '-']]
    ratio = None
    if not have_tf:
        tf_note = 'TensorFlow: skipped (not installed)'
        rows.append(['TensorFlow process', 'skipped: not installed', '-',
                     '-'])
    else:
        tf_runs = [common.run_child(__file__, dict(spec, kind='tensorflow'),
                                    python=args.tf_python)
                   for _ in range(args.repeats)]
        tf_s = common.median([s for s, _ in tf_proc])
        tf_mib = max(m for _, m in tf_proc)
        ratio = cli_s / tf_s
        version = tf_runs[0].get('version', '?')
        rows.append([f'TF {version}: python -c "import tensorflow; '
                     'load_checkpoint; get_tensor (all)" (whole process)',
                     f'{tf_s:.2f}', f'{tf_mib:.0f}',
                     f'{tf_mib / size_mib:.2f}'])
        if not any('error' in r for r in tf_runs):
            tf_read = common.median([r['seconds'] for r in tf_runs])
            rows.append(['  of which load_checkpoint + get_tensor (all; '
                         'growth)', f'{tf_read:.2f}',
                         f'+{max(r["rss_mib"] for r in tf_runs):.0f}', '-'])
        tf_note = (f'TensorFlow {version} process {tf_s:.2f} s: ours '
                   f'{ratio:.2f}x (goal <= 1.2x: '
                   f'{"met" if ratio <= 1.2 else "NOT met"})')
    print()
    print(f'checkpoint: {size_mib:.0f} MiB, {runs[0]["tensors"]} tensors '
          f'converted, {runs[0]["ignored"]} ignored (Momentum slots, '
          f'global_step); output {out_mib:.0f} MiB; conversion child RSS '
          f'after imports {runs[0]["baseline_mib"]:.0f} MiB')
    print(common.table(['what', 'wall s', 'peak RSS MiB',
                        'peak / checkpoint'], rows))
    mem_ok = 'met' if cli_mib <= 1.5 * size_mib else 'NOT met'
    print()
    print(f'SUMMARY: conversion as a user runs it (whole CLI process) '
          f'{cli_s:.2f} s, peak RSS {cli_mib:.0f} MiB = '
          f'{cli_mib / size_mib:.2f}x the {size_mib:.0f} MiB checkpoint '
          f'(goal <= 1.5x: {mem_ok}); {tf_note}; conversion after imports '
          f'{conv_s:.2f} s, imports {imports_s:.2f} s')


if __name__ == '__main__':
    common.entry(main, convert=child_convert, read=child_read,
                 tensorflow=child_tensorflow)
