"""Test (and evaluate) a segmentor: mmseg's ``tools/test.py`` with our
modules registered and CPU-only distributed runs made to work. Same flags as
mmseg's tool, plus ``--no-fast``.

Testing takes the fast path by default (BN folded into the convs,
channels_last weights: ``FastInferenceHook``; same predictions): with our
configs through their ``custom_hooks``, with other configs because this tool
adds the hook. ``--no-fast`` (or ``--cfg-options fast_inference=False``) runs
the plain model."""
import argparse
import os
import os.path as osp
import sys
import warnings

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from deeplabplus_mm.apis.tta import TTAConfigError, tta_settings
from deeplabplus_mm.engine import (FastInferenceHook, fast_inference_enabled,
                                   run_main, setup_launcher, setup_runtime)
from deeplabplus_mm.evaluation import add_voc_submission_writer


def parse_args():
    parser = argparse.ArgumentParser(
        description='MMSeg test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir',
        help='if specified, the evaluation metric results will be dumped '
        'into the directory as json')
    parser.add_argument(
        '--out',
        type=str,
        help='the directory to save output prediction for offline '
        'evaluation; for VOC-class datasets also the VOC server layout '
        'results/VOC2012/Segmentation/comp6_test_cls/<name>.png')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir',
        help='directory where painted images will be saved. If specified, '
        'it will be automatically saved to the work_dir/timestamp/show_dir')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair '
        'in xxx=yyy format will be merged into config file.')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument(
        '--tta', action='store_true', help='Test time augmentation')
    parser.add_argument(
        '--no-fast',
        action='store_true',
        help='test the plain model: no BN folding, no channels_last (the '
        'same as --cfg-options fast_inference=False)')
    # Deprecated (the fast path is the default): still turn it on, even
    # where the config turned it off.
    parser.add_argument('--fuse-conv-bn', action='store_true',
                        help=argparse.SUPPRESS)
    parser.add_argument('--channels-last', action='store_true',
                        help=argparse.SUPPRESS)
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if args.no_fast and (args.fuse_conv_bn or args.channels_last):
        parser.error('--no-fast contradicts --fuse-conv-bn/--channels-last')
    if args.fuse_conv_bn or args.channels_last:
        warnings.warn('--fuse-conv-bn and --channels-last are deprecated: '
                      'the fast path is the default (--no-fast turns it '
                      'off)', FutureWarning)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def trigger_visualization_hook(cfg, args):
    default_hooks = cfg.default_hooks
    if 'visualization' not in default_hooks:
        raise RuntimeError(
            'VisualizationHook must be included in default_hooks. Refer to '
            'usage "visualization=dict(type=\'VisualizationHook\')"')
    visualization_hook = default_hooks['visualization']
    visualization_hook['draw'] = True
    if args.show:
        visualization_hook['show'] = True
        visualization_hook['wait_time'] = args.wait_time
    if args.show_dir:
        cfg.visualizer['save_dir'] = args.show_dir
    return cfg


def main():
    args = parse_args()
    setup_runtime()  # checkpoints that load weights_only
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args)
    if args.tta:
        # the config's TTA, or TF DeepLab's multi-scale + flip (logged)
        try:
            tta_model, tta_pipeline = tta_settings(cfg)
        except TTAConfigError as e:
            sys.exit(f'error: {e}')
        cfg.test_dataloader.dataset.pipeline = tta_pipeline
        tta_model.module = cfg.model
        cfg.model = tta_model
    if args.no_fast:
        cfg.fast_inference = False
    elif args.fuse_conv_bn or args.channels_last:
        cfg.fast_inference = True  # asked for explicitly
    hooks = cfg.get('custom_hooks', [])
    if fast_inference_enabled(cfg) and not any(
            h.get('type') in ('FastInferenceHook', FastInferenceHook)
            for h in hooks):
        # a config without our runtime (e.g. one of mmseg's)
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
            dict(type='FastInferenceHook')]
    if args.out is not None:
        cfg.test_evaluator['output_dir'] = args.out
        cfg.test_evaluator['keep_results'] = True
        # + palette PNGs in the VOC server layout for VOC-class datasets
        add_voc_submission_writer(cfg, args.out)
    setup_launcher(cfg)
    runner = Runner.from_cfg(cfg)
    runner.test()


if __name__ == '__main__':
    run_main(main)  # gloo runs end without the teardown, failed ones too
