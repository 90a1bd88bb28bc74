"""Shared plumbing of the benchmarks in ``tools/benchmarks/``.

Timing (warm-up, then the median of several repeats), the machine they ran
on, a wait for a quiet machine, the float32 GEMM reference rate, per-case
child processes and their peak resident memory, and plain-text tables.
Nothing here is timed by the tests; they only run the scripts.
"""
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
CHILD_FLAG = '--child'


# ---------------------------------------------------------------------------
# The machine
# ---------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown CPU'


def load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float('nan')


def wait_for_quiet(max_load: float = 1.3, patience: float = 180.,
                   interval: float = 30.) -> float:
    """Sleep while the 1-minute load average is above ``max_load``, for at
    most ``patience`` seconds; returns the load found when starting."""
    deadline = time.monotonic() + patience
    load = load_average()
    while load > max_load and time.monotonic() < deadline:
        print(f'# load average {load:.2f} > {max_load}: waiting {interval:.0f}'
              ' s', flush=True)
        time.sleep(interval)
        load = load_average()
    if load > max_load:
        print(f'# load average still {load:.2f}: measuring anyway (the '
              'figures below are pessimistic)', flush=True)
    return load


def machine_line(threads=None) -> str:
    """CPU model, cores/threads used, torch version and date, one line."""
    import torch
    threads = torch.get_num_threads() if threads is None else threads
    date = datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')
    return (f'machine: {cpu_model()}, {os.cpu_count()} logical CPUs, '
            f'{threads} torch threads | torch {torch.__version__} | '
            f'python {platform.python_version()} | {date} | '
            f'load avg {load_average():.2f}')


# ---------------------------------------------------------------------------
# Configs and models
# ---------------------------------------------------------------------------


def load_config(path: str):
    """A config of this repository (path relative to it), with mmseg's and
    our modules registered."""
    from mmengine.config import Config
    from mmseg.utils import register_all_modules

    import deeplabplus_mm  # noqa: F401
    register_all_modules(init_default_scope=True)
    return Config.fromfile(os.path.join(REPO, path))


def build_segmentor(cfg):
    """``cfg.model`` with seeded random weights (no pretrained
    initialisation, nothing downloaded) and SyncBN reverted to BN."""
    import torch
    from mmengine.model import revert_sync_batchnorm
    from mmseg.registry import MODELS
    cfg.model.pretrained = None
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    return revert_sync_batchnorm(MODELS.build(cfg.model))


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------


def measure(fn, warmup: int = 1, repeats: int = 3):
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times; returns
    the list of wall times (seconds)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def median(values):
    return statistics.median(values)


def busy_ticks(children: bool = False):
    """(all CPUs' busy ticks, this process's ticks) or None off Linux;
    ``children``: this process's ticks include its children once waited
    for (cutime + cstime)."""
    try:
        with open('/proc/stat') as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        with open('/proc/self/stat') as f:
            own = f.read().rsplit(')', 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    # user nice system idle iowait irq softirq steal: idle and iowait are
    # not busy; guest time is already part of user.
    busy = sum(fields[:8]) - fields[3] - fields[4]
    # utime + stime (all threads) [+ cutime + cstime]
    return busy, sum(int(v) for v in own[11:15 if children else 13])


class Interference:
    """CPU time other processes used while something ran, in cores.

    On a shared machine a foreign process that takes a core from one of
    torch's OpenMP threads makes the other threads wait at every barrier: a
    2-thread forward can run several times slower. ``measure_clean`` uses
    this to retry the repeats that were disturbed.
    """
    HZ = os.sysconf('SC_CLK_TCK') if hasattr(os, 'sysconf') else 100

    def __enter__(self):
        self.start = busy_ticks()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        end = busy_ticks()
        if self.start is None or end is None:
            self.cores = 0.
        else:
            other = (end[0] - self.start[0]) - (end[1] - self.start[1])
            self.cores = max(other, 0) / self.HZ / max(self.wall, 1e-9)


def measure_clean(fn, repeats=3, max_other_cores=0.25, max_tries=None):
    """Time ``fn`` until ``repeats`` runs saw less than ``max_other_cores``
    of foreign CPU use, or ``max_tries`` runs were made (default 3x
    ``repeats``). Returns ``(times, other_cores)`` of the clean runs, or of
    all runs when too few were clean."""
    max_tries = max_tries or 3 * repeats
    clean, every = [], []
    while len(clean) < repeats and len(every) < max_tries:
        with Interference() as probe:
            fn()
        every.append((probe.wall, probe.cores))
        if probe.cores < max_other_cores:
            clean.append(every[-1])
    chosen = clean if len(clean) >= repeats else every
    return [t for t, _ in chosen], [c for _, c in chosen]


def gemm_gflops(n: int = 2048, warmup: int = 2, repeats: int = 7) -> float:
    """Dense float32 ``torch.mm`` of two n x n matrices: median GFLOP/s
    (2 n^3 floating-point operations each)."""
    import torch
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen)
    b = torch.randn(n, n, generator=gen)
    out = torch.empty(n, n)
    times = measure(lambda: torch.mm(a, b, out=out), warmup, repeats)
    return 2 * n**3 / median(times) / 1e9


# ---------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------


def _status_kb(field: str):
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class PeakRSS:
    """Peak resident memory of this process above a baseline, in MiB.

    ``start()`` takes the current RSS as the baseline and, where Linux
    allows it, resets the high-water mark to it (``/proc/self/clear_refs``),
    so that ``delta_mib()`` is the growth caused by what ran in between.
    Elsewhere it falls back to ``ru_maxrss`` minus the baseline (exact when
    nothing before ``start()`` peaked higher than the baseline).
    """

    def start(self):
        import gc
        gc.collect()
        self.reset = False
        try:
            with open('/proc/self/clear_refs', 'w') as f:
                f.write('5')
            self.reset = True
        except OSError:
            pass
        rss = _status_kb('VmRSS')
        if rss is None:
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.baseline_kb = rss
        return self

    def peak_kb(self) -> int:
        hwm = _status_kb('VmHWM') if self.reset else None
        if hwm is None:
            hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return hwm

    def delta_mib(self) -> float:
        return max(self.peak_kb() - self.baseline_kb, 0) / 1024

    @property
    def baseline_mib(self) -> float:
        return self.baseline_kb / 1024


# ---------------------------------------------------------------------------
# Child processes
# ---------------------------------------------------------------------------


def run_child(script: str, spec: dict, timeout: float = 1800,
              env=None, python=None) -> dict:
    """Run ``python SCRIPT --child JSON`` (this interpreter unless
    ``python`` names another) and return the dict it printed as its last
    line (``{'error': ...}`` when it failed)."""
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.run(
        [python or sys.executable, script, CHILD_FLAG, json.dumps(spec)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        timeout=timeout, env=full_env, cwd=REPO)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('{')]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return dict(error=f'exit {proc.returncode}: ' + ' | '.join(tail))
    return json.loads(lines[-1])


def child_spec():
    """The spec of a child invocation, or None in the parent."""
    if len(sys.argv) == 3 and sys.argv[1] == CHILD_FLAG:
        return json.loads(sys.argv[2])
    return None


def child_reply(result: dict):
    print(json.dumps(result), flush=True)


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------


def table(headers, rows) -> str:
    """A Markdown table (readable as plain text too)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r):
        return '| ' + ' | '.join(c.ljust(w) for c, w in zip(r, widths)) + ' |'

    sep = '|' + '|'.join('-' * (w + 2) for w in widths) + '|'
    return '\n'.join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def fmt(value, spec='.2f', missing='-'):
    if value is None or (isinstance(value, float) and value != value):
        return missing
    return format(value, spec)


def set_threads(threads):
    """``torch.set_num_threads``; 0 / None keeps torch's default."""
    import torch
    if threads:
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


def add_common_args(parser, quick_help):
    parser.add_argument('--quick', action='store_true', help=quick_help)
    parser.add_argument('--threads', type=int, default=0,
                        help='torch threads (default: torch\'s choice, one '
                        'per core)')
    parser.add_argument('--max-load', type=float, default=1.3,
                        help='wait while the 1-minute load average is above '
                        'this (at most --patience seconds)')
    parser.add_argument('--patience', type=float, default=180.,
                        help='longest wait for a quiet machine, seconds')
    parser.add_argument('--max-other-cores', type=float, default=0.25,
                        help='retry a timed run (up to 3 times) when other '
                        'processes used more CPU than this while it ran')
    return parser


def start_run(args):
    """Wait for a quiet machine, set the threads, print the command and the
    machine line; returns ``(load average found, torch threads)``."""
    load = wait_for_quiet(args.max_load, args.patience)
    threads = set_threads(args.threads)
    print(describe_run())
    print(machine_line(threads), flush=True)
    return load, threads


def entry(main, **children):
    """The ``__main__`` of a benchmark: in a child process (``--child
    JSON``) run ``children[spec['kind']](spec)`` and print its result;
    otherwise exit with ``main()``."""
    spec = child_spec()
    if spec is None:
        sys.exit(main())
    kind = spec.pop('kind')
    child_reply(children[kind](spec))


def describe_run(args=None):
    """The command line, as a user would type it."""
    return 'command: python ' + ' '.join(
        [os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:])
