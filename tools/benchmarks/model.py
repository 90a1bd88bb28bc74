"""Speed, memory and FLOPs of DeepLab v3+ Xception-65 against mmseg's R101-d8.

    python tools/benchmarks/model.py            # 513x513, all cases
    python tools/benchmarks/model.py --quick    # 257x257, fewer repeats
    python tools/benchmarks/model.py --cases xception65-d16 --modes eval \\
        --variants base,fuse,fuse+cl
    python tools/benchmarks/model.py --device cuda   # fp32 vs bf16 training

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
* train: ``forward(mode='loss')`` + ``backward`` of a batch of 2
  (``--batch``; BN in training mode cannot see the image-pooling branch's
  1x1 map with a batch of 1), per image. Variants: ``base``; ``cl`` (weights and input
  channels_last); ``cl-input`` (only the input channels_last, which carries
  the network: what configs with ``train_channels_last = True`` do,
  :class:`~deeplabplus_mm.engine.ChannelsLastTrainingHook`); ``bf16``,
  ``bf16+cl`` (bf16 autocast; not by default on the CPU).
* ``--device cuda``: the same on a GPU (steps synchronised; without CUDA it
  prints "skipped: no GPU" and exits 0), by default the GPU training
  figures: xception65-d16, train, ``base`` (fp32), ``cl``, ``bf16``,
  ``bf16+cl``, batch 8 at 513x513 (quick: 2 at 257), a step with the
  config's optimizer (SGD) update (``--optimizer``), 5 warm-up + 20 timed
  steps; memory: peak ``torch.cuda.max_memory_allocated`` (weights
  included) over two steps after two warm-up steps. Goal: bf16 >= 1.5x the
  fp32 throughput at <= 0.6x its memory.

FLOPs: mmengine's ``FlopAnalyzer`` on the unfused eval model. It counts one
per multiply-add of conv/linear layers (MACs, as fvcore does; checked on a
1x1 conv) plus a few per element for norms and resizes; achieved FLOP/s use
2 x that total. A hook count splits conv MACs into 1x1, dense kxk and
depthwise.
"""
import argparse
import shutil
import tempfile

import torch

from deeplabplus_mm.utils import benchmark as common

DEFAULT_CASES = ['xception65-d16', 'xception65-d8', 'r101-d8']
EVAL_VARIANTS = ['base', 'fuse', 'fuse+cl', 'fuse+cl+compile']
TRAIN_VARIANTS = ['base', 'cl', 'cl-input', 'bf16', 'bf16+cl']
CPU_TRAIN_VARIANTS = ['base', 'cl', 'cl-input']
GPU_TRAIN_VARIANTS = ['base', 'cl', 'bf16', 'bf16+cl']
TF_ZOO_MULTIPLY_ADDS = 54.17e9  # xception65, OS 16, 513x513 (model_zoo.md)


def prepare(spec, variant, on_ready=None):
    """:func:`deeplabplus_mm.utils.benchmark.prepare` for a child's spec."""
    return common.prepare(
        spec['case'], spec['mode'], variant, spec['size'],
        batch=spec['batch'] if spec['mode'] == 'train' else 1,
        device=spec['device'], optimizer=spec['optimizer'],
        on_ready=on_ready)


def child_timing(spec):
    """All variants of one (case, mode) in one process, timed round-robin
    (with the GEMM as one more entry), so that drifting load hits all."""
    common.set_threads(spec['threads'])
    case, size = spec['case'], spec['size']
    steps, result = {}, dict(compile_s={})
    for variant in spec['variants']:
        steps[variant], _, compile_s = prepare(spec, variant)
        if compile_s is not None:
            result['compile_s'][variant] = compile_s
    if spec['count_flops']:
        model = common.build_case(case).eval()
        result['macs'], result['by_op'] = common.count_macs(model, size)
        result['by_kind'] = common.conv_breakdown(model, size)
        result['unit'] = common.counter_unit()
    steps['gemm'] = common.gemm_step(spec['device'])
    result['times'], result['other_cores'] = common.round_robin(
        steps, spec['warmup'], spec['repeats'], spec['max_other_cores'])
    return result


def child_memory(spec):
    """One variant in a fresh process. CPU: peak RSS above the built model
    over warm-up + one step (compilation, if any, included). GPU: peak
    allocated memory over two steps after two warm-up steps."""
    common.set_threads(spec['threads'])
    cuda = spec['device'].startswith('cuda')
    mem = common.PeakRSS()
    step, model, _ = prepare(spec, spec['variant'],
                             on_ready=None if cuda else mem.start)
    if cuda:
        step()
        step()
        torch.cuda.reset_peak_memory_stats(spec['device'])
    step()
    step()
    return dict(rss_mib=torch.cuda.max_memory_allocated(spec['device']) /
                2**20 if cuda else mem.delta_mib(),
                params_mib=sum(p.numel() * p.element_size()
                               for p in model.parameters()) / 2**20)


def parse_args():
    parser = common.parser_for(
        __doc__, 'smoke run: 257x257, 1 warm-up + 2 repeats, no compile',
        repeats='timed rounds (default 5; 2 quick; cuda: 20, 3 quick)')
    parser.add_argument('--device', default='cpu',
                        help='cpu (default) or cuda[:N]')
    parser.add_argument('--cases', default=None,
                        help=f'comma-separated, from {sorted(common.CONFIGS)}'
                        f' (default {",".join(DEFAULT_CASES)}; cuda: '
                        'xception65-d16)')
    parser.add_argument('--modes', default=None,
                        help='eval,train (default; cuda: train)')
    parser.add_argument('--variants', default=None,
                        help='comma-separated eval/train variants (default: '
                        f'eval {EVAL_VARIANTS}, train {CPU_TRAIN_VARIANTS}, '
                        f'cuda train {GPU_TRAIN_VARIANTS}; compile is left '
                        'out with --quick)')
    parser.add_argument('--size', type=int, default=None,
                        help='square input size (default 513; 257 quick)')
    parser.add_argument('--batch', type=int, default=None,
                        help='training batch (default 2; cuda: 8, 2 quick)')
    parser.add_argument('--warmup', type=int, default=None,
                        help='warm-up rounds (default 1; cuda: 5, 2 quick)')
    parser.add_argument('--optimizer', action=argparse.BooleanOptionalAction,
                        default=None, help='train steps also apply the '
                        "config's optimizer update (default: on cuda only)")
    parser.add_argument('--no-memory', action='store_true',
                        help='skip the per-variant memory processes')
    parser.add_argument('--omp-wait-policy', default='default',
                        help='comma-separated OMP_WAIT_POLICY values to time '
                        'each (case, mode) under: default (unset), PASSIVE, '
                        'ACTIVE')
    args = parser.parse_args()
    cuda = args.device.startswith('cuda')
    common.fill_defaults(args, size=(257, 513),
                         repeats=(3, 20) if cuda else (2, 5),
                         batch=(2, 8) if cuda else (2, 2))
    if args.warmup is None:
        args.warmup = (2 if args.quick else 5) if cuda else 1
    args.optimizer = cuda if args.optimizer is None else args.optimizer
    args.cases = (args.cases or ('xception65-d16' if cuda else
                                 ','.join(DEFAULT_CASES))).split(',')
    args.modes = (args.modes or ('train' if cuda else 'eval,train')).split(
        ',')
    args.omp_wait_policy = args.omp_wait_policy.split(',')
    for case in args.cases:
        if case not in common.CONFIGS:
            parser.error(f'unknown case {case!r}; choose from '
                         f'{sorted(common.CONFIGS)}')
    return args


def variants_for(mode, args):
    known = EVAL_VARIANTS if mode == 'eval' else TRAIN_VARIANTS
    if args.variants is None:
        if mode == 'train':
            known = (GPU_TRAIN_VARIANTS if args.device.startswith('cuda')
                     else CPU_TRAIN_VARIANTS)
        return [v for v in known if not (args.quick and 'compile' in v)]
    return [v for v in args.variants.split(',') if v in known]


def run_child(spec, policy='default'):
    """A child with its own, empty inductor cache (compile times are cold)
    and the given ``OMP_WAIT_POLICY`` (read once, at start-up)."""
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
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        print('skipped: no GPU (--device cuda, but torch sees no CUDA '
              'device)')
        return 0
    load, threads = common.start_run(args)
    if args.device.startswith('cuda'):
        print(common.gpu_line(args.device))
    print(f'load average at start: {load:.2f}; input {args.size}x{args.size}'
          f'; eval batch 1, train batch {args.batch}'
          f'{" with the optimizer step" if args.optimizer else ""}; '
          f'device {args.device}; per (case, mode) one process times all '
          f'variants and the GEMM round-robin: warm-up {args.warmup}, median '
          f'of {args.repeats} rounds', flush=True)
    gemm_start = common.gemm_gflops(args.device)
    print(f'float32 GEMM 2048^3 at start: {gemm_start:.1f} GFLOP/s',
          flush=True)

    timing, memory = {}, {}
    base = dict(size=args.size, threads=threads, device=args.device,
                batch=args.batch, optimizer=args.optimizer)
    for case in args.cases:
        for mode in args.modes:
            variants = variants_for(mode, args)
            if not variants:
                continue
            for policy in args.omp_wait_policy:
                spec = dict(base, kind='timing', case=case, mode=mode,
                            variants=variants, warmup=args.warmup,
                            repeats=args.repeats, count_flops=mode == 'eval',
                            max_other_cores=args.max_other_cores)
                res = timing[case, mode, policy] = run_child(spec, policy)
                if 'error' in res:
                    print(f'  {case} {mode} [{policy}]: FAILED '
                          f'{res["error"]}', flush=True)
                    continue
                for variant in variants:
                    t = common.median(res['times'][variant]) / batch_of(
                        mode, args)
                    print(f'  {case} {mode} {variant} [{policy}]: {t:.3f} '
                          's/image', flush=True)
            if args.no_memory:
                continue
            for variant in variants:
                mem = memory[case, mode, variant] = run_child(dict(
                    base, kind='memory', case=case, mode=mode,
                    variant=variant), args.omp_wait_policy[0])
                print(f'  {case} {mode} {variant}: peak '
                      f'{memory_label(args)} '
                      f'{common.fmt(mem.get("rss_mib"), ".0f")} MiB',
                      flush=True)
    gemm_end = common.gemm_gflops(args.device)
    print(f'float32 GEMM 2048^3 at the end: {gemm_end:.1f} GFLOP/s; load '
          f'average now {common.load_average():.2f}')
    report(args, timing, memory, [gemm_start, gemm_end])


def batch_of(mode, args):
    return args.batch if mode == 'train' else 1


def memory_label(args):
    """CPU: RSS growth above the built model; GPU: peak allocated."""
    return 'CUDA' if args.device.startswith('cuda') else 'RSS +'


def report(args, timing, memory, parent_gemm):
    rows, per_image, gemm_rates, macs = [], {}, {}, {}
    # The conservative ceiling: the fastest GEMM seen anywhere in the run.
    best_gemm = max(parent_gemm + [
        common.gemm_rate(common.median(res['times']['gemm']))
        for res in timing.values() if 'error' not in res])
    notes = []
    policies = args.omp_wait_policy
    for (case, mode, policy), res in timing.items():
        if 'error' in res:
            rows.append([case, mode, 'all', 'failed'] + ['-'] * 10)
            continue
        gemm = common.gemm_rate(common.median(res['times']['gemm']))
        gemm_rates[case, mode, policy] = gemm
        if 'macs' in res:
            macs[case] = res
        for variant, times in res['times'].items():
            if variant == 'gemm':
                continue
            t = common.median(times) / batch_of(mode, args)
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
    cuda = args.device.startswith('cuda')
    print()
    print(f'input {args.size}x{args.size}; s/image: median over the rounds '
          f'(train: batch {args.batch}, per image); ' +
          ('peak CUDA: max allocated, weights included' if cuda else
           'peak RSS: above the built model') +
          ', own process; GFLOP/s = 2 x GMACs / s; GEMM: float32 '
          '2048^3 torch.mm timed in the same rounds (% of best: of the '
          f'fastest GEMM of the whole run, {best_gemm:.1f} GFLOP/s); '
          'compile: cold cache; other cores: CPU taken by other processes '
          'during the runs')
    print(common.table(
        ['case', 'mode', 'variant', 's/image', 'images/s',
         'peak CUDA MiB' if cuda else 'peak RSS +MiB',
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
            bf16 = [v for v in mine if v.startswith('bf16')]
            if bf16 and mode == 'train':
                item += bf16_summary(bf16, mine, base, memory, case)
            summary.append(item)
    print()
    print('SUMMARY: ' + ('; '.join(summary) or 'no complete comparison'))


def bf16_summary(bf16, per_image, base, memory, case):
    """The faster bf16 variant's throughput and memory against fp32's
    (``base``), with the goals (>= 1.5x, <= 0.6x)."""
    fast = min(bf16, key=per_image.get)
    speed = base / per_image[fast]
    text = (f', {fast} {speed:.2f}x fp32 throughput (goal >= 1.5x: '
            f'{"met" if speed >= 1.5 else "NOT met"})')
    peak, fp32 = (memory.get((case, 'train', v), {}).get('rss_mib')
                  for v in (fast, 'base'))
    if peak and fp32:
        text += (f', {peak / fp32:.2f}x fp32 memory (goal <= 0.6x: '
                 f'{"met" if peak / fp32 <= 0.6 else "NOT met"})')
    return text


if __name__ == '__main__':
    common.entry(main, timing=child_timing, memory=child_memory)
