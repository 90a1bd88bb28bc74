"""The benchmarks' harness (``tools/benchmarks/``, the commands): arguments
and the machine line, timing (round-robin over variants, retrying runs that
other processes disturbed, the float32 GEMM reference rate), peak memory,
child processes and tables. The zoo configs' models as the benchmarks build
and step them: :mod:`tools.benchmarks._cases`; the full-size reference
checkpoint: :mod:`tools.benchmarks._checkpoint`. How each figure is
measured: ``docs/benchmarks.md``.
"""
import argparse
import datetime
import json
import os
import os.path as osp
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from tools import REPO

CHILD_FLAG = '--child'
DEFAULT_CACHE = osp.join(tempfile.gettempdir(), 'deeplabplus_bench')
median = statistics.median

# --- Arguments, the machine ------------------------------------------------


def parser(doc, quick_help, cache=False, **scaled):
    """A benchmark's parser: ``--quick``, the threads and quiet-machine
    options, ``--cache`` if asked and, per ``name=(quick, full, help)``, an
    option whose default depends on ``--quick`` (filled in by
    :func:`parse`)."""
    p = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('--quick', action='store_true', help=quick_help)
    p.add_argument('--threads', type=int, default=0,
                   help="torch threads (default: torch's, one per core)")
    p.add_argument('--max-load', type=float, default=1.3, help='wait while '
                   'the 1-minute load average is above this ...')
    p.add_argument('--patience', type=float, default=180.,
                   help='... for at most this many seconds')
    p.add_argument('--max-other-cores', type=float, default=0.25,
                   help='retry a timed run (up to 3 times) when other '
                   'processes used more CPU than this while it ran')
    if cache:
        p.add_argument('--cache', default=DEFAULT_CACHE,
                       help='where generated inputs are kept')
    for name, (quick, full, text) in scaled.items():
        p.add_argument('--' + name.replace('_', '-'), type=type(full),
                       help=f'{text} (default {full}; {quick} quick)')
    p.set_defaults(_scaled=scaled)
    return p


def parse(p, args=None):
    """Parse, and give each unset scaled option its quick or full value."""
    args = p.parse_args(args)
    for name, (quick, full, _) in args.__dict__.pop('_scaled').items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


def load_average():
    return os.getloadavg()[0]


def cpu_model():
    with open('/proc/cpuinfo') as f:
        names = [ln.split(':', 1)[1].strip() for ln in f
                 if ln.startswith('model name')]
    return names[0] if names else platform.processor()


def set_threads(threads):
    """``torch.set_num_threads``; 0 / None keeps torch's default."""
    if threads:
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


def start(args):
    """Wait (at most ``--patience`` s) while the load average is above
    ``--max-load``, set the threads, print the command and the machine;
    returns ``(load average found, torch threads)``."""
    deadline = time.monotonic() + args.patience
    while load_average() > args.max_load and time.monotonic() < deadline:
        print(f'# load average {load_average():.2f} > {args.max_load}: '
              'waiting 30 s', flush=True)
        time.sleep(30)
    load, threads = load_average(), set_threads(args.threads)
    date = datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')
    print('command: python ' + ' '.join(
        [osp.relpath(sys.argv[0], REPO)] + sys.argv[1:]))
    print(f'machine: {cpu_model()}, {os.cpu_count()} logical CPUs, {threads}'
          f' torch threads | torch {torch.__version__} | python '
          f'{platform.python_version()} | {date} | load avg {load:.2f}',
          flush=True)
    return load, threads


def gpu_line(device):
    props = torch.cuda.get_device_properties(device)
    return (f'GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB | CUDA '
            f'{torch.version.cuda} | cuDNN {torch.backends.cudnn.version()}')


# --- Timing and memory -----------------------------------------------------


class Interference:
    """Cores' worth of CPU time other processes used while the block ran
    (``/proc/stat`` less this process's ticks; ``children``: the block
    waits for child processes, whose ticks count as ours). On a shared
    machine a process that preempts one OpenMP thread stalls the others at
    every barrier."""
    HZ = os.sysconf('SC_CLK_TCK')

    def __init__(self, children=False):
        self.fields = slice(11, 15 if children else 13)

    def ticks(self):
        with open('/proc/stat') as f:
            cpu = [int(v) for v in f.readline().split()[1:9]]
        with open('/proc/self/stat') as f:
            own = f.read().rsplit(')', 1)[1].split()[self.fields]
        # busy: all but idle and iowait; own: utime stime [cutime cstime]
        return sum(cpu) - cpu[3] - cpu[4], sum(int(v) for v in own)

    def __enter__(self):
        self.start, self.t0 = self.ticks(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        (busy, own), (busy0, own0) = self.ticks(), self.start
        other = (busy - busy0) - (own - own0)
        self.cores = max(other, 0) / self.HZ / max(self.wall, 1e-9)


def round_robin(steps, warmup, repeats, max_other_cores):
    """Time every step (name -> callable) once per round so that drifting
    load hits all alike: ``warmup`` untimed rounds, then ``repeats``; a run
    during which other processes took more than ``max_other_cores`` is
    retried up to 3 times. Returns name -> times, name -> other cores."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    times, others = {k: [] for k in steps}, {k: [] for k in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            for _ in range(3):
                with Interference() as probe:
                    step()
                if probe.cores < max_other_cores:
                    break
            times[name].append(probe.wall)
            others[name].append(probe.cores)
    return times, others


def synchronize(device):
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize(device)


def gemm_step(device='cpu', n=2048):
    """A float32 n x n ``torch.mm`` (2 n^3 FLOP): the reference rate."""
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=gen).to(device) for _ in range(2))
    out = torch.empty(n, n, device=device)
    return lambda: (torch.mm(a, b, out=out), synchronize(device))


def gemm_rate(seconds, n=2048):
    """GFLOP/s of one :func:`gemm_step` that took ``seconds``."""
    return 2 * n**3 / seconds / 1e9


def gemm_gflops(device='cpu'):
    """The median rate of 7 GEMMs after 2 untimed."""
    times, _ = round_robin(dict(gemm=gemm_step(device)), 2, 7, float('inf'))
    return gemm_rate(median(times['gemm']))


class PeakRSS:
    """Peak resident memory above the RSS at ``start()``, in MiB: the
    high-water mark is reset there (``/proc/self/clear_refs``; where that is
    refused, ``reset`` is False and the peak is ``ru_maxrss``)."""

    def start(self):
        import gc
        gc.collect()
        try:
            with open('/proc/self/clear_refs', 'w') as f:
                f.write('5')
            self.reset = True
        except OSError:
            self.reset = False
        self.baseline_mib = self._status('VmRSS')
        return self

    def _status(self, field):
        with open('/proc/self/status') as f:
            kb = next(ln.split()[1] for ln in f if ln.startswith(field))
        return int(kb) / 1024

    def delta_mib(self):
        peak = (self._status('VmHWM') if self.reset else
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return max(peak - self.baseline_mib, 0)


# --- Child processes, output -----------------------------------------------

# Commands start from a small process (_launcher.py), not from a benchmark's
# large one: Linux counts a parent's memory in a child's ru_maxrss when the
# child was forked from it.
LAUNCHER = osp.join(osp.dirname(osp.abspath(__file__)), '_launcher.py')


def run_command(argv, env=None):
    """Run ``argv`` (a fresh process, from ``REPO``); returns its
    ``seconds`` (wall), ``cpu_s``, ``maxrss_mib``, exit ``code``, ``out``
    (stdout and stderr) and ``other_cores`` (:class:`Interference`)."""
    with Interference(children=True) as probe:
        proc = subprocess.run([sys.executable, LAUNCHER, *argv],
                              stdout=subprocess.PIPE, text=True, cwd=REPO,
                              env=dict(os.environ, **(env or {})), check=True)
    return dict(json.loads(proc.stdout), other_cores=probe.cores)


def printed_result(out):
    """The dict a child printed last (a JSON line) in ``out``, or None."""
    lines = [ln for ln in out.splitlines() if ln.startswith('{')]
    return json.loads(lines[-1]) if lines else None


def child_result(argv, env=None):
    """Run ``argv``; the dict it printed last, ``{'error': ...}`` when it
    failed."""
    res = run_command(argv, env)
    result = printed_result(res['out'])
    if res['code'] or result is None:
        tail = ' | '.join(res['out'].strip().splitlines()[-5:])
        return dict(error=f'exit {res["code"]}: {tail}')
    return result


def run_child(script, spec, env=None, python=None):
    """``python SCRIPT --child JSON`` (this interpreter unless ``python``):
    see :func:`entry`."""
    return child_result([python or sys.executable, script, CHILD_FLAG,
                         json.dumps(spec)], env)


def entry(main, **children):
    """A benchmark's ``__main__`` (``sys.exit(entry(...))``): with ``--child
    JSON`` print the result of ``children[spec.pop('kind')](spec)`` and
    return None, otherwise return ``main()``'s exit status."""
    if len(sys.argv) != 3 or sys.argv[1] != CHILD_FLAG:
        return main()
    spec = json.loads(sys.argv[2])
    print(json.dumps(children[spec.pop('kind')](spec)), flush=True)
    return None


def table(headers, rows):
    """A Markdown table (readable as plain text too)."""
    cells = [[str(c) for c in r] for r in [headers, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ['| ' + ' | '.join(c.ljust(w) for c, w in zip(r, widths)) + ' |'
             for r in cells]
    lines.insert(1, '|' + '|'.join('-' * (w + 2) for w in widths) + '|')
    return '\n'.join(lines)


def fmt(value, spec='.2f', missing='-'):
    return missing if value is None or value != value else format(value,
                                                                   spec)
