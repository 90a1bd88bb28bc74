"""Model names (our metafiles' ``Name`` / ``Alias``) -> config and weights.

mmengine's ``BaseInferencer`` looks a name up only in the metafiles of the
inferencer's scope (``mmseg``), and its weights must be a ``.pth`` URL;
ours are TF tarballs that must be converted. :func:`resolve` reads our
model index (``deeplabplus_mm/.mim/model-index.yml``, written by
``tools/generate_model_index.py``) as mmengine reads mmseg's, and turns a
zoo tarball into a converted ``.pth`` in the cache
(``~/.cache/deeplabplus_mm`` or ``$DEEPLABPLUS_MM_CACHE``; downloaded from
``$DEEPLABPLUS_MM_MIRROR`` when set). :class:`~deeplabplus_mm.apis.Segmenter`
takes our names. ``MMSegInferencer(model=NAME)`` takes them after an
explicit :func:`register_model_names` (it wraps ``MMSegInferencer.__init__``:
mmengine finds names only in the metafiles of a scope listed in its
``MODULE2PACKAGE`` and wants ``.pth`` weights, so there is no way in without
one); other names go to mmseg unchanged.
"""
import difflib
import functools
import os
import os.path as osp
from typing import Iterator, Optional, Tuple

MIM_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), '.mim')


def _models() -> Iterator[dict]:
    """Every model entry of our metafiles."""
    from mmengine.fileio import load
    index = load(osp.join(MIM_DIR, 'model-index.yml'))
    for metafile in index['Import']:
        yield from load(osp.join(MIM_DIR, metafile))['Models']


def find_model(name: str) -> Optional[dict]:
    """The metafile entry whose Name or Alias is ``name`` (any case)."""
    key = name.lower()
    for model in _models():
        aliases = model.get('Alias', [])
        if key == model['Name'].lower() or key in [a.lower()
                                                   for a in aliases]:
            return model
    return None


def resolve(name: str, weights: Optional[str] = None,
            mirror: Optional[str] = None) -> Tuple[str, str]:
    """``(config file, weights file)`` of a model name.

    Without ``weights``, the model's zoo checkpoint converted into the
    cache (``<cache>/<zoo name>.pth``), downloaded and converted first when
    absent.

    Raises:
        ValueError: unknown name (closest names given), or a config for
            which no trained checkpoint is published and no ``weights``
            were given.
        ZooError: download or conversion failed.
    """
    from ..converters import zoo, zoo_convert
    model = find_model(name)
    if model is None:
        names = [m['Name'] for m in _models()]
        names += [a for m in _models() for a in m.get('Alias', [])]
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        hint = f'; did you mean {" or ".join(close)}?' if close else ''
        raise ValueError(f'unknown model name {name!r}{hint}')
    config = osp.join(MIM_DIR, model['Config'])
    if weights is not None:
        return config, weights
    row = next((r for r in zoo.ZOO_ROWS
                if r.head and r.url == model.get('Weights')), None)
    if row is None:
        raise ValueError(
            f'{name}: no trained checkpoint is published for '
            f'{model["Config"]} (train one, then pass its weights)')
    out = osp.join(zoo_convert.cache_dir(), f'{row.name}.pth')
    if not osp.isfile(out):
        zoo_convert.convert_row(
            row, out, mirror or os.environ.get(zoo_convert.MIRROR_ENV),
            configs_dir=osp.join(MIM_DIR, 'configs'))
    return config, out


def register_model_names() -> None:
    """Let ``MMSegInferencer(model=NAME)`` resolve our model names (and
    zoo names) with :func:`resolve`; the dataset's classes and palette
    come from the config (converted checkpoints carry none).

    Opt-in: it changes mmseg's class for the whole process, so only a call
    to it does (idempotent)."""
    from mmseg.apis import MMSegInferencer
    init = MMSegInferencer.__init__
    if getattr(init, 'deeplabplus_mm', False):
        return

    @functools.wraps(init)
    def __init__(self, model, weights=None, *args, **kwargs):
        ours = (isinstance(model, str) and not osp.isfile(model)
                and find_model(model) is not None)
        converted = ours and weights is None
        if ours:
            model, weights = resolve(model, weights)
        init(self, model, weights, *args, **kwargs)
        if converted:
            _dataset_meta_from_config(self)

    __init__.deeplabplus_mm = True
    MMSegInferencer.__init__ = __init__


def _dataset_meta_from_config(inferencer) -> None:
    """Classes and palette of the config's test dataset for a converted
    checkpoint, which has none (mmseg falls back to Cityscapes')."""
    from mmseg.registry import DATASETS
    dataset = DATASETS.get(inferencer.cfg.test_dataloader.dataset.type)
    info = getattr(dataset, 'METAINFO', {})
    classes = info.get('classes')
    if classes and len(classes) == inferencer.model.decode_head.num_classes:
        inferencer.model.dataset_meta = {'classes': classes,
                                         'palette': info.get('palette')}
