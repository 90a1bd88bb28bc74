"""Convert a TensorFlow DeepLab checkpoint to a PyTorch .pth.

    python tools/convert_tf_checkpoint.py SRC OUT.pth [--config CONFIG]
        [--momentum]
    python tools/convert_tf_checkpoint.py --zoo NAME [OUT.pth] [--mirror URL]
    python tools/convert_tf_checkpoint.py --list

SRC: a checkpoint prefix (``.../model.ckpt``), a folder holding one, or a
model-zoo ``.tar.gz`` (read without unpacking). Backbones: aligned Xception
41/65/71, MobileNetV2 (any depth multiplier); heads: ASPP (+ decoder) and
the Dense Prediction Cell. The variant, head and number of classes are
detected from the variable names; the parameters to fill come from CONFIG's
model (default: the config of ours that fits, printed at the end), and the
first TF variables that do not fit it are named. DeepLab checkpoints become
a full segmentor ``state_dict`` (for ``tools/test.py``), ImageNet ones the
backbone alone (for ``model.backbone.init_cfg``). The output is written
atomically and loads with ``torch.load(weights_only=True)``. With
--momentum it also holds the checkpoint's ``/Momentum`` slots, which
``tools/train.py CONFIG --cfg-options load_from=OUT.pth load_momentum=True``
puts into the optimizer, as TF's fine-tuning restores them.

--zoo NAME: a row of TF DeepLab's model zoo (--list shows them, with TF's
published mIoU): downloads its tarball into the cache (~/.cache/deeplabplus_mm
or $DEEPLABPLUS_MM_CACHE; resumable, size-checked), checks that it holds the
row's checkpoint, converts it with the row's config into OUT (default
checkpoints/NAME.pth; ImageNet rows: the file the configs' init_cfg names) and
writes that config next to it (OUT with .py). --mirror URL (or a folder, or
$DEEPLABPLUS_MM_MIRROR) replaces the official hosts: it must serve the
tarballs under their file names.

Needs neither TensorFlow nor torch, mmseg or mmcv: only numpy and mmengine's
config reader.
"""
import argparse
import importlib
import os
import importlib.util
import os.path as osp
import sys
import time

# The checkout (in a wheel: deeplabplus_mm/.mim) these tools live in; the
# other tools import it from here, as this one must also run alone
# (runpy.run_path, without tools/ on sys.path).
REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def import_converters():
    """``deeplabplus_mm.converters`` without running
    ``deeplabplus_mm/__init__.py``, which registers our models in mmseg
    (importing torch, mmcv and mmseg: seconds and hundreds of MiB that a
    conversion does not need)."""
    if 'deeplabplus_mm' not in sys.modules:
        spec = importlib.util.find_spec('deeplabplus_mm')
        if spec is None:
            sys.exit('error: the deeplabplus_mm package is not installed')
        sys.modules['deeplabplus_mm'] = importlib.util.module_from_spec(spec)
    return importlib.import_module('deeplabplus_mm.converters')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('src', nargs='?',
                        help='checkpoint prefix, folder or .tar.gz (with '
                        '--zoo: the output .pth)')
    parser.add_argument('out', nargs='?', help='output .pth file')
    parser.add_argument('--zoo', metavar='NAME',
                        help='download and convert this model-zoo row')
    parser.add_argument('--list', action='store_true',
                        help='list the model zoo and exit')
    parser.add_argument('--mirror', metavar='URL',
                        default=os.environ.get('DEEPLABPLUS_MM_MIRROR'),
                        help='with --zoo: fetch the tarballs from this URL '
                        'or folder instead of the official hosts')
    parser.add_argument(
        '--config',
        help='config whose model the checkpoint fills (default: ours that '
        'fits the checkpoint)')
    parser.add_argument(
        '--keep-background-class',
        action='store_true',
        help='keep logits channel 0 of 151-class (ADE20K) checkpoints '
        'instead of dropping it for mmseg\'s 150-class ADE20K')
    parser.add_argument(
        '--momentum',
        action='store_true',
        help='also carry the /Momentum slots (TF\'s momentum accumulators) '
        'for training with load_momentum=True')
    args = parser.parse_args(argv)
    if args.list:
        return args
    if args.zoo is not None:
        if args.out is not None:
            parser.error('--zoo NAME takes one output path at most')
        if args.config is not None:
            parser.error('--zoo converts with the row\'s own config; '
                         'convert the cached tarball with SRC OUT --config '
                         'to use another')
        args.out, args.src = args.src, None
    elif args.src is None or args.out is None:
        parser.error('SRC and OUT are required (or --zoo NAME, --list)')
    return args


class _Progress:
    """mmengine's progress bar over the tensors, on a terminal only."""

    def __init__(self):
        self.bar = None

    def __call__(self, done, total):
        if not sys.stdout.isatty():
            return
        if self.bar is None:
            from mmengine.utils import ProgressBar
            self.bar = ProgressBar(total)
        self.bar.update()
        if done == total:
            sys.stdout.write('\n')


def zoo_main(args):
    """--list and --zoo NAME (after :func:`import_converters`)."""
    zoo = importlib.import_module('deeplabplus_mm.converters.zoo')
    zoo_convert = importlib.import_module(
        'deeplabplus_mm.converters.zoo_convert')
    if args.list:
        print('\n'.join(zoo.list_lines()))
        return
    start = time.perf_counter()
    try:
        row = zoo.lookup(args.zoo)
        meta = zoo_convert.convert_row(
            row, args.out, args.mirror, args.keep_background_class,
            configs_dir=osp.join(REPO, 'configs'), progress=_Progress())
    except zoo.ZooError as e:
        sys.exit(f'error: {e}')
    out, config = meta['out'], meta['written_config']
    kind = 'DeepLab segmentor' if meta['segmentor'] else 'ImageNet backbone'
    print(f'{row.name}: {meta["variant"]} {kind}, {meta["num_tensors"]} '
          f'tensors, classes: {meta["num_classes"]} -> {out}, config: '
          f'{config} ({time.perf_counter() - start:.2f} s)')
    if not meta['segmentor']:
        print(f'{config} trains from it (model.backbone.init_cfg); the '
              f'configs of {meta["variant"]} expect it at {row.default_out}')
        return
    print('test it with:')
    print(f'  python tools/test.py {config} {out}')
    for result in row.results:
        if result.config != row.config:
            tta = ' --tta' if result.tta else ''
            print(f'  python tools/test.py {result.config} {out}{tta}')
    for result in row.results:
        print(f'TF\'s published mIoU: {result.miou:.2f} ({result.split}, '
              f'{result.protocol}) with {result.config}'
              f'{" --tta" if result.tta else ""}')
    print(f'segment your images: python tools/infer.py {config} {out} '
          'IMAGE... --out-dir work_dirs/infer')


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    conv = import_converters()
    if args.list or args.zoo is not None:
        return zoo_main(args)
    if args.config is not None and not osp.isfile(args.config):
        sys.exit(f'error: {args.config}: no such config file')
    try:
        with conv.open_checkpoint(args.src) as reader:
            meta = conv.convert_checkpoint(
                reader, args.out, config=args.config,
                keep_background_class=args.keep_background_class,
                configs_dir=osp.join(REPO, 'configs'), progress=_Progress(),
                momentum=args.momentum)
    except (conv.TFCheckpointError, conv.ConversionError) as e:
        sys.exit(f'error: {args.src}: {e}')
    kind = 'DeepLab segmentor' if meta['segmentor'] else 'ImageNet backbone'
    print(f'{meta["variant"]} {kind}, {meta["num_tensors"]} tensors, '
          f'classes: {meta["num_classes"]}, TF global_step: '
          f'{meta["global_step"]}, config: {meta["config"]} -> {args.out} '
          f'({time.perf_counter() - start:.2f} s)')
    if meta['ignored']:
        slots = [n for n in meta['ignored']
                 if conv.detect.IGNORED_RE.search(n)]
        others = [n for n in meta['ignored'] if n not in slots]
        parts = []
        if slots:
            parts.append(f'{len(slots)} optimizer slots / step counter')
        if others:
            parts.append(f'{len(others)} not in the model (classifier): '
                         f'{", ".join(others[:5])}'
                         f'{" ..." if len(others) > 5 else ""}')
        print(f'ignored {len(meta["ignored"])} TF variables: '
              f'{"; ".join(parts)}')
    if meta['fake_quant']:
        print(f'8-bit: {meta["fake_quant"]} fake-quantisation ranges loaded '
              '(TF\'s quantised inference)')
    dropped = meta['dropped_quant_ranges']
    if dropped:
        print(f'8-bit checkpoint into a float model: dropped its '
              f'{len(dropped)} fake-quantisation range ends (kept in the '
              'output\'s meta["dropped_quant_ranges"]), e.g. ' + ', '.join(
                  f'{n} = {v:.6g}' for n, v in list(dropped.items())[:4]))
    if meta['momentum'] is not None:
        print(f'carried {meta["momentum"]} /Momentum slots (tf_momentum); '
              f'fine-tune with --cfg-options load_from={args.out} '
              'load_momentum=True')
    if meta['skipped']:
        print(f'skipped non-numeric entries: {", ".join(meta["skipped"])}')
    if meta['segmentor'] and meta['num_classes'] != meta[
            'config_num_classes']:
        print(f'note: {meta["num_classes"]} classes, the config has '
              f'{meta["config_num_classes"]}')
    for line in conv.usage_lines(meta, args.out):
        print(line)


if __name__ == '__main__':
    main()
