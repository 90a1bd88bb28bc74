"""Test-time augmentation, TF's protocol (the configs' default) and
mmseg's, against the network forwards it needs.

    python tools/benchmarks/tta.py                     # xception65, 513x513
    python tools/benchmarks/tta.py --arch 41 --size 193
    python tools/benchmarks/tta.py --quick             # xception41, 97x97

Times, in-call overheads, flip pairs, peak memory: ``docs/benchmarks.md``,
section 2, says how they are measured.
"""
import os.path as osp
import sys
import tempfile
import time
from functools import partial

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from mmcv.transforms import Compose
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmseg.registry import MODELS

import _checkout  # noqa: F401  (first: the checkout on sys.path)
from deeplabplus_mm.apis import build_model
from deeplabplus_mm.datasets.voc_meta import save_palette_png
from deeplabplus_mm.models import scale_dimension
from deeplabplus_mm.models.utils import prepare_for_inference
from tools.benchmarks import _cases
from tools.benchmarks import _harness as common
from tools.fixtures.synthetic_voc import make_sample

# The tables' rows: value name, label.
ROWS = dict(line.split(' ', 1) for line in """\
tf TF's protocol: TFMultiScaleSegTTAModel.test_step (12 views)
tf_bare sum of its 12 bare forwards at the views' own sizes
ours mmseg's protocol: AccumulatingSegTTAModel.test_step (12 views)
mmseg mmseg's protocol: mmseg's SegTTAModel.test_step (12 views)
bare sum of mmseg's protocol's 12 bare forwards
keep the 12 forwards keeping their logits (as mmseg merges)
r_tf overhead ratio, TF's (TTA / its bare forwards)
r_ours overhead ratio, AccumulatingSegTTAModel (TTA / bare forwards)
r_mmseg overhead ratio, mmseg's SegTTAModel
r_keep mmseg's / forwards keeping their logits
in_tf in-call overhead, TF's (test_step / its own forwards)
in_ours in-call overhead, AccumulatingSegTTAModel
in_mmseg in-call overhead, mmseg's SegTTAModel
today TF's protocol / AccumulatingSegTTAModel (today's TTA)""".splitlines())
MEMORY = dict(line.split(' ', 1) for line in """\
tf_bare TF's 12 bare forwards at their own sizes
tf TF's protocol: TFMultiScaleSegTTAModel
bare mmseg's protocol's 12 bare forwards
ours mmseg's protocol: AccumulatingSegTTAModel
mmseg mmseg's protocol: mmseg's SegTTAModel""".splitlines())


def prepare(arch, size, channels_last, **_):
    """(cfg, name -> step, in_call, TF's network inputs, mmseg's views) of
    the zoo model padding to ``size``: the steps (no_grad) of section 2 of
    ``docs/benchmarks.md``; the TTA calls add their in-call ratios."""
    cfg = Config.fromfile(_cases.config_path('xception65-d16'))
    cfg.model.backbone.arch = arch
    cfg.model.data_preprocessor.test_cfg = dict(size=(size, size))
    model = build_model(cfg, seed=0)
    prepare_for_inference(model, fuse=False, channels_last=channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    img, label = make_sample(np.random.default_rng(0), size, size)
    with tempfile.TemporaryDirectory() as folder:  # the test loader's batch
        item = dict(img_path=osp.join(folder, 'img.jpg'), seg_fields=[],
                    seg_map_path=osp.join(folder, 'seg.png'),
                    reduce_zero_label=False)
        cv2.imwrite(item['img_path'], img)
        save_palette_png(item['seg_map_path'], label)
        tf_batch, batch = [pseudo_collate([Compose(p)(dict(item))]) for p in
                           (cfg.tta_pipeline, cfg.mmseg_tta_pipeline)]
    # The network inputs: mmseg's views preprocessed as its TTA models do,
    # TF's made from the padded image as TFMultiScaleSegTTAModel does.
    tf, pre = cfg.tta_model, model.data_preprocessor
    views = [pre({k: v[i] for k, v in batch.items()})
             for i in range(len(batch['inputs']))]
    views = [(d['inputs'].contiguous(memory_format=fmt),
              [s.metainfo for s in d['data_samples']]) for d in views]
    x = pre({k: v[0] for k, v in tf_batch.items()})['inputs']
    tf_views = [((v if s == 1 else F.interpolate(
        v, [scale_dimension(n, s) for n in v.shape[2:]], mode='bilinear',
        align_corners=True)).contiguous(memory_format=fmt), )
        for s in tf.scales for v in (x, x.flip(-1))[:1 + tf.flip]]
    fwd, enc, inside, in_call = model._forward, model.encode_decode, [0.], {}

    def timed(method, *args):  # what the TTA models call: time inside
        start = time.perf_counter()
        out = method(*args)
        inside[0] += time.perf_counter() - start
        return out

    def call(name, tta, data):  # TF's calls _forward, mmseg's encode_decode
        inside[0], start = 0., time.perf_counter()
        tta.test_step(data)
        in_call.setdefault(name, []).append(
            (time.perf_counter() - start) / inside[0])

    def forwards(method, inputs):  # each output dropped at once
        return lambda: [method(*args).shape for args in inputs]

    model._forward, model.encode_decode = partial(timed, fwd), partial(
        timed, enc)
    steps = {k: partial(call, k, MODELS.build(dict(t, module=model)).eval(),
                        tf_batch if k == 'tf' else batch) for k, t in (
        ('tf', tf), ('ours', dict(type='AccumulatingSegTTAModel')),
        ('mmseg', dict(type='SegTTAModel')))} | dict(
        tf_bare=forwards(fwd, tf_views), bare=forwards(enc, views),
        keep=lambda: [F.interpolate(enc(*v), (size, size), mode='bilinear')
                      for v in views])  # logits kept, as mmseg merges
    for s, (a, m), (b, bm) in zip(cfg.img_ratios, views[::2], views[1::2]):
        steps[f'seq{s}'] = forwards(enc, [(a, m), (b, bm)])  # flip pairs
        steps[f'bat{s}'] = forwards(enc, [(torch.cat([a, b]).contiguous(
            memory_format=fmt), m + bm)])
    steps = {k: torch.no_grad()(v) for k, v in steps.items()}
    return cfg, steps, in_call, tf_views, views


def child_memory(spec):
    """Peak RSS above the built inputs over one ``spec['which']`` step."""
    common.set_threads(spec['threads'])
    step = prepare(**spec)[1][spec['which']]
    mem = common.PeakRSS().start()
    step()
    return dict(rss_mib=mem.delta_mib())


def main():
    p = common.parser(__doc__, 'smoke run: xception41 at 97x97, 1 repeat',
                      arch=(41, 65, 'xception 41/65/71'),
                      size=(97, 513, 'image side'),
                      repeats=(1, 5, 'timed rounds'))
    p.add_argument('--channels-last', action='store_true')
    args = common.parse(p)
    _, threads = common.start(args)
    cfg, steps, in_call, tf_views, views = prepare(**vars(args))
    sizes = ', '.join(str(x.shape[2]) for x, in tf_views[::2])
    print(f'xception{args.arch}, image {args.size}x{args.size}, {len(views)} '
          f'TTA views (TF: network inputs {sizes}, x2 flip), warm-up 1, '
          f'median of {args.repeats}')
    times, others = common.round_robin(steps, 1, args.repeats,
                                       args.max_other_cores)
    v = {k: common.median(t) for k, t in times.items()}
    v.update({'in_' + k: common.median(r[1:]) for k, r in in_call.items()})
    v.update(r_tf=v['tf'] / v['tf_bare'], r_ours=v['ours'] / v['bare'],
             r_mmseg=v['mmseg'] / v['bare'], r_keep=v['mmseg'] / v['keep'],
             today=v['tf'] / v['ours'], ours_mmseg=v['ours'] / v['mmseg'])
    flips = [(f'{s:.2f}', 'x'.join(str(n) for n in x.shape[2:]),
              v[f'seq{s}'], v[f'bat{s}'])
             for s, (x, _) in zip(cfg.img_ratios, views[::2])]
    v['seq'], v['bat'] = (sum(f[i] for f in flips) for i in (2, 3))
    mem = {k: common.run_child(osp.abspath(__file__), dict(
        vars(args), kind='memory', which=k, threads=threads))
        for k in MEMORY}
    v.update({'mib_' + k: common.fmt(m.get('rss_mib'), '.0f')
              for k, m in mem.items()})
    v.update({'met_' + k: 'met' if v[k] <= 1.1 else 'NOT met'
              for k in ('r_tf', 'r_ours', 'in_ours')})
    print('\n' + common.table(['what', 'seconds'],
                              [[t, f'{v[k]:.3f}'] for k, t in ROWS.items()]))
    print("\nflip pairs (mmseg's protocol's views): sequential = two batch-1 "
          'forwards, batched = one batch of 2\n' + common.table(
              ['scale', 'network input', 'sequential s', 'batched s',
               'batched / sequential'],
              [[a, b, f'{s:.3f}', f'{t:.3f}', f'{t / s:.2f}'] for a, b, s, t
               in flips + [('all', '', v['seq'], v['bat'])]]))
    print('\npeak memory above the built model and inputs, one call in a '
          'fresh process:\n' + common.table(['what', 'peak RSS MiB'], [
              [t, mem[k].get('error') or v['mib_' + k]]
              for k, t in MEMORY.items()]))
    print(f'other processes used up to {max(map(max, others.values())):.2f}'
          ' cores during the timed runs kept\n')
    print((f'SUMMARY: xception{args.arch} {args.size}x{args.size}: TTA, '
           "TF's protocol (TFMultiScaleSegTTAModel) {tf:.2f} s vs "
           "{tf_bare:.2f} s of its views' bare forwards, overhead ratio "
           '{r_tf:.3f} (goal <= 1.1: {met_r_tf}), in-call {in_tf:.3f}; '
           '{today:.3f}x the time of AccumulatingSegTTAModel (mmseg\'s '
           "protocol), peak memory {mib_tf} vs {mib_ours} MiB. mmseg's "
           'protocol: TTA {ours:.2f} s vs {bare:.2f} s of bare forwards, '
           'overhead ratio {r_ours:.3f} (goal <= 1.1: {met_r_ours}), in-call'
           " {in_ours:.3f} ({met_in_ours}); mmseg's SegTTAModel "
           '{r_mmseg:.3f} (ours {ours_mmseg:.3f}x its time, peak memory '
           '{mib_ours} vs {mib_mmseg} MiB); batched flip / sequential = '
           '{bat_seq:.2f} ({seq:.2f} s -> {bat:.2f} s)').format(
               bat_seq=v['bat'] / v['seq'], **v))


if __name__ == '__main__':
    sys.exit(common.entry(main, memory=child_memory))
