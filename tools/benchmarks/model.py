"""Speed, memory and FLOPs of DeepLab v3+ Xception-65 against mmseg's R101-d8.

    python tools/benchmarks/model.py            # 513x513, all cases
    python tools/benchmarks/model.py --quick    # 257x257, fewer repeats
    python tools/benchmarks/model.py --cases xception65-d16 --modes eval \\
        --variants base,fuse,fuse+cl

Models are built from our configs (SyncBN reverted to BN, random weights,
no ``init_weights``, R101 with ``pretrained=None``).

* Time: one child process per (case, mode) builds every variant and times
  them round-robin, with a dense float32 2048^3 ``torch.mm`` as one more
  entry (the reference rate, under the same conditions): ``warmup`` untimed
  rounds, then the median of ``repeats`` rounds. A run during which other
  processes took more than ``--max-other-cores`` of CPU (from
  ``/proc/stat``) is retried up to 3 times: on a shared machine a foreign
  process that preempts one OpenMP thread stalls the others at every
  barrier.
* Memory: one child process per (case, mode, variant): peak RSS above the
  RSS once the model and input exist (activations, workspaces, compiled
  code; not the weights), over two steps.
* ``--omp-wait-policy default,PASSIVE`` times each (case, mode) once per
  policy (libgomp reads it at start-up).

* eval: ``encode_decode`` (backbone, head, resize to the input) of a batch of
  1 under ``torch.no_grad``. Variants accumulate: ``base``; ``fuse`` (BN
  folded into convs by :func:`deeplabplus_mm.models.utils.fuse_conv_bn`,
  ResNet's plain conv/BN pairs included); ``fuse+cl`` (channels_last: what
  testing runs by default, ``FastInferenceHook``); ``fuse+cl+compile``
  (``torch.compile`` with inductor freezing; compile time reported
  separately).
* train: ``forward(mode='loss')`` + ``backward`` of a batch of 2 (BN in
  training mode cannot see the image-pooling branch's 1x1 map with a batch
  of 1), per image. Variants: ``base``; ``cl`` (weights and input
  channels_last); ``cl-input`` (only the input channels_last, which carries
  the network: what configs with ``train_channels_last = True`` do,
  :class:`~deeplabplus_mm.engine.ChannelsLastTrainingHook`).

FLOPs: mmengine's ``FlopAnalyzer`` on the unfused eval model. It counts one
per multiply-add of conv/linear layers (MACs, as fvcore does; checked on a
1x1 conv) plus a few per element for norms and resizes; achieved FLOP/s use
2 x that total. A hook count splits conv MACs into 1x1, dense kxk and
depthwise.
"""
import argparse
import os.path as osp
import time

import torch
import torch.nn as nn

import common

CONFIGS = {  # configs/<family folder>/<file>
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
DEFAULT_CASES = ['xception65-d16', 'xception65-d8', 'r101-d8']
EVAL_VARIANTS = ['base', 'fuse', 'fuse+cl', 'fuse+cl+compile']
TRAIN_VARIANTS = ['base', 'cl', 'cl-input']
TF_ZOO_MULTIPLY_ADDS = 54.17e9  # xception65, OS 16, 513x513 (model_zoo.md)
TRAIN_BATCH = 2


def build_model(case):
    name = CONFIGS[case]
    return common.build_segmentor(common.load_config(
        osp.join('configs', name.split('_')[0], name)))


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
    net = Network(model, size).eval()
    analyzer = FlopAnalyzer(net, (torch.zeros(1, 3, size, size), ))
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


def prepare(case, mode, variant, size, on_ready=None):
    """Build one variant; returns ``(step, batch, model, compile_s)``.

    ``on_ready`` is called once the model and its input exist, before
    compilation and before any step (the memory baseline).
    """
    parts = variant.split('+')
    model = build_model(case)  # seeded
    fmt = torch.channels_last if 'cl' in parts else torch.contiguous_format
    compile_s = None
    if mode == 'eval':
        model.eval()
        from deeplabplus_mm.models.utils import prepare_for_inference
        prepare_for_inference(model, 'fuse' in parts, 'cl' in parts)
        net = Network(model, size).eval()
        x = torch.randn(1, 3, size, size).contiguous(memory_format=fmt)
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

        return step, 1, model, compile_s

    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    model = model.train()
    if variant == 'cl-input':  # what train_channels_last=True configs do
        from deeplabplus_mm.engine import train_channels_last
        train_channels_last(model)
    else:
        model.to(memory_format=fmt)
    n = TRAIN_BATCH
    x = torch.randn(n, 3, size, size).contiguous(memory_format=fmt)
    samples = []
    for _ in range(n):
        sample = SegDataSample(
            metainfo=dict(img_shape=(size, size), pad_shape=(size, size)))
        sample.gt_sem_seg = PixelData(data=torch.randint(
            0, model.decode_head.num_classes, (1, size, size)))
        samples.append(sample)
    if on_ready:
        on_ready()

    def step():
        model.zero_grad(set_to_none=True)
        losses = model(x, samples, mode='loss')
        sum(v for k, v in losses.items() if 'loss' in k).backward()

    return step, n, model, compile_s


def child_timing(spec):
    """All variants of one (case, mode) in one process, timed round-robin
    (with the GEMM as one more entry), so that drifting load hits all."""
    common.set_threads(spec['threads'])
    case, mode, size = spec['case'], spec['mode'], spec['size']
    steps, result = {}, dict(variants={}, compile_s={})
    for variant in spec['variants']:
        step, batch, model, compile_s = prepare(case, mode, variant, size)
        steps[variant] = step
        result['batch'] = batch
        if compile_s is not None:
            result['compile_s'][variant] = compile_s
    if spec['count_flops']:
        model = build_model(case).eval()
        result['macs'], result['by_op'] = count_macs(model, size)
        result['by_kind'] = conv_breakdown(model, size)
        result['unit'] = counter_unit()
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(2048, 2048, generator=gen)
    out = torch.empty(2048, 2048)
    steps['gemm'] = lambda: torch.mm(a, a, out=out)
    for _ in range(spec['warmup']):
        for step in steps.values():
            step()
    times = {k: [] for k in steps}
    others = {k: [] for k in steps}
    for _ in range(spec['repeats']):
        for name, step in steps.items():
            t, o = common.measure_clean(step, 1, spec['max_other_cores'],
                                        max_tries=3)
            times[name] += t
            others[name] += o
    result['times'], result['other_cores'] = times, others
    return result


def child_memory(spec):
    """One variant in a fresh process: peak RSS above the built model
    over warm-up + one step (compilation, if any, included)."""
    common.set_threads(spec['threads'])
    mem = common.PeakRSS()
    step, batch, model, _ = prepare(spec['case'], spec['mode'],
                                    spec['variant'], spec['size'],
                                    on_ready=mem.start)
    step()
    step()
    return dict(rss_mib=mem.delta_mib(), rss_reset=mem.reset,
                params_mib=sum(p.numel() * p.element_size()
                               for p in model.parameters()) / 2**20)


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


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    common.add_common_args(
        parser, 'smoke run: 257x257, 1 warm-up + 2 repeats, no compile')
    parser.add_argument('--cases', default=','.join(DEFAULT_CASES),
                        help=f'comma-separated, from {sorted(CONFIGS)}')
    parser.add_argument('--modes', default='eval,train')
    parser.add_argument('--variants', default=None,
                        help='comma-separated eval/train variants (default: '
                        f'eval {EVAL_VARIANTS}, train {TRAIN_VARIANTS}; '
                        'compile is left out with --quick)')
    parser.add_argument('--size', type=int, default=None,
                        help='square input size (default 513; 257 quick)')
    parser.add_argument('--warmup', type=int, default=None)
    parser.add_argument('--repeats', type=int, default=None,
                        help='timed rounds (default 5; 2 quick)')
    parser.add_argument('--no-memory', action='store_true',
                        help='skip the per-variant memory processes')
    parser.add_argument('--omp-wait-policy', default='default',
                        help='comma-separated OMP_WAIT_POLICY values to time '
                        'each (case, mode) under: default (unset), PASSIVE, '
                        'ACTIVE')
    args = parser.parse_args()
    quick = args.quick
    args.size = args.size or (257 if quick else 513)
    args.warmup = args.warmup if args.warmup is not None else 1
    args.repeats = args.repeats or (2 if quick else 5)
    args.cases = args.cases.split(',')
    args.modes = args.modes.split(',')
    args.omp_wait_policy = args.omp_wait_policy.split(',')
    for case in args.cases:
        if case not in CONFIGS:
            parser.error(f'unknown case {case!r}; choose from '
                         f'{sorted(CONFIGS)}')
    return args


def variants_for(mode, args):
    known = EVAL_VARIANTS if mode == 'eval' else TRAIN_VARIANTS
    if args.variants is None:
        return [v for v in known if not (args.quick and 'compile' in v)]
    return [v for v in args.variants.split(',') if v in known]


def run_child(spec, policy='default'):
    """A child with its own, empty inductor cache (compile times are cold)
    and the given ``OMP_WAIT_POLICY`` (read once, at start-up)."""
    import shutil
    import tempfile
    cache = tempfile.mkdtemp(prefix='deeplabplus_inductor_')
    env = dict(TORCHINDUCTOR_CACHE_DIR=cache)
    if policy != 'default':
        env['OMP_WAIT_POLICY'] = policy
    try:
        return common.run_child(__file__, spec, env=env)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def main():
    args = parse_args()
    load, threads = common.start_run(args)
    print(f'load average at start: {load:.2f}; input {args.size}x{args.size}'
          f'; eval batch 1, train batch {TRAIN_BATCH}; per (case, mode) one '
          f'process times all variants and the GEMM round-robin: warm-up '
          f'{args.warmup}, median of {args.repeats} rounds', flush=True)
    gemm_start = common.gemm_gflops()
    print(f'float32 GEMM 2048^3 at start: {gemm_start:.1f} GFLOP/s',
          flush=True)

    timing, memory = {}, {}
    for case in args.cases:
        for mode in args.modes:
            variants = variants_for(mode, args)
            if not variants:
                continue
            for policy in args.omp_wait_policy:
                spec = dict(kind='timing', case=case, mode=mode,
                            variants=variants, size=args.size,
                            warmup=args.warmup, repeats=args.repeats,
                            threads=threads, count_flops=mode == 'eval',
                            max_other_cores=args.max_other_cores)
                res = timing[case, mode, policy] = run_child(spec, policy)
                if 'error' in res:
                    print(f'  {case} {mode} [{policy}]: FAILED '
                          f'{res["error"]}', flush=True)
                    continue
                for variant in variants:
                    t = common.median(res['times'][variant]) / res['batch']
                    print(f'  {case} {mode} {variant} [{policy}]: {t:.3f} '
                          's/image', flush=True)
            if args.no_memory:
                continue
            for variant in variants:
                mem = memory[case, mode, variant] = run_child(dict(
                    kind='memory', case=case, mode=mode, variant=variant,
                    size=args.size, threads=threads),
                    args.omp_wait_policy[0])
                print(f'  {case} {mode} {variant}: peak RSS +'
                      f'{common.fmt(mem.get("rss_mib"), ".0f")} MiB',
                      flush=True)
    gemm_end = common.gemm_gflops()
    print(f'float32 GEMM 2048^3 at the end: {gemm_end:.1f} GFLOP/s; load '
          f'average now {common.load_average():.2f}')
    report(args, timing, memory, [gemm_start, gemm_end])


def report(args, timing, memory, parent_gemm):
    rows, per_image, gemm_rates, macs = [], {}, {}, {}
    # The conservative ceiling: the fastest GEMM seen anywhere in the run.
    best_gemm = max(parent_gemm + [
        2 * 2048**3 / common.median(res['times']['gemm']) / 1e9
        for res in timing.values() if 'error' not in res])
    notes = []
    policies = args.omp_wait_policy
    for (case, mode, policy), res in timing.items():
        if 'error' in res:
            rows.append([case, mode, 'all', 'failed'] + ['-'] * 10)
            continue
        gemm = 2 * 2048**3 / common.median(res['times']['gemm']) / 1e9
        gemm_rates[case, mode, policy] = gemm
        if 'macs' in res:
            macs[case] = res
        for variant, times in res['times'].items():
            if variant == 'gemm':
                continue
            t = common.median(times) / res['batch']
            if len(policies) > 1:
                variant = f'{variant} [{policy}]'
            per_image[case, mode, variant] = t
            other = max(res['other_cores'][variant.split(' ')[0]])
            if other >= args.max_other_cores:
                notes.append(f'{case} {mode} {variant}: other processes '
                             f'used up to {other:.2f} cores during its runs')
            gmacs = macs[case]['macs'] / 1e9 if case in macs else None
            flops = 2 * gmacs / t if gmacs and mode == 'eval' else None
            mem = (memory.get((case, mode, variant), {})
                   if policy == policies[0] else {})
            rows.append([
                case, mode, variant,
                common.fmt(t, '.3f'),
                common.fmt(1 / t, '.2f'),
                common.fmt(mem.get('rss_mib'), '.0f'),
                common.fmt(gmacs if mode == 'eval' else None, '.2f'),
                common.fmt(flops, '.1f'),
                f'{gemm:.1f}',
                common.fmt(flops / gemm * 100 if flops else None, '.0f'),
                common.fmt(flops / best_gemm * 100 if flops else None, '.0f'),
                common.fmt(res['compile_s'].get(variant.split(' ')[0]), '.0f'),
                f'{other:.2f}',
            ])
    print()
    print(f'input {args.size}x{args.size}; s/image: median over the rounds '
          f'(train: batch {TRAIN_BATCH}, per image); peak RSS: above the '
          'built model, own process; GFLOP/s = 2 x GMACs / s; GEMM: float32 '
          '2048^3 torch.mm timed in the same rounds (% of best: of the '
          f'fastest GEMM of the whole run, {best_gemm:.1f} GFLOP/s); '
          'compile: cold cache; other cores: CPU taken by other processes '
          'during the runs')
    print(common.table(
        ['case', 'mode', 'variant', 's/image', 'images/s', 'peak RSS +MiB',
         'GMACs/image', 'GFLOP/s', 'GEMM GFLOP/s', '% of GEMM',
         '% of best GEMM', 'compile s', 'other cores'], rows))
    for note in notes:
        print(f'warning: {note}')

    for case, res in macs.items():
        ops = ', '.join(f'{k} {v / 1e9:.3f}' for k, v in sorted(
            res['by_op'].items(), key=lambda kv: -kv[1]))
        kinds = ', '.join(f'{k} {v / 1e9:.3f}'
                          for k, v in res['by_kind'].items())
        print(f'{case}: FlopAnalyzer counts {res["unit"]} for one '
              f'multiply-add -> MACs. G by operator: {ops}. Own count, G: '
              f'{kinds}')
    if 'xception65-d16' in macs:
        res = macs['xception65-d16']
        scale = (513 / args.size)**2
        note = '' if args.size == 513 else (
            f' (x (513/{args.size})^2 = {scale:.2f} to compare)')
        conv = res['by_op'].get('conv', 0) * scale / 1e9
        print(f'xception65-d16 vs the TF model zoo\'s '
              f'{TF_ZOO_MULTIPLY_ADDS / 1e9:.2f} B multiply-adds at 513x513: '
              f'convs {conv:.2f} G MACs ({conv / 54.17 - 1:+.2%}), '
              f'FlopAnalyzer total {res["macs"] * scale / 1e9:.2f} G{note}')

    summary = []
    base_name = 'base' if len(policies) == 1 else f'base [{policies[0]}]'
    for mode in args.modes:
        ref = per_image.get(('r101-d8', mode, base_name))
        ref_best = min((t for (c, m, v), t in per_image.items()
                        if c == 'r101-d8' and m == mode), default=None)
        for case in args.cases:
            if case.startswith('r101'):
                continue
            mine = {v: t for (c, m, v), t in per_image.items()
                    if c == case and m == mode}
            if base_name not in mine:
                continue
            best_variant = min(mine, key=mine.get)
            base, best = mine[base_name], mine[best_variant]
            item = (f'{case} {mode} {best:.3f} s/image ({best_variant}, '
                    f'{base / best:.2f}x its base)')
            if ref:
                item += (f', faster than r101-d8: {ref / best:.2f}x '
                         f'(best vs its base), {ref_best / best:.2f}x (best '
                         f'vs best), {ref / base:.2f}x (base vs base)')
            if mode == 'eval' and case in macs:
                rate = 2 * macs[case]['macs'] / best / 1e9
                policy = (best_variant.split('[')[1][:-1]
                          if '[' in best_variant else policies[0])
                gemm = gemm_rates[case, mode, policy]
                item += (f', {rate / gemm:.0%} of GEMM ({rate / best_gemm:.0%}'
                         ' of the best GEMM)')
            summary.append(item)
    print()
    print('SUMMARY: ' + ('; '.join(summary) or 'no complete comparison'))


if __name__ == '__main__':
    common.entry(main, timing=child_timing, memory=child_memory)
