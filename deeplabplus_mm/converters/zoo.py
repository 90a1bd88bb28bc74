"""TF DeepLab's model zoo: the table of its checkpoints and their download.

:data:`ZOO` is the one place that holds the zoo: every row of
``research/deeplab/g3doc/model_zoo.md`` (and ``quantize.md``'s 8-bit rows)
plus the ImageNet initial checkpoints, with its tarball URL, what the
tarball must hold, the config of ours it fills and TF's published numbers.
``tools/convert_tf_checkpoint.py --zoo`` / ``--list``, the metafiles
(``tools/generate_model_index.py``) and the model-name lookup of
:mod:`deeplabplus_mm.apis.model_zoo` all read it.

:func:`download` is standard library only (urllib): resumable (HTTP Range),
size-checked, written to ``<file>.part`` and renamed when complete.
"""
import difflib
import gzip
import os
import os.path as osp
import re
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from typing import Dict, List, NamedTuple, Optional, Tuple

TF_MODELS = 'http://download.tensorflow.org/models/'
SLIM_MOBILENET_V2 = 'https://storage.googleapis.com/mobilenet_v2/checkpoints/'
MODEL_ZOO_MD = ('https://github.com/tensorflow/models/blob/master/research/'
                'deeplab/g3doc/model_zoo.md')
CACHE_ENV = 'DEEPLABPLUS_MM_CACHE'
MIRROR_ENV = 'DEEPLABPLUS_MM_MIRROR'


class ZooError(Exception):
    """A zoo name, download or tarball that cannot give its checkpoint."""


class Result(NamedTuple):
    """One published figure of a zoo row (TF's, not measured here)."""
    config: str  # the config of ours that evaluates as TF did
    miou: float
    split: str  # 'val' or 'test'
    tta: bool  # multi-scale + flip (our --tta) vs one scale
    protocol: str  # TF's evaluation, as model_zoo.md states it
    pixel_acc: Optional[float] = None


class Row(NamedTuple):
    """One checkpoint of TF's zoo."""
    name: str  # as model_zoo.md names it
    url: str
    dataset: str  # 'voc', 'cityscapes', 'ade20k', 'imagenet'
    variant: str  # the converter's variant name: 'xception_65', ...
    head: Optional[str]  # our head type; None: a backbone (ImageNet) only
    classes: Optional[int]  # logits channels in TF's checkpoint
    config: Optional[str]  # configs/... it fills; None: not supported
    results: Tuple[Result, ...] = ()
    size: str = ''  # model_zoo.md's file size
    status: str = 'supported'  # else why not (yet)
    out: Optional[str] = None  # default output (ImageNet: what configs use)

    @property
    def supported(self) -> bool:
        return self.config is not None

    @property
    def filename(self) -> str:
        return self.url.rsplit('/', 1)[1]

    @property
    def default_out(self) -> str:
        return self.out or osp.join('checkpoints', f'{self.name}.pth')


def _cfg(folder, stem):
    return f'configs/{folder}/{stem}.py'


_X65 = 'deeplabv3plus_xception65-d{}_{}'
_MNV2 = 'deeplabv3_mobilenetv2-d{}_{}'
_MNV2_DM05 = 'deeplabv3_mobilenetv2-dm05-d{}_{}'
_VOC = '4xb4-30k_voc12aug-513x513'
_CITY = '4xb2-90k_cityscapes-769x769'
_ADE = '4xb4-150k_ade20k-513x513'
_V3P, _V3, _DPC = 'deeplabv3plus', 'deeplabv3', 'dpc'
# the zoo's MobileNetV3 models: LR-ASPP head, output stride 32
_LR, _LRASPP = 'lraspp', 'LRASPPTFHead'
_MNV3 = 'lraspp_mobilenetv3-{}-d32_' + _CITY
_ONE = 'OS {}, scale 1.0'
_MS_VOC = 'OS 8, scales 0.5:0.25:1.75 + flip'
_MS_CITY = 'OS 8, scales 0.75:0.25:1.25 + flip'
_HEAD = 'DeepLabV3PlusTFHead'
_NO_EDGETPU = ('not yet supported: EdgeTPU-MobileNet backbone (no model or '
               'name table here)')
_NO_RESNET = ('not yet supported: TF\'s resnet_v1_beta (no name table for '
              'it here; mmseg\'s ResNetV1c configs start from mmcv\'s '
              'ImageNet weights)')
_NO_8BIT = ('not yet supported: quantization-aware (8-bit) checkpoint '
            '(fake-quantisation ranges; the float row converts)')

ZOO_ROWS: List[Row] = [
    # PASCAL VOC 2012 (model_zoo.md, quantize.md)
    Row('mobilenetv2_dm05_coco_voc_trainaug',
        TF_MODELS + 'deeplabv3_mnv2_dm05_pascal_trainaug_2018_10_01.tar.gz',
        'voc', 'mobilenet_v2_dm0.5', _HEAD, 21,
        _cfg(_V3, _MNV2_DM05.format(16, _VOC)),
        (Result(_cfg(_V3, _MNV2_DM05.format(16, _VOC)), 70.19, 'val', False,
                _ONE.format(16)), ), '7.6MB'),
    Row('mobilenetv2_dm05_coco_voc_trainval',
        TF_MODELS + 'deeplabv3_mnv2_dm05_pascal_trainval_2018_10_01.tar.gz',
        'voc', 'mobilenet_v2_dm0.5', _HEAD, 21,
        _cfg(_V3, _MNV2_DM05.format(16, _VOC)),
        (Result(_cfg(_V3, _MNV2_DM05.format(8, _VOC)), 71.83, 'test', False,
                _ONE.format(8)), ), '7.6MB'),
    Row('mobilenetv2_coco_voc_trainaug',
        TF_MODELS + 'deeplabv3_mnv2_pascal_train_aug_2018_01_29.tar.gz',
        'voc', 'mobilenet_v2', _HEAD, 21, _cfg(_V3, _MNV2.format(16, _VOC)),
        (Result(_cfg(_V3, _MNV2.format(16, _VOC)), 75.32, 'val', False,
                _ONE.format(16)),
         Result(_cfg(_V3, _MNV2.format(8, _VOC)), 77.33, 'val', True,
                _MS_VOC)), '23MB'),
    Row('mobilenetv2_coco_voc_trainval',
        TF_MODELS + 'deeplabv3_mnv2_pascal_trainval_2018_01_29.tar.gz',
        'voc', 'mobilenet_v2', _HEAD, 21, _cfg(_V3, _MNV2.format(16, _VOC)),
        (Result(_cfg(_V3, _MNV2.format(8, _VOC)), 80.25, 'test', True,
                _MS_VOC), ), '23MB'),
    Row('xception65_coco_voc_trainaug',
        TF_MODELS + 'deeplabv3_pascal_train_aug_2018_01_04.tar.gz',
        'voc', 'xception_65', _HEAD, 21, _cfg(_V3P, _X65.format(16, _VOC)),
        (Result(_cfg(_V3P, _X65.format(16, _VOC)), 82.20, 'val', False,
                _ONE.format(16)),
         Result(_cfg(_V3P, _X65.format(8, _VOC)), 83.58, 'val', True,
                _MS_VOC)), '439MB'),
    Row('xception65_coco_voc_trainval',
        TF_MODELS + 'deeplabv3_pascal_trainval_2018_01_04.tar.gz',
        'voc', 'xception_65', _HEAD, 21, _cfg(_V3P, _X65.format(16, _VOC)),
        (Result(_cfg(_V3P, _X65.format(8, _VOC)), 87.80, 'test', True,
                _MS_VOC), ), '439MB'),
    Row('mobilenetv2_dm05_coco_voc_trainaug_8bit',
        TF_MODELS +
        'deeplabv3_mnv2_dm05_pascal_train_aug_8bit_2019_04_26.tar.gz',
        'voc', 'mobilenet_v2_dm0.5', _HEAD, 21, None,
        (Result('', 69.65, 'val', False, _ONE.format(16)), ), '8.2MB',
        _NO_8BIT),
    Row('mobilenetv2_coco_voc_trainaug_8bit',
        TF_MODELS + 'deeplabv3_mnv2_pascal_train_aug_8bit_2019_04_26.tar.gz',
        'voc', 'mobilenet_v2', _HEAD, 21, None,
        (Result('', 74.26, 'val', False, _ONE.format(16)), ), '24MB',
        _NO_8BIT),
    # Cityscapes
    Row('mobilenetv2_coco_cityscapes_trainfine',
        TF_MODELS + 'deeplabv3_mnv2_cityscapes_train_2018_02_05.tar.gz',
        'cityscapes', 'mobilenet_v2', _HEAD, 19,
        _cfg(_V3, _MNV2.format(16, _CITY)),
        (Result(_cfg(_V3, _MNV2.format(16, _CITY)), 70.71, 'val', False,
                _ONE.format(16)),
         Result(_cfg(_V3, _MNV2.format(8, _CITY)), 73.57, 'val', True,
                _MS_CITY)), '23MB'),
    Row('mobilenetv3_large_cityscapes_trainfine',
        TF_MODELS +
        'deeplab_mnv3_large_cityscapes_trainfine_2019_11_15.tar.gz',
        'cityscapes', 'mobilenet_v3_large_seg', _LRASPP, 19,
        _cfg(_LR, _MNV3.format('large')),
        (Result(_cfg(_LR, _MNV3.format('large')), 72.41, 'val', False,
                _ONE.format(32)), ), '17MB'),
    Row('mobilenetv3_small_cityscapes_trainfine',
        TF_MODELS +
        'deeplab_mnv3_small_cityscapes_trainfine_2019_11_15.tar.gz',
        'cityscapes', 'mobilenet_v3_small_seg', _LRASPP, 19,
        _cfg(_LR, _MNV3.format('small')),
        (Result(_cfg(_LR, _MNV3.format('small')), 68.99, 'val', False,
                _ONE.format(32)), ), '5MB'),
    Row('xception65_cityscapes_trainfine',
        TF_MODELS + 'deeplabv3_cityscapes_train_2018_02_06.tar.gz',
        'cityscapes', 'xception_65', _HEAD, 19,
        _cfg(_V3P, _X65.format(16, _CITY)),
        (Result(_cfg(_V3P, _X65.format(16, _CITY)), 78.79, 'val', False,
                _ONE.format(16)),
         Result(_cfg(_V3P, _X65.format(8, _CITY)), 80.42, 'val', True,
                _MS_CITY)), '439MB'),
    Row('xception71_dpc_cityscapes_trainfine',
        TF_MODELS +
        'deeplab_cityscapes_xception71_trainfine_2018_09_08.tar.gz',
        'cityscapes', 'xception_71', 'DensePredictionCellHead', 19,
        _cfg(_DPC, f'dpc_xception71-d16_{_CITY}'),
        (Result(_cfg(_DPC, f'dpc_xception71-d16_{_CITY}'), 80.31, 'val',
                False, _ONE.format(16)), ), '445MB'),
    Row('xception71_dpc_cityscapes_trainval',
        TF_MODELS +
        'deeplab_cityscapes_xception71_trainvalfine_2018_09_08.tar.gz',
        'cityscapes', 'xception_71', 'DensePredictionCellHead', 19,
        _cfg(_DPC, f'dpc_xception71-d16_{_CITY}'),
        (Result(_cfg(_DPC, f'dpc_xception71-d8_{_CITY}'), 82.66, 'test', True,
                'OS 8, scales 0.75:0.25:2 + flip (the config\'s TTA: '
                '0.75:0.25:1.25)'), ), '446MB'),
    Row('EdgeTPU-DeepLab', TF_MODELS + 'edgetpu-deeplab_2020_03_09.tar.gz',
        'cityscapes', 'mobilenet_edgetpu', _HEAD, 19, None,
        (Result('', 70.6, 'val', False, _ONE.format(32)),
         Result('', 74.1, 'val', False, _ONE.format(16))), '',
        _NO_EDGETPU),
    Row('EdgeTPU-DeepLab-slim',
        TF_MODELS + 'edgetpu-deeplab-slim_2020_03_09.tar.gz', 'cityscapes',
        'mobilenet_edgetpu_dm0.75', _HEAD, 19, None,
        (Result('', 70.0, 'val', False, _ONE.format(32)),
         Result('', 73.2, 'val', False, _ONE.format(16))), '',
        _NO_EDGETPU),
    # ADE20K (151 TF classes; the converter drops "other" for mmseg's 150)
    Row('mobilenetv2_ade20k_train',
        TF_MODELS + 'deeplabv3_mnv2_ade20k_train_2018_12_03.tar.gz',
        'ade20k', 'mobilenet_v2', _HEAD, 151,
        _cfg(_V3P, 'deeplabv3plus_mobilenetv2-d16_4xb4-150k_ade20k-257x257'),
        (Result(_cfg(_V3P,
                     'deeplabv3plus_mobilenetv2-d16_4xb4-150k_ade20k-257x257'),
                32.04, 'val', False, _ONE.format(16), 75.41), ), '24.8MB'),
    Row('xception65_ade20k_train',
        TF_MODELS + 'deeplabv3_xception_ade20k_train_2018_05_29.tar.gz',
        'ade20k', 'xception_65', _HEAD, 151,
        _cfg(_V3P, _X65.format(16, _ADE)),
        (Result(_cfg(_V3P, _X65.format(8, _ADE)), 45.65, 'val', True,
                _MS_VOC, 82.52), ), '439MB'),
    # ImageNet initial checkpoints: backbones for model.backbone.init_cfg
    Row('xception_41_imagenet', TF_MODELS + 'xception_41_2018_05_09.tar.gz',
        'imagenet', 'xception_41', None, None,
        _cfg(_V3P, 'deeplabv3plus_xception41-d16_' + _VOC), (), '288MB',
        out='checkpoints/xception41_imagenet.pth'),
    Row('xception_65_imagenet',
        TF_MODELS + 'deeplabv3_xception_2018_01_04.tar.gz', 'imagenet',
        'xception_65', None, None, _cfg(_V3P, _X65.format(16, _VOC)), (),
        '447MB', out='checkpoints/xception65_imagenet.pth'),
    # taken to hold the backbone alone, like the other initial checkpoints
    # (not seen here); a tarball with a head fails the content check
    Row('xception_65_imagenet_coco',
        TF_MODELS + 'xception_65_coco_pretrained_2018_10_02.tar.gz',
        'imagenet', 'xception_65', None, None,
        _cfg(_V3P, _X65.format(16, _VOC)), (), '292MB'),
    Row('xception_71_imagenet', TF_MODELS + 'xception_71_2018_05_09.tar.gz',
        'imagenet', 'xception_71', None, None,
        _cfg(_V3P, 'deeplabv3plus_xception71-d16_' + _VOC), (), '474MB',
        out='checkpoints/xception71_imagenet.pth'),
    Row('resnet_v1_50_beta_imagenet',
        TF_MODELS + 'resnet_v1_50_2018_05_04.tar.gz', 'imagenet',
        'resnet_v1_50_beta', None, None, None, (), '274MB', _NO_RESNET),
    Row('resnet_v1_101_beta_imagenet',
        TF_MODELS + 'resnet_v1_101_2018_05_04.tar.gz', 'imagenet',
        'resnet_v1_101_beta', None, None, None, (), '477MB', _NO_RESNET),
    # slim's MobileNetV2 (model_zoo.md points to it), which the zoo's
    # MobileNetV2 models start from
    Row('mobilenet_v2_1.0_224', SLIM_MOBILENET_V2 + 'mobilenet_v2_1.0_224.tgz',
        'imagenet', 'mobilenet_v2', None, None,
        _cfg(_V3, _MNV2.format(16, _VOC)), (), '',
        out='checkpoints/mobilenetv2_imagenet.pth'),
]
ZOO: Dict[str, Row] = {row.name: row for row in ZOO_ROWS}


def lookup(name: str) -> Row:
    """The zoo row called ``name`` (case-insensitive).

    Raises:
        ZooError: unknown name, with the closest names.
    """
    by_lower = {n.lower(): row for n, row in ZOO.items()}
    row = by_lower.get(name.lower())
    if row is not None:
        return row
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=3,
                                      cutoff=0.5)
    hint = (f'; did you mean {" or ".join(by_lower[c].name for c in close)}?'
            if close else '')
    raise ZooError(f'unknown zoo name {name!r}{hint} (--list shows all '
                   f'{len(ZOO)})')


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


class _Progress:
    """Bytes received: a live line on a terminal, else a line per quarter."""

    def __init__(self, total: Optional[int], done: int, stream=None):
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.total, self.start, self.t0 = total, done, time.monotonic()
        self.next_quarter, self.printed = 1, None

    def update(self, done: int, final: bool = False):
        mib = done / 2**20
        if self.total:
            fraction = done / self.total
            text = f'{mib:.1f} / {self.total / 2**20:.1f} MiB ' \
                   f'({100 * fraction:.0f} %)'
        else:
            fraction, text = None, f'{mib:.1f} MiB'
        elapsed = max(time.monotonic() - self.t0, 1e-6)
        rate = (done - self.start) / 2**20 / elapsed
        if self.tty:
            end = '\n' if final else ''
            self.stream.write(f'\r  {text}, {rate:.1f} MiB/s{end}')
            self.stream.flush()
        elif (final and text != self.printed) or (
                fraction is not None and fraction >= self.next_quarter / 4):
            if fraction is not None:
                while self.next_quarter <= 4 * fraction:
                    self.next_quarter += 1
            print(f'  {text}', file=self.stream, flush=True)
            self.printed = text


def _content_range(value: str) -> Tuple[Optional[int], Optional[int]]:
    """``(first byte, total)`` of a ``Content-Range: bytes a-b/total``."""
    match = re.match(r'bytes (\d+)-\d+/(\d+|\*)', value or '')
    if not match:
        return None, None
    total = match.group(2)
    return int(match.group(1)), None if total == '*' else int(total)


def download(url: str, dest: str, timeout: float = 60,
             attempts: int = 4, check=None, stream=None) -> str:
    """Fetch ``url`` into ``dest``.

    Bytes go to ``dest + '.part'``, which a later call resumes with an HTTP
    Range request (also after an interrupted transfer within this call, up
    to ``attempts`` requests); the received size must equal what the server
    announced (Content-Length / Content-Range) and ``check(part)`` must
    pass; only then is the file renamed to ``dest``: ``dest`` never holds a
    partial file.

    Raises:
        ZooError: network failure, HTTP error, a transfer still incomplete
            after ``attempts`` requests, more bytes than announced, a
            failed ``check`` (the part file is deleted then).
    """
    part = dest + '.part'
    os.makedirs(osp.dirname(osp.abspath(dest)), exist_ok=True)
    stream = stream or sys.stdout
    last_problem = ''
    for _ in range(attempts):
        have = osp.getsize(part) if osp.exists(part) else 0
        headers = {'User-Agent': 'deeplabplus-mm'}
        if have:
            headers['Range'] = f'bytes={have}-'
        try:
            response = urllib.request.urlopen(
                urllib.request.Request(url, headers=headers), timeout=timeout)
        except urllib.error.HTTPError as e:
            if e.code == 416 and have:  # nothing left at that offset
                os.remove(part)
                last_problem = (f'the server refused to resume at byte '
                                f'{have}')
                continue
            raise ZooError(f'{url}: HTTP {e.code} {e.reason}') from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, 'reason', e)
            raise ZooError(
                f'cannot download {url}: {reason}. Check the network (or '
                'proxy: https_proxy / http_proxy), or fetch the file '
                'elsewhere and pass --mirror with the folder or URL that '
                'holds it') from None
        with response:
            status = getattr(response, 'status', 200)
            total = None
            if status == 206:
                first, total = _content_range(
                    response.headers.get('Content-Range'))
                if first != have:  # not where we asked: start over
                    response.close()
                    os.remove(part)
                    last_problem = f'the server resumed at byte {first}'
                    continue
            else:  # a full response (also a server that ignores Range)
                have = 0
                length = response.headers.get('Content-Length')
                total = int(length) if length and length.isdigit() else None
            if have:
                print(f'resuming {url} at {have / 2**20:.1f} MiB',
                      file=stream, flush=True)
            else:
                print(f'downloading {url}', file=stream, flush=True)
            progress = _Progress(total, have, stream)
            done, lost = have, False
            try:
                with open(part, 'ab' if have else 'wb') as f:
                    while True:
                        chunk = response.read(1 << 20)
                        if not chunk:
                            break
                        f.write(chunk)
                        done += len(chunk)
                        progress.update(done)
            except (OSError, socket.timeout) as e:  # connection lost
                last_problem, lost = f'connection lost ({e})', True
            progress.update(done, final=True)
        if total is None and lost:
            continue
        if total is None or done == total:
            try:
                if check is not None:
                    check(part)
            except ZooError:
                os.remove(part)
                raise
            os.replace(part, dest)
            return dest
        if done > total:
            os.remove(part)
            raise ZooError(f'{url}: received {done} bytes, the server '
                           f'announced {total}: not the expected file')
        last_problem = (f'received {done} of the {total} bytes the server '
                        'announced')
    kept = (f'; the {osp.getsize(part)} bytes received are kept in {part}: '
            'run the same command again to resume') if osp.exists(part) \
        else ''
    raise ZooError(f'{url}: transfer incomplete after {attempts} requests '
                   f'({last_problem}){kept}')


def check_gzip(path: str) -> None:
    """A gzip file read to its end: CRC and length trailer checked (a
    truncated or padded file, or no gzip file at all, raises ZooError)."""
    try:
        with open(path, 'rb') as f:
            if f.read(2) != b'\x1f\x8b':
                raise ZooError(f'{path} is not a gzip file')
        with gzip.open(path, 'rb') as f:
            while f.read(1 << 22):
                pass
    except (OSError, EOFError, zlib.error) as e:
        raise ZooError(f'{path}: damaged gzip data ({e})') from None


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


def describe(variant: str, head: Optional[str],
             classes: Optional[int]) -> str:
    """How a checkpoint's content reads in messages."""
    if head is None:
        return f'a {variant} backbone (ImageNet checkpoint)'
    return f'a {variant} segmentor with {classes} classes ({head})'


def check_content(row: Row, variant: str, head: Optional[str],
                  classes: Optional[int], path: str) -> None:
    """Raises ZooError unless a checkpoint holds what ``row`` says."""
    want = describe(row.variant, row.head, row.classes)
    got = describe(variant, head, classes)
    if want != got:
        raise ZooError(
            f'{path} is not the expected checkpoint of {row.name}: it holds '
            f'{got}, the zoo row {want}')


def list_lines() -> List[str]:
    """The zoo as ``--list`` prints it."""
    lines = [f'TF DeepLab model zoo ({MODEL_ZOO_MD}); mIoU: TF\'s published '
             'figures, not measured here']
    width = max(len(row.name) for row in ZOO_ROWS)
    for row in ZOO_ROWS:
        figures = '; '.join(
            f'{r.miou:.2f} ({r.split}, {r.protocol})' for r in row.results)
        status = 'supported' if row.supported else row.status
        lines.append(f'{row.name:<{width}}  {row.dataset:<10}  '
                     f'{row.variant:<24}  {status}' +
                     (f'  | TF: {figures}' if figures else ''))
        if row.supported:
            lines.append(f'{"":<{width}}  config: {row.config}')
    return lines


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
    from .tf_bundle import TFCheckpointError, open_checkpoint
    from .tf_deeplab import (DEFAULT_CONFIGS_DIR, ConversionError,
                             convert_checkpoint, inspect_variables)
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
