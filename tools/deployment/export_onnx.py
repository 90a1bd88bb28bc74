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
import sys

from mmengine.config import DictAction


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


def main():
    args = parse_args()
    from deeplabplus_mm.apis.export import run_export
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
