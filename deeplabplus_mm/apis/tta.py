"""The test-time augmentation a config asks for, or DeepLab's default.

``tools/test.py --tta`` (and ``tools/dist_test.sh``), ``tools/infer.py
--tta`` and :class:`~deeplabplus_mm.apis.Segmenter` take ``tta_model`` and
``tta_pipeline`` from the config. Our dataset configs set both (the zoo's
protocols); a config that sets neither (a user's config that only adds
``custom_imports`` to one of mmseg's, say) gets TF DeepLab's multi-scale +
flip evaluation (:class:`TFMultiScaleSegTTAModel`, the zoo's scales
0.5:0.25:1.75 + flip) over its own test pipeline, and the log says so. A
config that sets only one of the two gets the missing pipeline when it can be
made from the test pipeline (TF's protocol needs one view per image), and a
clear error otherwise. A ``tta_model`` without a ``type`` (``--cfg-options
tta_model.scales=[1.0]`` on a config without TTA) sets options of the
default.
"""
import copy
from typing import List, Tuple

from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log

# The model zoo's evaluation scales (VOC, COCO-VOC, Context, ADE20K).
DEFAULT_SCALES = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
TF_TTA_TYPES = ('TFMultiScaleSegTTAModel', )


class TTAConfigError(ValueError):
    """A config whose test-time augmentation cannot be set up."""


def _test_pipeline(cfg: Config) -> list:
    dataset = cfg.get('test_dataloader', {}).get('dataset', {})
    pipeline = dataset.get('pipeline') or cfg.get('test_pipeline')
    if not pipeline:
        raise TTAConfigError(
            f'{_name(cfg)}: --tta needs tta_pipeline, or a test pipeline '
            '(test_dataloader.dataset.pipeline) to make one from; the '
            'config has neither')
    return list(copy.deepcopy(pipeline))


def single_view_pipeline(pipeline: List[dict]) -> List[dict]:
    """A test pipeline as a TTA pipeline that gives one view per image: the
    loading step first, every other step in ``TestTimeAug`` as the only
    choice of its list (the TTA model makes the views from it)."""
    pipeline = list(copy.deepcopy(pipeline))
    if not pipeline or 'LoadImage' not in str(pipeline[0].get('type', '')):
        raise TTAConfigError('the test pipeline does not start by loading '
                             'the image; cannot make a TTA pipeline of it')
    if any(t.get('type') == 'TestTimeAug' for t in pipeline):
        raise TTAConfigError('the test pipeline already holds TestTimeAug')
    return [pipeline[0],
            dict(type='TestTimeAug', transforms=[[t] for t in pipeline[1:]])]


def _name(cfg: Config) -> str:
    return getattr(cfg, 'filename', None) or 'the config'


def tta_settings(cfg: Config) -> Tuple[ConfigDict, list]:
    """``(tta_model, tta_pipeline)`` for ``cfg``: the config's own, or
    DeepLab's default (logged) where the config has none.

    Raises:
        TTAConfigError: ``tta_model`` names a model that needs several views
            per image and the config has no ``tta_pipeline`` to make them.
    """
    model = cfg.get('tta_model')
    pipeline = cfg.get('tta_pipeline')
    if model and pipeline:
        return copy.deepcopy(model), copy.deepcopy(pipeline)
    said = []
    if not model or 'type' not in model:
        # options without a type (--cfg-options tta_model.scales=...) apply
        # to the default
        options = dict(copy.deepcopy(model or {}))
        model = ConfigDict(type='TFMultiScaleSegTTAModel',
                           scales=list(DEFAULT_SCALES), flip=True)
        model.update(options)
        said.append('tta_model: TF DeepLab multi-scale + flip evaluation '
                    f'(TFMultiScaleSegTTAModel, scales {model.scales}, '
                    f'flip {model.flip}' +
                    ''.join(f', {k} {v}' for k, v in options.items()
                            if k not in ('scales', 'flip')) + ')')
    else:
        model = copy.deepcopy(model)
    if not pipeline:
        if model.get('type') not in TF_TTA_TYPES:
            raise TTAConfigError(
                f'{_name(cfg)}: --tta: tta_model is {model.get("type")}, '
                'which merges several views per image, but the config has no'
                ' tta_pipeline to make them; add tta_pipeline (see '
                "mmseg's configs/_base_/datasets/*.py) or remove tta_model "
                "to use TF DeepLab's multi-scale + flip evaluation")
        pipeline = single_view_pipeline(_test_pipeline(cfg))
        said.append('tta_pipeline: the test pipeline, one view per image')
    print_log(
        f'{_name(cfg)} has no ' + ' and no '.join(
            s.split(':')[0] for s in said) + '; using ' + '; '.join(said) +
        '. Set tta_model / tta_pipeline in the config to choose others.',
        logger='current')
    return model, pipeline
