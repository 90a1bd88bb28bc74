"""Segment images with a trained or converted checkpoint.

Used by ``tools/infer.py`` and ``make demo``; works with checkpoints of
``tools/train.py`` and of ``tools/convert_tf_checkpoint.py`` (plain
``state_dict`` + ``meta``), with or without the config's test-time
augmentation.
"""
import copy
from typing import List, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint


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


class Segmenter:
    """A segmentor ready for images.

    Args:
        config: Config file or :class:`Config`.
        checkpoint: ``.pth`` from tools/train.py or the TF converter.
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

    def __init__(self, config: Union[str, Config], checkpoint: str,
                 device: str = 'cpu', tta: bool = False,
                 fuse_conv_bn: Optional[bool] = None,
                 channels_last: Optional[bool] = None):
        import deeplabplus_mm  # noqa: F401  (registers our modules)
        from mmseg.registry import DATASETS, MODELS
        cfg = Config.fromfile(config) if isinstance(config, str) else config
        init_default_scope(cfg.get('default_scope', 'mmseg'))
        model_cfg = copy.deepcopy(cfg.model)
        model_cfg.train_cfg = None
        if 'init_cfg' in model_cfg.get('backbone', {}):
            model_cfg.backbone.init_cfg = None  # weights come from the ckpt
        model_cfg.pop('pretrained', None)
        model = revert_sync_batchnorm(MODELS.build(model_cfg))
        ckpt = load_checkpoint(model, checkpoint, map_location='cpu',
                               strict=True, logger='silent')
        meta = ckpt.get('meta', {}) if isinstance(ckpt, dict) else {}
        dataset_meta = meta.get('dataset_meta')
        if not dataset_meta:  # converted checkpoints: the config's dataset
            dataset_cls = DATASETS.get(cfg.test_dataloader.dataset.type)
            dataset_meta = dict(getattr(dataset_cls, 'METAINFO', {}))
        self.classes = tuple(dataset_meta.get('classes', ()))
        self.palette = dataset_meta.get('palette') or _default_palette(
            model.decode_head.num_classes)
        model.dataset_meta = dataset_meta
        model.to(device)
        from ..models.utils import prepare_for_inference
        fuse_default, cl_default = fast_path_settings(cfg)
        self.fuse_conv_bn = (fuse_default if fuse_conv_bn is None
                             else fuse_conv_bn)
        self.channels_last = (cl_default if channels_last is None
                              else channels_last)
        prepare_for_inference(model, self.fuse_conv_bn,
                              self.channels_last)  # + eval
        self.model = model
        self.tta = tta
        if tta:
            self.tta_model = MODELS.build(
                dict(copy.deepcopy(cfg.tta_model), module=model))
            pipeline = cfg.tta_pipeline
        else:
            pipeline = cfg.get('test_pipeline',
                               cfg.test_dataloader.dataset.pipeline)
        self.pipeline = Compose(_without_annotations(pipeline))

    @torch.no_grad()
    def __call__(self, image_path: str) -> np.ndarray:
        """Predicted label map (H x W, uint8) at the image's resolution.

        Raises whatever the loading pipeline raises for an unreadable image.
        """
        data = self.pipeline(dict(img_path=image_path))
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
    from ..engine.fast_inference_hook import (FastInferenceHook,
                                              fast_inference_enabled)
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
