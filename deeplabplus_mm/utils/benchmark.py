"""The machinery of the benchmarks in ``tools/benchmarks/``.

The scripts there are the commands; what they share is here, importable by
the tests: the machine and its load, timing (warm-up, median of repeats,
retries of runs other processes disturbed, round-robin over variants, the
float32 GEMM reference rate), peak memory, child processes (one per case:
``script --child JSON`` prints a JSON result), tables and arguments, the
models of the zoo configs as the benchmarks build and step them, and the
full-size reference checkpoint the converter and reader benchmarks use.
Nothing here is timed by the tests; they run the scripts.
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
import torch.nn as nn

from . import REPO, tf_refs_dir

CHILD_FLAG = '--child'
DEFAULT_CACHE = osp.join(tempfile.gettempdir(), 'deeplabplus_bench')

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
    threads = torch.get_num_threads() if threads is None else threads
    date = datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')
    return (f'machine: {cpu_model()}, {os.cpu_count()} logical CPUs, '
            f'{threads} torch threads | torch {torch.__version__} | '
            f'python {platform.python_version()} | {date} | '
            f'load avg {load_average():.2f}')


def gpu_line(device) -> str:
    """The GPU's name and memory, CUDA and cuDNN versions, one line."""
    props = torch.cuda.get_device_properties(device)
    return (f'GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB | CUDA '
            f'{torch.version.cuda} | cuDNN {torch.backends.cudnn.version()}')


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

    def __init__(self, children: bool = False):
        # children: what ran is a child process, waited for in the block
        self.children = children

    def __enter__(self):
        self.start = busy_ticks(self.children)
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        end = busy_ticks(self.children)
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


def round_robin(steps: dict, warmup: int, repeats: int,
                max_other_cores: float):
    """Time every step of ``steps`` (name -> callable) once per round, so
    that drifting load hits all alike: ``warmup`` untimed rounds, then
    ``repeats`` rounds; a run during which other processes took more than
    ``max_other_cores`` is retried (up to 3 times). Returns ``(times,
    other_cores)``, name -> list."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    times = {k: [] for k in steps}
    others = {k: [] for k in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            t, o = measure_clean(step, 1, max_other_cores, max_tries=3)
            times[name] += t
            others[name] += o
    return times, others


GEMM_N = 2048


def gemm_step(device='cpu', n: int = GEMM_N):
    """A dense float32 ``torch.mm`` of two n x n matrices, as a step (on a
    GPU synchronised); 2 n^3 floating-point operations."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device)
    b = torch.randn(n, n, generator=gen).to(device)
    out = torch.empty(n, n, device=device)

    def step():
        torch.mm(a, b, out=out)
        synchronize(device)

    return step


def gemm_rate(seconds: float, n: int = GEMM_N) -> float:
    """GFLOP/s of one n x n x n GEMM that took ``seconds``."""
    return 2 * n**3 / seconds / 1e9


def gemm_gflops(device='cpu', warmup: int = 2, repeats: int = 7) -> float:
    """The median GFLOP/s of :func:`gemm_step`."""
    return gemm_rate(median(measure(gemm_step(device), warmup, repeats)))


def synchronize(device):
    """Wait for a GPU's queued work (nothing on the CPU)."""
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize(device)


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


def entry(main, **children):
    """The ``__main__`` of a benchmark: in a child process (``--child
    JSON``) run ``children[spec['kind']](spec)`` and print its result;
    otherwise exit with ``main()``."""
    spec = child_spec()
    if spec is None:
        sys.exit(main())
    kind = spec.pop('kind')
    child_reply(children[kind](spec))


# ---------------------------------------------------------------------------
# Output and arguments
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


def describe_run():
    """The command line, as a user would type it."""
    return 'command: python ' + ' '.join(
        [os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:])


def set_threads(threads):
    """``torch.set_num_threads``; 0 / None keeps torch's default."""
    if threads:
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


def add_common_args(parser, quick_help):
    """``--quick`` and the threads and quiet-machine options."""
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


def parser_for(doc, quick_help, cache=False, repeats=None):
    """A benchmark's argument parser: its docstring as help, the options of
    :func:`add_common_args` and, when asked, ``--cache`` (where generated
    inputs are kept) and ``--repeats`` (with that help text)."""
    parser = add_common_args(argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawTextHelpFormatter),
        quick_help)
    if cache:
        parser.add_argument('--cache', default=DEFAULT_CACHE,
                            help='where generated inputs are kept')
    if repeats is not None:
        parser.add_argument('--repeats', type=int, default=None,
                            help=repeats)
    return parser


def fill_defaults(args, **defaults):
    """Set each unset (None or 0) argument ``name`` of ``defaults``
    (``name=(quick value, full value)``) by ``args.quick``."""
    for name, (quick, full) in defaults.items():
        if not getattr(args, name):
            setattr(args, name, quick if args.quick else full)
    return args


def start_run(args):
    """Wait for a quiet machine, set the threads, print the command and the
    machine line; returns ``(load average found, torch threads)``."""
    load = wait_for_quiet(args.max_load, args.patience)
    threads = set_threads(args.threads)
    print(describe_run())
    print(machine_line(threads), flush=True)
    return load, threads


# ---------------------------------------------------------------------------
# Models of the zoo configs (model.py, deploy.py)
# ---------------------------------------------------------------------------

CONFIGS = {  # case -> configs/<family folder>/<file>
    'xception65-d16':
    'deeplabv3plus_xception65-d16_4xb4-30k_voc12aug-513x513.py',
    'xception65-d8':
    'deeplabv3plus_xception65-d8_4xb4-30k_voc12aug-513x513.py',
    'r101-d8': 'deeplabv3plus_r101-d8_4xb4-30k_voc12aug-513x513.py',
    'r101-d16': 'deeplabv3plus_r101-d16_4xb4-30k_voc12aug-513x513.py',
    # The other backbones (training channels_last per family; xception41 is
    # also the smoke runs' small model).
    'xception41-d16':
    'deeplabv3plus_xception41-d16_4xb4-30k_voc12aug-513x513.py',
    'xception41-d8':
    'deeplabv3plus_xception41-d8_4xb4-30k_voc12aug-513x513.py',
    'xception71-d16':
    'deeplabv3plus_xception71-d16_4xb4-30k_voc12aug-513x513.py',
    'xception71-d8':
    'deeplabv3plus_xception71-d8_4xb4-30k_voc12aug-513x513.py',
    # the zoo's other families
    'mobilenetv2-d16':
    'deeplabv3_mobilenetv2-d16_4xb4-30k_voc12aug-513x513.py',
    'mobilenetv2-dm05-d16':
    'deeplabv3_mobilenetv2-dm05-d16_4xb4-30k_voc12aug-513x513.py',
    'mobilenetv2-ade20k-d16':
    'deeplabv3plus_mobilenetv2-d16_4xb4-150k_ade20k-257x257.py',
    'dpc-xception71-d16':
    'dpc_xception71-d16_4xb2-90k_cityscapes-769x769.py',
}


def config_path(case: str) -> str:
    """The config file of a case of :data:`CONFIGS`."""
    name = CONFIGS[case]
    return osp.join(REPO, 'configs', name.split('_')[0], name)


def build_case(case: str):
    """A case's segmentor: :func:`deeplabplus_mm.apis.build_model`, seed
    0."""
    from ..apis import build_model
    return build_model(config_path(case), seed=0)


class Network(nn.Module):
    """The eval forward as a module: ``encode_decode`` for one size."""

    def __init__(self, model, size):
        super().__init__()
        self.model = model
        self.metas = [dict(img_shape=(size, size))]

    def forward(self, x):
        return self.model.encode_decode(x, self.metas)


def count_macs(model, size):
    """(total, by operator) of mmengine's FlopAnalyzer at size x size."""
    from mmengine.analysis import FlopAnalyzer
    analyzer = FlopAnalyzer(Network(model, size).eval(),
                            (torch.zeros(1, 3, size, size), ))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    with torch.no_grad():
        total = analyzer.total()
    return total, dict(analyzer.by_operator())


def counter_unit():
    """What FlopAnalyzer counts for 1 multiply-add: a 1x1 conv, 1 channel,
    1 pixel, no bias is exactly one multiply-add."""
    from mmengine.analysis import FlopAnalyzer
    conv = torch.nn.Conv2d(1, 1, 1, bias=False)
    return FlopAnalyzer(conv, (torch.zeros(1, 1, 1, 1), )).total()


def conv_breakdown(model, size):
    """Conv MACs by kind (1x1, dense kxk, depthwise) and BN elements."""
    counts = dict(conv_1x1=0, conv_dense=0, conv_depthwise=0, bn_elements=0)

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            macs = output.numel() * module.in_channels // module.groups * k
            kind = ('conv_depthwise' if module.groups > 1 else
                    'conv_1x1' if k == 1 else 'conv_dense')
            counts[kind] += macs
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            counts['bn_elements'] += output.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        Network(model, size).eval()(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return counts


def train_batch(batch, size, num_classes, device='cpu', memory_format=None,
                seed=0):
    """Random images (``batch`` x 3 x size x size) and their
    ``SegDataSample``s with random labels, from a generator seeded with
    ``seed``: a training step's input."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, size, size, generator=gen).to(device)
    samples = []
    for _ in range(batch):
        sample = SegDataSample(
            metainfo=dict(img_shape=(size, size), pad_shape=(size, size)))
        sample.gt_sem_seg = PixelData(data=torch.randint(
            0, num_classes, (1, size, size), generator=gen).to(device))
        samples.append(sample)
    return x.contiguous(
        memory_format=memory_format or torch.contiguous_format), samples


@torch.no_grad()
def calibrate_bn(model, size, batch=2, batches=1, seed=None):
    """Give every BatchNorm of ``model`` the statistics measured on random
    images in [-1, 1] (``batches`` batches of ``batch`` x 3 x size x size;
    from a generator seeded with ``seed``, else torch's global one): their
    running statistics are reset and become the batches' cumulative
    average. A randomly initialised segmentor with default statistics
    predicts one class everywhere; calibrated, its predictions vary over an
    image and its activations stay in range (no denormal floats). Returns
    the model in eval mode, its norms' momenta as they were."""
    from torch.nn.modules.batchnorm import _BatchNorm
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average of the batches below
    gen = None if seed is None else torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(batches):
        model(torch.rand(batch, 3, size, size, generator=gen) * 2 - 1,
              mode='tensor')
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return model.eval()


def prepare(case, mode, variant, size, batch=1, device='cpu',
            optimizer=False, on_ready=None):
    """Build one variant of a case; returns ``(step, model, compile_s)``.

    eval: ``encode_decode`` of a batch of 1 under ``no_grad``; the variant's
    parts: ``fuse`` (BN folded), ``cl`` (channels_last), ``compile``
    (``torch.compile``, inductor freezing). train: ``forward(mode='loss')``
    + backward of ``batch`` images, ``optimizer``: + the config's optimizer
    step; parts ``cl`` (weights and input channels_last), ``cl-input`` (only
    the input, as ``train_channels_last`` configs), ``bf16`` (autocast).
    On a GPU each step ends synchronised. ``on_ready`` is called once the
    model and its input exist, before compilation and any step.
    """
    from ..apis.inference import build_model, load_config
    parts = variant.split('+')
    device = torch.device(device)
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True
    cfg = load_config(config_path(case))
    model = build_model(cfg, seed=0).to(device)
    fmt = torch.channels_last if 'cl' in parts else torch.contiguous_format
    compile_s = None
    if mode == 'eval':
        from ..models.utils import prepare_for_inference
        prepare_for_inference(model.eval(), 'fuse' in parts, 'cl' in parts)
        net = Network(model, size).eval()
        x = torch.randn(1, 3, size, size).to(device).contiguous(
            memory_format=fmt)
        if on_ready:
            on_ready()
        if 'compile' in parts:
            import torch._inductor.config as inductor_config
            inductor_config.freezing = True  # constant weights: prepacked
            net = torch.compile(net)
            with torch.no_grad():
                start = time.perf_counter()
                net(x)
                compile_s = time.perf_counter() - start

        def step():
            with torch.no_grad():
                net(x)
            synchronize(device)

        return step, model, compile_s

    model.train()
    if variant == 'cl-input':  # what train_channels_last=True configs do
        from ..engine import train_channels_last
        train_channels_last(model)
    else:
        model.to(memory_format=fmt)
    x, samples = train_batch(batch, size, model.decode_head.num_classes,
                             device, fmt)
    optim = None
    if optimizer:
        from mmengine.optim import build_optim_wrapper
        optim = build_optim_wrapper(model, cfg.optim_wrapper)
    if on_ready:
        on_ready()

    def step():
        if optim is None:
            model.zero_grad(set_to_none=True)
        with torch.autocast(device.type, torch.bfloat16,
                            enabled='bf16' in parts):
            losses = model(x, samples, mode='loss')
            loss = sum(v for k, v in losses.items() if 'loss' in k)
        if optim is None:
            loss.backward()
        else:
            optim.update_params(loss)  # backward, step, zero_grad
        synchronize(device)

    return step, model, compile_s


# ---------------------------------------------------------------------------
# The reference checkpoint (convert.py, read.py)
# ---------------------------------------------------------------------------

REFERENCE_CASE = 'xception65_os16'


def reference_refs() -> str:
    """The TF references' folder, or exit with the reason."""
    refs = tf_refs_dir()
    if not osp.isfile(osp.join(refs, REFERENCE_CASE, 'variables.tsv')):
        sys.exit(f'error: TF references not found at {refs} (set '
                 'DEEPLAB_TF_REFS)')
    return refs


def checkpoint_tensors(refs, subset=None):
    """name -> array of a training checkpoint of the reference model: every
    variable of ``xception65_os16/variables.tsv`` (the first ``subset``,
    when given) with the values of the references' ``weights.py``, a
    ``<name>/Momentum`` slot for each trainable one and ``global_step``."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'tf_refs_weights', osp.join(refs, 'weights.py'))
    weights = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(weights)
    variables = weights.read_variables_tsv(
        osp.join(refs, REFERENCE_CASE, 'variables.tsv'))
    tensors = {'global_step': weights.variable_value('global_step', (),
                                                     'int64')}
    for name, shape, dtype, trainable in variables[:subset]:
        tensors[name] = weights.variable_value(name, shape, dtype)
        if trainable:
            slot = f'{name}/Momentum'
            tensors[slot] = weights.variable_value(slot, shape, dtype)
    return tensors


def reference_checkpoint(cache, subset=None, archive=False):
    """The prefix of the cached reference checkpoint (~330 MB in full, as a
    training run leaves it), written by our writer on first use; with
    ``archive``, ``(prefix, the folder as a .tar.gz)`` as the model zoo
    ships it."""
    import tarfile

    from ..converters import write_checkpoint
    name = 'xception65_momentum' + (f'_{subset}' if subset else '')
    folder = osp.join(cache, name)
    prefix = osp.join(folder, 'model.ckpt-30000')
    tar = osp.join(cache, f'{name}.tar.gz')
    if not osp.isfile(prefix + '.index'):
        os.makedirs(folder, exist_ok=True)
        start = time.perf_counter()
        write_checkpoint(prefix, checkpoint_tensors(reference_refs(),
                                                    subset))
        print(f'# wrote {prefix} in {time.perf_counter() - start:.1f} s',
              flush=True)
    if not archive:
        return prefix
    if not osp.isfile(tar):
        start = time.perf_counter()
        tmp = f'{tar}.tmp{os.getpid()}'
        with tarfile.open(tmp, 'w:gz', compresslevel=6) as f:
            f.add(folder, arcname=name)
        os.replace(tmp, tar)
        print(f'# wrote {tar} in {time.perf_counter() - start:.1f} s',
              flush=True)
    return prefix, tar


def checkpoint_bytes(prefix):
    """The size of a checkpoint's files (index and data)."""
    folder, base = osp.split(prefix)
    return sum(
        osp.getsize(osp.join(folder, f)) for f in os.listdir(folder)
        if f.startswith(base + '.'))
