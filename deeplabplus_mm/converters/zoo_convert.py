"""A zoo row's checkpoint, converted: its tarball downloaded into the cache
(:func:`fetch`), checked to hold the row's checkpoint, converted with the
row's config and that config written next to it (:func:`convert_row`).
"""
import os
import os.path as osp
import sys
import urllib.parse
import urllib.request
from typing import Optional

from .download import check_gzip, download
from .zoo import Row, ZooError, describe

CACHE_ENV = 'DEEPLABPLUS_MM_CACHE'
MIRROR_ENV = 'DEEPLABPLUS_MM_MIRROR'


def cache_dir() -> str:
    """``$DEEPLABPLUS_MM_CACHE``, else ``~/.cache/deeplabplus_mm``."""
    return os.environ.get(CACHE_ENV) or osp.join(
        osp.expanduser('~'), '.cache', 'deeplabplus_mm')


def source_url(row: Row, mirror: Optional[str] = None) -> str:
    """The row's URL, or its file name under ``mirror`` (a URL or a local
    folder) when given."""
    if not mirror:
        return row.url
    if '://' not in mirror:  # a folder
        return urllib.parse.urljoin(
            'file:', urllib.request.pathname2url(
                osp.join(osp.abspath(mirror), row.filename)))
    return mirror.rstrip('/') + '/' + row.filename


def fetch(row: Row, mirror: Optional[str] = None,
          cache: Optional[str] = None, stream=None) -> str:
    """The row's tarball in the cache, downloaded first if absent.

    A download is checked (announced size, gzip integrity) before it takes
    its name in the cache; a damaged one is deleted.
    """
    cache = cache or cache_dir()
    path = osp.join(cache, row.filename)
    if osp.isfile(path):
        print(f'using {path} (cached)', file=stream or sys.stdout)
        return path
    url = source_url(row, mirror)

    def check(part):
        try:
            check_gzip(part)
        except ZooError as e:
            raise ZooError(f'the download from {url} is not a complete gzip '
                           f'tarball ({e}); deleted it: try again, or check '
                           'the mirror') from None

    return download(url, path, check=check, stream=stream)


def check_content(row: Row, variant: str, head: Optional[str],
                  classes: Optional[int], path: str) -> None:
    """Raises ZooError unless a checkpoint holds what ``row`` says."""
    want = describe(row.variant, row.head, row.classes)
    got = describe(variant, head, classes)
    if want != got:
        raise ZooError(
            f'{path} is not the expected checkpoint of {row.name}: it holds '
            f'{got}, the zoo row {want}')


def config_path(out: str) -> str:
    """The config written next to a converted checkpoint."""
    return osp.splitext(out)[0] + '.py'


def write_config(row: Row, src: str, out: str, num_classes=None) -> str:
    """The row's config, whole (``_base_`` files merged), next to ``out``:
    an ImageNet row's with ``model.backbone.init_cfg`` pointing at ``out``;
    ``num_classes`` replaces the head's when given. Written atomically."""
    from mmengine.config import Config
    cfg = Config.fromfile(src, import_custom_modules=False)
    if row.head is None:
        cfg.merge_from_dict({'model.backbone.init_cfg': dict(
            type='Pretrained', checkpoint=out)})
    elif num_classes is not None:
        cfg.merge_from_dict({'model.decode_head.num_classes': num_classes})
    dest = config_path(out)
    tmp = dest + '.tmp.py'
    try:
        cfg.dump(tmp)
        os.replace(tmp, dest)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    return dest


def convert_row(row: Row, out: Optional[str] = None,
                mirror: Optional[str] = None,
                keep_background_class: bool = False,
                configs_dir: Optional[str] = None, progress=None,
                stream=None) -> dict:
    """Download (or take from the cache) a zoo row's tarball, check that it
    holds the row's checkpoint, convert it with the row's config into
    ``out`` and write that config next to it (:func:`config_path`).

    Returns:
        dict: the converter's ``meta`` plus ``out``, ``written_config`` and
        ``tarball``.

    Raises:
        ZooError: an unsupported row, a failed download, a tarball that is
            not the row's checkpoint (it is removed from the cache).
    """
    from .configs import DEFAULT_CONFIGS_DIR
    from .detect import ConversionError, inspect_variables
    from .tf_bundle import TFCheckpointError, open_checkpoint
    from .tf_deeplab import convert_checkpoint
    if not row.supported:
        raise ZooError(f'{row.name}: {row.status}')
    out = out or row.default_out
    configs_dir = configs_dir or DEFAULT_CONFIGS_DIR
    config = osp.join(configs_dir, row.config[len('configs/'):])
    tarball = fetch(row, mirror, stream=stream)
    checked = False  # a tarball that is not the row's leaves the cache
    try:
        with open_checkpoint(tarball) as reader:
            shapes = {n: tuple(reader.shape(n)) for n in reader.names()}
            info = inspect_variables(shapes)
            check_content(row, info.variant, info.head, info.num_classes,
                          tarball)
            checked = True
            meta = convert_checkpoint(
                reader, out, config=config,
                keep_background_class=keep_background_class,
                configs_dir=configs_dir, progress=progress)
    except (TFCheckpointError, ConversionError, ZooError) as e:
        if checked:
            raise ZooError(f'{tarball}: {e}') from None
        os.remove(tarball)
        raise ZooError(f'{e} (removed it from the cache)') from None
    classes = meta['num_classes'] if (
        row.head and meta['num_classes'] != meta['config_num_classes']) \
        else None
    meta.update(out=out, tarball=tarball,
                written_config=write_config(row, config, out, classes))
    return meta
