"""Test-time augmentation: TF's protocol (the configs' default) and
mmseg's, against the network forwards they need.

    python tools/benchmarks/tta.py                     # xception65, 513x513
    python tools/benchmarks/tta.py --arch 41 --size 193
    python tools/benchmarks/tta.py --quick             # xception41, 97x97

One image, the VOC configs' 6 scales x flip: each TTA model's call against
the sum of its views' bare forwards (and in-call: against the time inside
them), flip pairs batched vs sequential, and each call's peak memory in a
fresh process. How: ``docs/benchmarks.md``, section 2.
"""
import os.path as osp
import tempfile
import time
from collections import deque
from itertools import starmap

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config

from deeplabplus_mm.apis import build_model
from deeplabplus_mm.utils import benchmark as common

ZOO_CONFIG = osp.join('configs', 'deeplabv3plus',
                      'deeplabv3plus_xception65-d16_4xb4-30k_voc12aug-'
                      '513x513.py')
ROWS = """\
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
today TF's protocol / AccumulatingSegTTAModel (today's TTA)"""
MEMORY = """\
tf_bare TF's 12 bare forwards at their own sizes
tf TF's protocol: TFMultiScaleSegTTAModel
bare mmseg's protocol's 12 bare forwards
ours mmseg's protocol: AccumulatingSegTTAModel
mmseg mmseg's protocol: mmseg's SegTTAModel"""


def prepare(arch, size, channels_last):
    """The zoo model padding to ``size``, as name -> step (no_grad): the TTA
    calls ('tf', 'ours', 'mmseg': each appends its in-call ratio to
    ``in_call[name]``), their views' bare forwards ('tf_bare', 'bare'),
    with logits kept ('keep'), per scale the flip pair as two batches of 1
    ('seq<scale>') or one of 2 ('bat<scale>'). Returns (cfg, steps,
    in_call, TF's network inputs, mmseg's views)."""
    import cv2
    from mmcv.transforms import Compose
    from mmengine.dataset import pseudo_collate
    from mmseg.models import SegTTAModel

    from deeplabplus_mm.datasets.synthetic import make_sample, save_palette_png
    from deeplabplus_mm.models import (AccumulatingSegTTAModel,
                                       TFMultiScaleSegTTAModel,
                                       scale_dimension)
    from deeplabplus_mm.models.utils import prepare_for_inference
    cfg = Config.fromfile(osp.join(common.REPO, ZOO_CONFIG))
    cfg.model.backbone.arch = arch
    cfg.model.data_preprocessor.test_cfg = dict(size=(size, size))
    model = build_model(cfg, seed=0)
    prepare_for_inference(model, fuse=False, channels_last=channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    img, label = make_sample(np.random.default_rng(0), size, size)
    with tempfile.TemporaryDirectory() as folder:
        item = dict(img_path=osp.join(folder, 'img.jpg'), seg_fields=[],
                    seg_map_path=osp.join(folder, 'seg.png'),
                    reduce_zero_label=False)
        cv2.imwrite(item['img_path'], img)
        save_palette_png(item['seg_map_path'], label)
        tf_batch, batch = [pseudo_collate([Compose(p)(dict(item))]) for p in
                           (cfg.tta_pipeline, cfg.mmseg_tta_pipeline)]
    views = []  # mmseg's views preprocessed as its TTA models do
    for inputs, samples in zip(batch['inputs'], batch['data_samples']):
        d = model.data_preprocessor(dict(inputs=inputs, data_samples=samples))
        views.append((d['inputs'].contiguous(memory_format=fmt),
                      [s.metainfo for s in d['data_samples']]))
    tf = TFMultiScaleSegTTAModel(module=model, **{
        k: v for k, v in cfg.tta_model.items() if k != 'type'}).eval()
    padded, tf_views = model.data_preprocessor(dict(
        inputs=tf_batch['inputs'][0],
        data_samples=tf_batch['data_samples'][0]))['inputs'], []
    for scale in tf.scales:
        for x in (padded, padded.flip(-1)) if tf.flip else (padded, ):
            if scale != 1.0:
                x = F.interpolate(
                    x, [scale_dimension(n, scale) for n in x.shape[2:]],
                    mode='bilinear', align_corners=True)
            tf_views.append((x.contiguous(memory_format=fmt), ))
    # The bare steps call the class's methods; the TTA models (TF's calls
    # _forward, mmseg's encode_decode) call these timed ones instead.
    fwd, enc = model._forward, model.encode_decode
    inside, in_call = dict(_forward=0., encode_decode=0.), {}
    for name, method in (('_forward', fwd), ('encode_decode', enc)):
        def timed(*args, name=name, method=method):
            start = time.perf_counter()
            out = method(*args)
            inside[name] += time.perf_counter() - start
            return out
        setattr(model, name, timed)

    def call(name, tta, data, method):
        def step():
            inside[method], start = 0., time.perf_counter()
            tta.test_step(data)
            in_call.setdefault(name, []).append(
                (time.perf_counter() - start) / inside[method])
        return step

    def forwards(method, inputs):  # each output dropped at once
        return lambda: deque(starmap(method, inputs), maxlen=0)

    steps = dict(
        tf=call('tf', tf, tf_batch, '_forward'),
        ours=call('ours', AccumulatingSegTTAModel(module=model).eval(),
                  batch, 'encode_decode'),
        mmseg=call('mmseg', SegTTAModel(module=model).eval(), batch,
                   'encode_decode'),
        tf_bare=forwards(fwd, tf_views), bare=forwards(enc, views),
        keep=lambda: [F.interpolate(enc(*v), (size, size), mode='bilinear')
                      for v in views])
    for s, (x, m), (f, fm) in zip(cfg.img_ratios, views[::2], views[1::2]):
        steps[f'seq{s}'] = forwards(enc, [(x, m), (f, fm)])
        steps[f'bat{s}'] = forwards(enc, [(torch.cat([x, f]).contiguous(
            memory_format=fmt), m + fm)])
    steps = {k: torch.no_grad()(v) for k, v in steps.items()}
    return cfg, steps, in_call, tf_views, views


def child_memory(spec):
    """Peak RSS above the built model and inputs over one run of the step
    ``spec['which']``, in a fresh process."""
    common.set_threads(spec['threads'])
    steps = prepare(spec['arch'], spec['size'], spec['channels_last'])[1]
    mem = common.PeakRSS().start()
    steps[spec['which']]()
    return dict(rss_mib=mem.delta_mib(), rss_reset=mem.reset)


def main():
    p = common.parser(__doc__, 'smoke run: xception41 at 97x97, 1 repeat',
                      arch=(41, 65, 'xception 41/65/71'),
                      size=(97, 513, 'image side'),
                      repeats=(1, 5, 'timed rounds'))
    p.add_argument('--channels-last', action='store_true')
    args = common.parse(p)
    load, threads = common.start(args)
    cfg, steps, in_call, tf_views, views = prepare(args.arch, args.size,
                                                   args.channels_last)
    print(f'load average at start: {load:.2f}; xception{args.arch}, image '
          f'{args.size}x{args.size}, {len(views)} TTA views (TF: network '
          f'inputs {", ".join(str(x.shape[2]) for x, in tf_views[::2])}, x2'
          f' flip), warm-up 1, median of {args.repeats}', flush=True)
    # all interleaved, so that drifting load hits all alike; then medians
    times, others = common.round_robin(steps, 1, args.repeats,
                                       args.max_other_cores)
    v = {k: common.median(t) for k, t in times.items()}
    v.update({'in_' + k: common.median(r[1:]) for k, r in in_call.items()})
    v.update(r_tf=v['tf'] / v['tf_bare'], r_ours=v['ours'] / v['bare'],
             r_mmseg=v['mmseg'] / v['bare'], r_keep=v['mmseg'] / v['keep'],
             today=v['tf'] / v['ours'], ours_mmseg=v['ours'] / v['mmseg'])
    print('\n' + common.table(['what', 'seconds'], [
        [label, f'{v[k]:.3f}'] for k, label in
        (row.split(' ', 1) for row in ROWS.splitlines())]))
    flips = [(f'{s:.2f}', 'x'.join(str(n) for n in x.shape[2:]),
              v[f'seq{s}'], v[f'bat{s}'])
             for s, (x, _) in zip(cfg.img_ratios, views[::2])]
    v['seq'], v['bat'] = (sum(f[i] for f in flips) for i in (2, 3))
    print("\nflip pairs (mmseg's protocol's views): sequential = two batch-1 "
          'forwards, batched = one batch of 2\n' + common.table(
              ['scale', 'network input', 'sequential s', 'batched s',
               'batched / sequential'],
              [[a, b, f'{s:.3f}', f'{t:.3f}', f'{t / s:.2f}'] for a, b, s, t
               in flips + [('all', '', v['seq'], v['bat'])]]))
    rows = []
    for k, label in (row.split(' ', 1) for row in MEMORY.splitlines()):
        mem = common.run_child(osp.abspath(__file__), dict(
            kind='memory', which=k, arch=args.arch, size=args.size,
            channels_last=args.channels_last, threads=threads))
        v['mib_' + k] = common.fmt(mem.get('rss_mib'), '.0f')
        rows.append([label, mem.get('error') or v['mib_' + k]])
    print('\npeak memory above the built model and inputs, one call in a '
          'fresh process:\n' + common.table(['what', 'peak RSS MiB'], rows))
    for k in ('r_tf', 'r_ours', 'in_ours'):
        v['met_' + k] = 'met' if v[k] <= 1.1 else 'NOT met'
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
    common.entry(main, memory=child_memory)
