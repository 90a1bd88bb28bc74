"""Segment images with a trained or converted checkpoint.

Used by ``tools/infer.py``, ``tools/deployment/export_onnx.py`` and ``make
demo``; works with checkpoints of ``tools/train.py`` and of
``tools/convert_tf_checkpoint.py`` (plain ``state_dict`` + ``meta``), with or
without the config's test-time augmentation. Images are files or BGR arrays
(video frames).
"""
import copy
import os.path as osp
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope


def _without_annotations(pipeline):
    """A pipeline config with every annotation-loading step removed (also
    inside TestTimeAug's transform lists)."""
    out = []
    for t in copy.deepcopy(pipeline):
        if isinstance(t, list):
            kept = _without_annotations(t)
            if kept:
                out.append(kept)
        elif 'Annotations' in t.get('type', ''):
            continue
        else:
            if t.get('type') == 'TestTimeAug':
                t['transforms'] = _without_annotations(t['transforms'])
            out.append(t)
    return out


def _from_array(pipeline):
    """The same pipeline for images given as arrays: its first step (the
    file loader) becomes mmseg's ``LoadImageFromNDArray``."""
    pipeline = copy.deepcopy(pipeline)
    if not pipeline or 'LoadImage' not in pipeline[0].get('type', ''):
        raise ValueError('the test pipeline does not start by loading the '
                         'image; cannot feed it arrays')
    pipeline[0] = dict(type='LoadImageFromNDArray')
    return pipeline


class CheckpointMismatchError(ValueError):
    """A checkpoint whose parameters do not fit the model of the config."""


def _preview(keys: List[str], count: int = 3) -> str:
    more = f', ... ({len(keys)} in all)' if len(keys) > count else ''
    return ', '.join(keys[:count]) + more


def load_weights(model: torch.nn.Module, checkpoint: str) -> dict:
    """Load ``checkpoint`` into ``model``; every parameter and buffer must be
    filled, with the same shape, and nothing be left over.

    A ``'module.'`` prefix (DDP) is dropped, as mmengine does.

    Returns:
        dict: The checkpoint's ``meta`` (empty when it has none).

    Raises:
        FileNotFoundError: ``checkpoint`` does not exist.
        ValueError: It cannot be read as a checkpoint.
        CheckpointMismatchError: Its keys or shapes do not fit ``model``;
            the message names the first missing, unexpected and mismatched
            keys.
    """
    from mmengine.runner.checkpoint import _load_checkpoint

    from ..engine import register_safe_checkpoints
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'{checkpoint}: no such checkpoint file')
    register_safe_checkpoints()  # training checkpoints load weights_only
    try:
        ckpt = _load_checkpoint(checkpoint, map_location='cpu',
                                logger='silent')
    except Exception as e:
        raise ValueError(f'{checkpoint}: not a readable checkpoint '
                         f'({type(e).__name__}: {e})') from None
    if not isinstance(ckpt, dict):
        raise ValueError(f'{checkpoint}: not a checkpoint (holds a '
                         f'{type(ckpt).__name__}, not a dict)')
    state = ckpt.get('state_dict', ckpt)
    state = {(k[len('module.'):] if k.startswith('module.') else k): v
             for k, v in state.items() if isinstance(v, torch.Tensor)}
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f'{k} (checkpoint {list(state[k].shape)}, model '
        f'{list(own[k].shape)})' for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    problems = []
    if missing:
        problems.append(f'{len(missing)} missing keys: {_preview(missing)}')
    if unexpected:
        problems.append(f'{len(unexpected)} unexpected keys: '
                        f'{_preview(unexpected)}')
    if shapes:
        problems.append(f'{len(shapes)} shape mismatches: {_preview(shapes)}')
    if problems:
        raise CheckpointMismatchError(
            f'{checkpoint} does not fit the model of the config: '
            + '; '.join(problems))
    model.load_state_dict(state, strict=True)
    meta = ckpt.get('meta')
    return meta if isinstance(meta, dict) else {}


def register_modules(scope: str = 'mmseg') -> None:
    """Register our and mmseg's modules; make ``scope`` the default."""
    import deeplabplus_mm  # noqa: F401  (registers our modules)
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    init_default_scope(scope)


def load_config(config: Union[str, Config]) -> Config:
    """A config file (or Config) with our and mmseg's modules registered and
    mmseg's default scope set."""
    cfg = Config.fromfile(config) if isinstance(config, str) else config
    register_modules(cfg.get('default_scope', 'mmseg'))
    return cfg


def build_model(config, seed: Optional[int] = None) -> torch.nn.Module:
    """The segmentor of a config, with random weights.

    Our and mmseg's modules are registered, SyncBN is reverted to BN and the
    pretrained initialisation is dropped (``init_weights`` is not called:
    nothing is downloaded or loaded). The tests, the benchmarks and
    :func:`build_segmentor` build their models with it.

    Args:
        config: A config file, a :class:`Config`, or a config's ``model``
            (not modified).
        seed: Seeds torch's random generator first, when given.
    """
    from mmseg.registry import MODELS
    if isinstance(config, (str, Config)):
        model_cfg = load_config(config).model
    else:
        register_modules()
        model_cfg = config
    model_cfg = copy.deepcopy(model_cfg)
    model_cfg.pop('pretrained', None)
    if 'init_cfg' in model_cfg.get('backbone', {}):
        model_cfg.backbone.init_cfg = None
    if seed is not None:
        torch.manual_seed(seed)
    return revert_sync_batchnorm(MODELS.build(model_cfg))


def build_segmentor(cfg: Config, checkpoint: str):
    """The config's segmentor (:func:`build_model`, no training settings)
    with ``checkpoint``'s weights, on the CPU, and its dataset meta (the
    checkpoint's, else the test dataset class's).

    Returns:
        tuple: ``(model, dataset_meta)``.
    """
    from mmseg.registry import DATASETS
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.train_cfg = None
    model = build_model(model_cfg)
    meta = load_weights(model, checkpoint)
    dataset_meta = meta.get('dataset_meta')
    if not dataset_meta:  # converted checkpoints: the config's dataset
        dataset_cls = DATASETS.get(cfg.test_dataloader.dataset.type)
        dataset_meta = dict(getattr(dataset_cls, 'METAINFO', {}))
    dataset_meta = dict(dataset_meta)
    if not dataset_meta.get('palette'):
        dataset_meta['palette'] = _default_palette(
            model.decode_head.num_classes)
    model.dataset_meta = dataset_meta
    return model, dataset_meta


class Segmenter:
    """A segmentor ready for images.

    Args:
        config: Config file or :class:`Config`, or a model name of our
            metafiles (a config name, or a TF zoo name such as
            ``xception65_coco_voc_trainaug``: its converted checkpoint is
            made in the cache when absent, :func:`.model_zoo.resolve`).
        checkpoint: ``.pth`` from tools/train.py or the TF converter
            (optional with a model name).
        device: 'cpu' or 'cuda' (or 'cuda:N').
        tta: Use the config's ``tta_pipeline`` and ``tta_model`` (multi-scale
            + flip, merged view by view by the config's TTA model).
        fuse_conv_bn: Fold BatchNorm into the preceding convs
            (:func:`~deeplabplus_mm.models.utils.fuse_conv_bn`): faster, same
            predictions up to float rounding. None (default): as the
            config's test runs do (:func:`fast_path_settings`).
        channels_last: Keep the weights in channels_last memory format
            (faster convs). None (default): as the config's test runs do.
    """

    def __init__(self, config: Union[str, Config],
                 checkpoint: Optional[str] = None,
                 device: str = 'cpu', tta: bool = False,
                 fuse_conv_bn: Optional[bool] = None,
                 channels_last: Optional[bool] = None):
        if isinstance(config, str) and not osp.isfile(config) \
                and not config.endswith('.py'):  # a model name
            from .model_zoo import resolve
            config, checkpoint = resolve(config, checkpoint)
        if checkpoint is None:
            raise ValueError('a checkpoint is needed with a config file')
        cfg = load_config(config)
        model, dataset_meta = build_segmentor(cfg, checkpoint)
        model.to(device)
        from ..models.utils import prepare_for_inference
        # None: as the config's test runs do (fast unless fast_inference=False)
        fuse_default, cl_default = fast_path_settings(cfg)
        self.fuse_conv_bn = (fuse_default if fuse_conv_bn is None
                             else fuse_conv_bn)
        self.channels_last = (cl_default if channels_last is None
                              else channels_last)
        prepare_for_inference(model, self.fuse_conv_bn,
                              self.channels_last)  # + eval
        self._setup(cfg, model, dataset_meta, tta)

    def _setup(self, cfg: Config, model, dataset_meta: Dict,
               tta: bool) -> None:
        """Class names, palette, the (TTA) model and the pipelines."""
        from mmseg.registry import MODELS
        self.classes = tuple(dataset_meta.get('classes', ()))
        self.palette = dataset_meta['palette']
        self.model = model
        self.tta = tta
        if tta:
            from .tta import tta_settings
            tta_model, pipeline = tta_settings(cfg)
            self.tta_model = MODELS.build(dict(tta_model, module=model))
        else:
            pipeline = cfg.get('test_pipeline',
                               cfg.test_dataloader.dataset.pipeline)
        pipeline = _without_annotations(pipeline)
        self.pipeline = Compose(pipeline)
        self._array_pipeline: Optional[Compose] = None
        self._array_pipeline_cfg = pipeline

    @torch.no_grad()
    def __call__(self, image: Union[str, np.ndarray]) -> np.ndarray:
        """Predicted label map (H x W, uint8) at the image's resolution.

        Args:
            image: An image file, or an H x W x 3 BGR uint8 array (as
                ``cv2.imread`` and video decoding give).

        Raises whatever the loading pipeline raises for an unreadable image.
        """
        if isinstance(image, np.ndarray):
            if self._array_pipeline is None:
                self._array_pipeline = Compose(
                    _from_array(self._array_pipeline_cfg))
            data = self._array_pipeline(dict(img=image))
        else:
            data = self.pipeline(dict(img_path=image))
        if self.tta:
            batch = dict(inputs=[[x] for x in data['inputs']],
                         data_samples=[[s] for s in data['data_samples']])
            sample = self.tta_model.test_step(batch)[0]
        else:
            batch = dict(inputs=[data['inputs']],
                         data_samples=[data['data_samples']])
            sample = self.model.test_step(batch)[0]
        return sample.pred_sem_seg.data[0].cpu().numpy().astype(np.uint8)


def fast_path_settings(cfg: Config) -> Tuple[bool, bool]:
    """``(fuse_conv_bn, channels_last)`` as a test run of ``cfg`` uses them:
    both off when the config sets ``fast_inference = False``; else the
    arguments of its ``FastInferenceHook`` entry in ``custom_hooks``, both on
    without one (``tools/test.py`` adds the hook to such configs)."""
    from ..engine import FastInferenceHook, fast_inference_enabled
    if not fast_inference_enabled(cfg):
        return False, False
    for hook in cfg.get('custom_hooks', []):
        if hook.get('type') in ('FastInferenceHook', FastInferenceHook):
            return (bool(hook.get('fuse_conv_bn', True)),
                    bool(hook.get('channels_last', True)))
    return True, True


def _default_palette(num_classes: int) -> List[Tuple[int, int, int]]:
    rng = np.random.default_rng(0)
    return [tuple(int(c) for c in rng.integers(0, 256, 3))
            for _ in range(num_classes)]
