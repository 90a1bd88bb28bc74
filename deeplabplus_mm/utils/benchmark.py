"""The machinery of the benchmarks in ``tools/benchmarks/`` (the commands).

Shared here, importable by the tests: arguments and the machine line,
timing (round-robin over variants, retrying runs that other processes
disturbed, the float32 GEMM reference rate), peak memory, child processes,
tables, the zoo configs' models as the benchmarks build and step them, and
the full-size reference checkpoint. How each figure is measured:
``docs/benchmarks.md``.
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

from . import REPO

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

# Runs a command, prints its wall time, CPU time (with the children it
# waited for), peak RSS, status and output. Linux counts a parent's memory
# in a child's ru_maxrss when the child was forked from it, so commands are
# started from this small process, not from a benchmark's large one.
_LAUNCHER = """
import json, os, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT)
out = proc.stdout.read().decode(errors='replace')
_, status, use = os.wait4(proc.pid, 0)
print(json.dumps(dict(seconds=time.perf_counter() - start, out=out,
                      cpu_s=use.ru_utime + use.ru_stime,
                      maxrss_mib=use.ru_maxrss / 1024,
                      code=os.waitstatus_to_exitcode(status))))
"""


def run_command(argv, env=None):
    """Run ``argv`` (a fresh process, from ``REPO``); returns its
    ``seconds`` (wall), ``cpu_s``, ``maxrss_mib``, exit ``code``, ``out``
    (stdout and stderr) and ``other_cores`` (:class:`Interference`)."""
    with Interference(children=True) as probe:
        proc = subprocess.run([sys.executable, '-c', _LAUNCHER, *argv],
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
    """A benchmark's ``__main__``: with ``--child JSON`` print the result of
    ``children[spec.pop('kind')](spec)``, otherwise exit with ``main()``."""
    if len(sys.argv) != 3 or sys.argv[1] != CHILD_FLAG:
        sys.exit(main())
    spec = json.loads(sys.argv[2])
    print(json.dumps(children[spec.pop('kind')](spec)), flush=True)


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


# --- Models of the zoo configs ---------------------------------------------

CONFIGS = {  # case -> config (configs/<algorithm>/<file>); 513x513 VOC-aug
    f'{b}-d{s}': f'deeplabv3plus_{b}-d{s}_4xb4-30k_voc12aug-513x513.py'
    for b in ('xception41', 'xception65', 'xception71', 'r101')
    for s in (8, 16)}
CONFIGS.update({
    f'mobilenetv2{m}-d16': f'deeplabv3_mobilenetv2{m}-d16_4xb4-30k_'
    'voc12aug-513x513.py' for m in ('', '-dm05')})
CONFIGS['mobilenetv2-ade20k-d16'] = ('deeplabv3plus_mobilenetv2-d16_4xb4-'
                                     '150k_ade20k-257x257.py')
CONFIGS['dpc-xception71-d16'] = ('dpc_xception71-d16_4xb2-90k_cityscapes-'
                                 '769x769.py')


def config_path(case):
    name = CONFIGS[case]
    return osp.join(REPO, 'configs', name.split('_')[0], name)


def build_case(case):
    """A case's segmentor (:func:`deeplabplus_mm.apis.build_model`, seed
    0)."""
    from ..apis import build_model
    return build_model(config_path(case), seed=0)


class Network(nn.Module):
    """The eval forward (``encode_decode``) at one size, as a module."""

    def __init__(self, model, size):
        super().__init__()
        self.model, self.metas = model, [dict(img_shape=(size, size))]

    def forward(self, x):
        return self.model.encode_decode(x, self.metas)


def _flop_analyzer(net, shape):
    from mmengine.analysis import FlopAnalyzer
    analyzer = FlopAnalyzer(net.eval(), (torch.zeros(shape), ))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return analyzer


@torch.no_grad()
def count_macs(model, size):
    """mmengine's ``FlopAnalyzer`` at size x size: (total, by operator)."""
    analyzer = _flop_analyzer(Network(model, size), (1, 3, size, size))
    return analyzer.total(), dict(analyzer.by_operator())


def counter_unit():
    """What FlopAnalyzer counts for one multiply-add (a 1x1 conv of one
    channel and one pixel without bias)."""
    return _flop_analyzer(nn.Conv2d(1, 1, 1, bias=False),
                          (1, 1, 1, 1)).total()


@torch.no_grad()
def conv_breakdown(model, size):
    """Conv MACs by kind (1x1, dense kxk, depthwise) and BN elements."""
    counts = dict(conv_1x1=0, conv_dense=0, conv_depthwise=0, bn_elements=0)

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            kind = ('conv_depthwise' if module.groups > 1 else
                    'conv_1x1' if k == 1 else 'conv_dense')
            counts[kind] += (output.numel() * module.in_channels //
                             module.groups * k)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            counts['bn_elements'] += output.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    Network(model, size).eval()(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return counts


@torch.no_grad()
def calibrate_bn(model, size, batch=2, batches=1, seed=None):
    """Give every BatchNorm the statistics of random images in [-1, 1]
    (``batches`` batches of ``batch`` x 3 x size x size, from a generator
    seeded with ``seed``, else torch's global one): running statistics
    reset, then the cumulative average of the batches, momenta restored.
    A random segmentor with default statistics predicts one class
    everywhere; calibrated, its predictions vary and its activations stay
    in range (no denormal floats). Returns the model in eval mode."""
    from torch.nn.modules.batchnorm import _BatchNorm
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
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
    """One variant of a case as a step; returns ``(step, model,
    compile_s)``. eval: ``encode_decode`` of a batch of 1 under
    ``no_grad``; parts (``+``-joined) ``fuse`` (BN folded), ``cl``
    (channels_last), ``compile`` (``torch.compile``, inductor freezing).
    train: ``forward(mode='loss')`` + backward of ``batch`` images (with
    ``optimizer``: the config's optimizer step); parts ``cl`` (weights and
    input channels_last), ``cl-input`` (the input only, as
    ``train_channels_last`` configs), ``bf16`` (autocast). GPU steps end
    synchronised. ``on_ready()`` runs once the model and input exist."""
    from ..apis.inference import build_model, load_config
    parts, device = variant.split('+'), torch.device(device)
    torch.backends.cudnn.benchmark = device.type == 'cuda'
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
        on_ready and on_ready()
        if 'compile' in parts:
            import torch._inductor.config as inductor_config
            inductor_config.freezing = True  # constant weights: prepacked
            net = torch.compile(net)
            with torch.no_grad():
                compile_s = time.perf_counter()
                net(x)
                compile_s = time.perf_counter() - compile_s

        def step():
            with torch.no_grad():
                net(x)
            synchronize(device)

        return step, model, compile_s
    model.train()
    if variant == 'cl-input':
        from ..engine import train_channels_last
        train_channels_last(model)
    else:
        model.to(memory_format=fmt)
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    gen = torch.Generator().manual_seed(0)  # random images and labels
    x = torch.randn(batch, 3, size, size, generator=gen).to(device)
    x, samples = x.contiguous(memory_format=fmt), []
    for _ in range(batch):
        samples.append(SegDataSample(metainfo=dict(img_shape=(size, size),
                                                   pad_shape=(size, size))))
        samples[-1].gt_sem_seg = PixelData(data=torch.randint(
            0, model.decode_head.num_classes, (1, size, size),
            generator=gen).to(device))
    if optimizer:
        from mmengine.optim import build_optim_wrapper
        optim = build_optim_wrapper(model, cfg.optim_wrapper)
    on_ready and on_ready()

    def step():
        if not optimizer:
            model.zero_grad(set_to_none=True)
        with torch.autocast(device.type, torch.bfloat16,
                            enabled='bf16' in parts):
            losses = model(x, samples, mode='loss')
            loss = sum(v for k, v in losses.items() if 'loss' in k)
        if optimizer:
            optim.update_params(loss)  # backward, step, zero_grad
        else:
            loss.backward()
        synchronize(device)

    return step, model, compile_s


# --- The reference checkpoint (convert.py, read.py) ------------------------


# The zoo's VOC model, whose full training checkpoint the benchmarks read.
REFERENCE_CONFIG = ('configs/deeplabv3plus/'
                    'deeplabv3plus_xception65-d16_4xb4-30k_voc12aug-513x513.py')


def trainable(name):
    """Whether TF trains a model variable (all but BN's moving statistics),
    i.e. whether a training checkpoint holds a ``/Momentum`` slot for it."""
    return not name.endswith(('/moving_mean', '/moving_variance'))


def checkpoint_tensors(subset=None):
    """name -> array of a training checkpoint of :data:`REFERENCE_CONFIG`'s
    model as TF leaves it (the model variables, the first ``subset`` in
    name order, a ``/Momentum`` slot for each trainable one and
    ``global_step``), of seeded random float32 values (their size, not
    their values, is what reading and converting cost)."""
    import numpy as np

    from ..converters import load_model_config, tf_variables
    variables = tf_variables(load_model_config(osp.join(REPO,
                                                        REFERENCE_CONFIG)))
    rng = np.random.default_rng(0)
    tensors = {'global_step': np.asarray(30000, np.int64)}
    for name in sorted(variables)[:subset]:
        slots = ('', '/Momentum') if trainable(name) else ('', )
        for slot in slots:
            tensors[name + slot] = rng.standard_normal(
                variables[name], np.float32) * np.float32(0.1)
    return tensors


def reference_checkpoint(cache, subset=None, archive=False):
    """The prefix of the cached reference checkpoint (~330 MB in full, as a
    training run leaves it), written by our writer on first use; with
    ``archive``, ``(prefix, the folder as a .tar.gz)`` as the zoo ships
    it."""
    import tarfile

    from ..converters import write_checkpoint
    name = 'xception65_synthetic' + (f'_{subset}' if subset else '')
    folder, tar = osp.join(cache, name), osp.join(cache, name + '.tar.gz')
    prefix = osp.join(folder, 'model.ckpt-30000')
    if not osp.isfile(prefix + '.index'):
        os.makedirs(folder, exist_ok=True)
        write_checkpoint(prefix, checkpoint_tensors(subset))
        print(f'# wrote {prefix}', flush=True)
    if archive and not osp.isfile(tar):
        with tarfile.open(tar + '.tmp', 'w:gz', compresslevel=6) as f:
            f.add(folder, arcname=name)
        os.replace(tar + '.tmp', tar)
        print(f'# wrote {tar}', flush=True)
    return (prefix, tar) if archive else prefix


def checkpoint_bytes(prefix):
    folder, base = osp.split(prefix)
    return sum(osp.getsize(osp.join(folder, f)) for f in os.listdir(folder)
               if f.startswith(base + '.'))


def wanted(what, name):
    """Whether a ``what`` read ('needed', 'all', 'keep') takes ``name``:
    'needed' skips the Momentum slots and ``global_step``."""
    return what != 'needed' or not (name.endswith('/Momentum')
                                    or name == 'global_step')


def read_child(spec):
    """Child: our reader over ``src``: the tensors ``what`` wants, each
    dropped once read ('keep': ``load_checkpoint``, all kept)."""
    from ..converters import load_checkpoint, open_checkpoint
    mem = PeakRSS().start()
    wall, cpu = time.perf_counter(), time.process_time()
    if spec['what'] == 'keep':
        count = len(load_checkpoint(spec['src'], verify=spec['verify']))
    else:
        with open_checkpoint(spec['src']) as reader:
            names = [n for n in reader.names() if wanted(spec['what'], n)]
            for name in names:
                reader.get(name, verify=spec['verify'])
            count = len(names)
    return dict(seconds=time.perf_counter() - wall, tensors=count,
                cpu=time.process_time() - cpu, rss_mib=mem.delta_mib())


# TensorFlow's reader in a process that needs nothing but TensorFlow (a
# venv with only tensorflow-cpu will do): read_child's measurements.
_TF_READ = """
import json, sys, time
def status(field):
    with open('/proc/self/status') as f:
        return int(next(ln.split()[1] for ln in f if ln.startswith(field)))
import tensorflow as tf
spec, kept, count = json.loads(sys.argv[1]), [], 0
with open('/proc/self/clear_refs', 'w') as f:
    f.write('5')
rss, wall, cpu = status('VmRSS'), time.perf_counter(), time.process_time()
reader = tf.train.load_checkpoint(spec['src'])
for name in reader.get_variable_to_shape_map():
    if spec['what'] != 'needed' or not (name.endswith('/Momentum')
                                        or name == 'global_step'):
        value, count = reader.get_tensor(name), count + 1
        kept += [value] if spec['what'] == 'keep' else []
print(json.dumps(dict(seconds=time.perf_counter() - wall, tensors=count,
                      cpu=time.process_time() - cpu, version=tf.__version__,
                      rss_mib=(status('VmHWM') - rss) / 1024)))
"""


def tf_read(spec, python):
    """:func:`read_child`'s measurements of TensorFlow's
    ``tf.train.load_checkpoint`` in a fresh ``python`` process."""
    return child_result([python, '-c', _TF_READ, json.dumps(spec)])
