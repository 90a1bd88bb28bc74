"""Export a segmentor to ONNX and check it with ONNX Runtime.

    python tools/deployment/export_onnx.py CONFIG CHECKPOINT OUT.onnx
        [--shape H W] [--dynamic] [--opset N] [--fuse-conv-bn] [--argmax]
        [--simplify-check] [--cfg-options KEY=VALUE ...]

The graph takes raw pixels and normalises them itself: input ``image``,
float32 [N, 3, H, W], values 0..255, RGB (the channel order the config's
network sees); output ``logits``, float32 [N, classes, H, W] at the input
size (the final bilinear resize, align_corners as the head, is in the graph);
with --argmax also ``labels``, int64 [N, H, W]. The config's test-time
resizing and padding (VOC: bottom/right to 513x513 with 127.5) stay the
caller's job; they are recorded in the file's metadata (key
``deeplabplus_mm``) and done by ``tools/infer.py --onnx``.

--shape: the input size (default: the config's test padding size, else its
crop size, else 513 513); with --dynamic only the size the graph is traced
at: batch, height and width are then free. --simplify-check: rewrite the
graph with ONNX Runtime's hardware-independent optimisations (constant
folding, redundant nodes removed, Conv+BN/Add/Mul fused; standard ONNX ops
only) and compare ONNX Runtime with PyTorch on random images (the export
size, and another size with --dynamic): fails if the logits differ by more
than 1e-4 x max(1, |logits|).
"""
import argparse
import os.path as osp
import sys
import time
from typing import Dict, Optional, Tuple

from mmengine.config import Config, DictAction


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('out', metavar='OUT.onnx')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'))
    parser.add_argument('--dynamic', action='store_true',
                        help='symbolic batch, height and width axes')
    parser.add_argument('--opset', type=int,
                        help='ONNX opset (default: the exporter\'s, 18)')
    parser.add_argument('--fuse-conv-bn', action='store_true',
                        help='fold BatchNorm into the convs before export')
    parser.add_argument('--argmax', action='store_true',
                        help='also output the per-pixel class, "labels"')
    parser.add_argument('--simplify-check', action='store_true',
                        help='simplify the graph and check it against '
                        'PyTorch with ONNX Runtime')
    parser.add_argument('--verbose', action='store_true',
                        help='show the exporter\'s own output')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. '
                        'model.backbone.output_stride=32')
    return parser.parse_args()


def run_export(config: str,
               checkpoint: str,
               out_file: str,
               shape: Optional[Tuple[int, int]] = None,
               dynamic: bool = False,
               opset: Optional[int] = None,
               fuse_conv_bn: bool = False,
               argmax: bool = False,
               simplify_check: bool = False,
               cfg_options: Optional[Dict] = None,
               verbose: bool = False,
               log=print) -> Dict:
    """Build, load, export, report (``log``).

    Returns:
        dict: The metadata written (see
        :func:`deeplabplus_mm.apis.export.export_onnx`).
    """
    from deeplabplus_mm.apis.export import (build_deployable,
                                            check_export_args, default_shape,
                                            export_onnx)
    if not osp.isfile(config):
        raise FileNotFoundError(f'{config}: no such config file')
    # What can fail cheaply fails before the model is built.
    check_export_args(out_file, shape, opset)
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    start = time.perf_counter()
    model, cfg, dataset_meta = build_deployable(cfg, checkpoint,
                                                fuse_conv_bn, argmax)
    shape = tuple(shape) if shape else default_shape(cfg)
    log(f'exporting {osp.basename(config)} with {checkpoint}: input '
        f'{"traced at " if dynamic else ""}{shape[0]}x{shape[1]}'
        f'{", dynamic batch/height/width" if dynamic else ""}'
        f'{", BN folded" if fuse_conv_bn else ""}', flush=True)
    meta = export_onnx(
        model,
        out_file,
        shape,
        dynamic,
        opset,
        metadata=dict(
            config=osp.basename(config),
            checkpoint=osp.basename(checkpoint),
            cfg_options=dict(cfg_options or {}),
            fuse_conv_bn=bool(fuse_conv_bn),
            dataset_meta=dict(
                classes=list(dataset_meta.get('classes', ())),
                palette=[list(map(int, c))
                         for c in dataset_meta.get('palette', ())])),
        simplify_check=simplify_check,
        verbose=verbose)
    size_mb = osp.getsize(out_file) / 2**20
    outputs = 'logits, labels' if argmax else 'logits'
    log(f'wrote {out_file}: {size_mb:.1f} MiB, opset {meta["opset"]}, input '
        f'image [{"N" if dynamic else 1}, 3, '
        f'{"H, W" if dynamic else f"{shape[0]}, {shape[1]}"}] raw '
        f'{meta["input"]["channel_order"]} 0..255, outputs {outputs} '
        f'({time.perf_counter() - start:.1f} s)', flush=True)
    for size, (diff, scale, agree) in meta.get('check', {}).items():
        log(f'check {size}: ONNX Runtime vs PyTorch max |diff| {diff:.3g} '
            f'(logits up to {scale:.3g}), labels equal at {agree:.4%} of '
            'pixels', flush=True)
    return meta


def main():
    args = parse_args()
    try:
        run_export(args.config, args.checkpoint, args.out, shape=args.shape,
                   dynamic=args.dynamic, opset=args.opset,
                   fuse_conv_bn=args.fuse_conv_bn, argmax=args.argmax,
                   simplify_check=args.simplify_check,
                   cfg_options=args.cfg_options, verbose=args.verbose)
    except (ImportError, OSError, ValueError) as e:
        sys.exit(f'error: {e}')


if __name__ == '__main__':
    main()
