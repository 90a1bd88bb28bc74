"""Data throughput: the VOC-aug training pipeline and COCO -> VOC masks.

    python tools/benchmarks/data.py           # 96 VOC-size images, 300 COCO
    python tools/benchmarks/data.py --quick   # fewer images and batches

Generated data, cached under ``--cache`` (default
``$TMPDIR/deeplabplus_bench``):

* a synthetic VOC layout (:func:`deeplabplus_mm.datasets.make_synthetic_voc`)
  with image sides drawn from 375..500 pixels, as VOC's;
* a synthetic COCO split
  (:func:`deeplabplus_mm.datasets.synthetic_coco.make_synthetic_coco`):
  images of 480x640 (and a few 427x640, 640x480) with COCO-like instance
  annotations: star-shaped polygons of 8..60 vertices (some objects in two
  parts), compressed RLE and uncompressed-RLE crowd regions, VOC and
  non-VOC categories.

Measured in this process:

1. The training pipeline of ``configs/_base_/datasets/pascal_voc12_aug.py``
   (load, validate the mask, random scale 0.5..2.0, crop 513, flip, pack)
   through a ``PascalVOCAugDataset`` and a torch ``DataLoader`` (batch 4,
   mmengine's ``pseudo_collate``, shuffled) with 0, 1 and 2 workers: images
   per second after the workers delivered their first batch.
2. ``convert_coco_to_voc`` with 1 and 2 processes (fresh output folder each
   time, so every mask is made): images per second and the scaling.
3. Per sample: reading the precomputed mask (``LoadVOCAnnotations``: read,
   decode, check) against rasterising the same image's annotations on the
   fly (``rasterize``: polygons/RLE -> RLE -> decode -> paint largest first)
   as the code this project descends from did in ``__getitem__``.
"""
import contextlib
import os
import os.path as osp
import shutil
import sys
import tempfile
import time

import cv2
import numpy as np

from deeplabplus_mm.utils import benchmark as common

SPLIT = 'train2017'


# ---------------------------------------------------------------------------
# Generated data
# ---------------------------------------------------------------------------


def ensure_voc(cache, num_images):
    from deeplabplus_mm.datasets import make_synthetic_voc
    root = osp.join(cache, f'synthvoc_{num_images}')
    start = time.perf_counter()
    make_synthetic_voc(root, num_train=num_images, num_val=0,
                       size_range=(375, 500), seed=0)
    took = time.perf_counter() - start
    if took > 1:
        print(f'# generated {num_images} VOC-size images in {took:.0f} s',
              flush=True)
    return root


def ensure_coco(cache, num_images):
    """A synthetic COCO root
    (:func:`deeplabplus_mm.datasets.synthetic_coco.make_synthetic_coco`)."""
    from deeplabplus_mm.datasets.synthetic_coco import make_synthetic_coco
    root = osp.join(cache, f'synthcoco_{num_images}')
    start = time.perf_counter()
    count = make_synthetic_coco(root, num_images, SPLIT, seed=0)
    if count:
        print(f'# generated a COCO split of {num_images} images, {count} '
              f'annotations in {time.perf_counter() - start:.0f} s',
              flush=True)
    return root


# ---------------------------------------------------------------------------
# 1. Training pipeline
# ---------------------------------------------------------------------------


def build_train_dataset(root):
    from mmseg.registry import DATASETS

    from deeplabplus_mm.apis.inference import load_config
    cfg = load_config(osp.join(common.REPO, 'configs', '_base_', 'datasets',
                               'pascal_voc12_aug.py'))
    return DATASETS.build(
        dict(type='PascalVOCAugDataset', data_root=root,
             ann_file='ImageSets/Segmentation/train.txt',
             data_prefix=dict(img_path='JPEGImages',
                              seg_map_path='SegmentationClass'),
             pipeline=cfg.train_pipeline)), cfg.train_dataloader.batch_size


def loader_rate(dataset, batch_size, workers, warmup_batches, batches):
    """Images/s of a DataLoader after ``warmup_batches`` batches."""
    import torch
    from mmengine.dataset import pseudo_collate
    from torch.utils.data import DataLoader, RandomSampler
    gen = torch.Generator().manual_seed(0)
    sampler = RandomSampler(dataset, replacement=True,
                            num_samples=batch_size * (warmup_batches +
                                                      batches),
                            generator=gen)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                        num_workers=workers, collate_fn=pseudo_collate)
    it = iter(loader)
    for _ in range(warmup_batches):
        next(it)
    start = time.perf_counter()
    images = 0
    for batch in it:
        images += len(batch['inputs'])
    seconds = time.perf_counter() - start
    del it
    return images / seconds


# ---------------------------------------------------------------------------
# 2./3. COCO -> VOC
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def quiet():
    """Hide mmengine's progress bars (they hold the original sys.stdout, so
    the file descriptors are redirected)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, 'w') as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def coco_rate(root, nproc, scratch):
    from deeplabplus_mm.datasets.preparation import convert_coco_to_voc
    out = tempfile.mkdtemp(dir=scratch)
    try:
        start = time.perf_counter()
        with quiet():
            summary = convert_coco_to_voc(root, SPLIT, out_root=out,
                                          min_pixels=1000, nproc=nproc)
        seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(out, ignore_errors=True)
    done = len(summary.kept) + len(summary.dropped)
    return done / seconds, summary


def serial_part(root):
    """Seconds of the conversion's serial start: read the json, plan the
    tasks, check that the images exist (before any worker starts)."""
    from deeplabplus_mm.datasets.preparation.coco_to_voc import (
        find_image_dir, load_instances_json, plan_tasks)
    from deeplabplus_mm.datasets.utils import find_missing_files
    ann_file = osp.join(root, 'annotations', f'instances_{SPLIT}.json')
    start = time.perf_counter()
    tasks = plan_tasks(load_instances_json(ann_file), ann_file,
                       find_image_dir(root, SPLIT), tempfile.gettempdir())
    find_missing_files([t.image for t in tasks])
    return time.perf_counter() - start


def per_sample_costs(root, out_root, limit):
    """Median seconds per image: precomputed PNG vs on-the-fly raster."""
    from deeplabplus_mm.datasets.preparation.coco_to_voc import (
        load_instances_json, plan_tasks, rasterize)
    from deeplabplus_mm.datasets.transforms import LoadVOCAnnotations
    ann_file = osp.join(root, 'annotations', f'instances_{SPLIT}.json')
    tasks = plan_tasks(load_instances_json(ann_file), ann_file,
                       osp.join(root, SPLIT),
                       osp.join(out_root, 'voc_masks', SPLIT))
    tasks = [t for t in tasks if osp.isfile(t.output)][:limit]
    load = LoadVOCAnnotations(num_classes=21)
    png, raster = [], []
    for task in tasks:
        results = dict(seg_map_path=task.output, ori_shape=(task.height,
                                                            task.width),
                       reduce_zero_label=False, seg_fields=[])
        start = time.perf_counter()
        loaded = load(results)['gt_seg_map']
        png.append(time.perf_counter() - start)
        start = time.perf_counter()
        label = rasterize(task.instances, task.height, task.width)
        raster.append(time.perf_counter() - start)
        if not np.array_equal(label, loaded):
            raise AssertionError(f'{task.stem}: PNG and raster differ')
    return common.median(png), common.median(raster), len(tasks)


# ---------------------------------------------------------------------------


def parse_args():
    parser = common.parser_for(
        __doc__, 'smoke run: 24 VOC images, 3 timed batches, 40 COCO images',
        cache=True)
    parser.add_argument('--voc-images', type=int, default=None)
    parser.add_argument('--batches', type=int, default=None,
                        help='timed batches of 4 per worker setting')
    parser.add_argument('--coco-images', type=int, default=None)
    parser.add_argument('--workers', default='0,1,2')
    parser.add_argument('--nprocs', default='1,2')
    args = common.fill_defaults(parser.parse_args(), voc_images=(24, 96),
                                batches=(3, 24), coco_images=(40, 300))
    args.workers = [int(w) for w in args.workers.split(',')]
    args.nprocs = [int(n) for n in args.nprocs.split(',')]
    return args


def main():
    args = parse_args()
    os.makedirs(args.cache, exist_ok=True)
    voc_root = ensure_voc(args.cache, args.voc_images)
    coco_root = ensure_coco(args.cache, args.coco_images)
    # As mmengine's runner sets it up (set_multi_processing): OpenCV
    # single-threaded, so that workers do not oversubscribe the cores.
    cv2.setNumThreads(0)
    load, threads = common.start_run(args)
    print(f'load average at start: {load:.2f}; cv2.setNumThreads(0) as '
          'mmengine\'s runner does', flush=True)

    dataset, batch_size = build_train_dataset(voc_root)
    rates = {}
    for workers in args.workers:
        rates[workers] = loader_rate(dataset, batch_size, workers,
                                     warmup_batches=max(2, workers),
                                     batches=args.batches)
        print(f'  train pipeline, {workers} workers: '
              f'{rates[workers]:.1f} images/s', flush=True)

    coco = {}
    summary = None
    for nproc in args.nprocs:
        coco[nproc], summary = coco_rate(coco_root, nproc, args.cache)
        print(f'  COCO -> VOC, {nproc} processes: {coco[nproc]:.1f} '
              'images/s', flush=True)
    serial_s = common.median([serial_part(coco_root) for _ in range(3)])
    masks = osp.join(args.cache, f'synthcoco_{args.coco_images}_masks')
    if not osp.isdir(osp.join(masks, 'voc_masks', SPLIT)):
        from deeplabplus_mm.datasets.preparation import convert_coco_to_voc
        with quiet():
            convert_coco_to_voc(coco_root, SPLIT, out_root=masks,
                                min_pixels=1000, nproc=1)
    png_s, raster_s, samples = per_sample_costs(coco_root, masks,
                                                 limit=args.coco_images)

    print()
    print(f'VOC-aug train pipeline on {len(dataset)} synthetic images of '
          f'375..500 px, crop 513, batch {batch_size}, {args.batches} '
          'timed batches per setting')
    print(common.table(
        ['DataLoader workers', 'images/s', 'vs 0 workers'],
        [[w, f'{r:.1f}', f'{r / rates[args.workers[0]]:.2f}x']
         for w, r in rates.items()]))
    print()
    print(f'COCO -> VOC masks, {args.coco_images} images of ~480x640 '
          f'({len(summary.kept)} kept, {len(summary.dropped)} dropped)')
    base = coco[args.nprocs[0]]
    print(common.table(
        ['processes', 'images/s', 'speed-up', 'scaling efficiency'],
        [[n, f'{r:.1f}', f'{r / base:.2f}x',
          f'{r / base / (n / args.nprocs[0]):.0%}'] for n, r in coco.items()]))
    total_1 = args.coco_images / base
    print(f'serial part (read json, plan, check images exist): '
          f'{serial_s:.2f} s of the {total_1:.2f} s with '
          f'{args.nprocs[0]} process(es)')
    print()
    print(f'per sample, median of {samples} COCO images')
    print(common.table(
        ['label source', 'ms/sample'],
        [['precomputed PNG (LoadVOCAnnotations: read, decode, check)',
          f'{png_s * 1e3:.2f}'],
         ['on the fly (rasterize: polygons/RLE -> decode -> paint)',
          f'{raster_s * 1e3:.2f}']]))
    loader = ', '.join(f'{w} workers {r:.1f}' for w, r in rates.items())
    scaling = ', '.join(f'{n} proc {r:.1f}' for n, r in coco.items())
    top = max(args.nprocs)
    print()
    print(f'SUMMARY: train pipeline images/s: {loader} (best '
          f'{max(rates.values()) / rates[args.workers[0]]:.2f}x of '
          f'{args.workers[0]} workers); COCO->VOC images/s: {scaling} '
          f'({coco[top] / base:.2f}x with {top} processes, '
          f'{coco[top] / base / (top / args.nprocs[0]):.0%} of linear); '
          f'on-the-fly rasterisation {raster_s / png_s:.2f}x the cost of '
          f'loading the precomputed PNG ({raster_s * 1e3:.2f} vs '
          f'{png_s * 1e3:.2f} ms)')


if __name__ == '__main__':
    sys.exit(main())
