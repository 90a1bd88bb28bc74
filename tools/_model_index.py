"""The model index (OpenMMLab's metafiles) of our configs, computed from the
configs and the zoo table (:mod:`deeplabplus_mm.converters.zoo`): one entry
per config, named like the config, plus one per zoo checkpoint that no
config entry carries (the trainval rows), each with TF's published figures
where the zoo has them.

The helper of ``tools/generate_model_index.py`` (which writes the files);
readers (``mim``, :mod:`deeplabplus_mm.apis.model_zoo`) read the files.
"""
import glob
import os.path as osp
import re
from typing import Dict, List, Optional

from deeplabplus_mm.converters import zoo

NAME_RE = re.compile(
    r'(?P<algo>[a-z0-9]+)_(?P<backbone>[a-z0-9-]+?)-d(?P<os>\d+)_'
    r'(?P<gpus>\d+)xb(?P<batch>\d+)-(?P<iters>\d+)(?P<unit>k|it)_'
    r'(?P<dataset>[a-z0-9-]+)-(?P<crop>\d+x\d+)$')
METHODS = {'deeplabv3plus': 'DeepLabV3+', 'deeplabv3': 'DeepLabV3',
           'dpc': 'DeepLab DPC', 'lraspp': 'LR-ASPP'}
BACKBONES = {'xception41': 'Xception-41', 'xception65': 'Xception-65',
             'xception71': 'Xception-71', 'mobilenetv2': 'MobileNetV2',
             'mobilenetv2-dm05': 'MobileNetV2-dm0.5', 'r101': 'R-101',
             'mobilenetv3-large': 'MobileNetV3-Large',
             'mobilenetv3-small': 'MobileNetV3-Small',
             'mobilenetv3-edgetpu': 'EdgeTPU-MobileNet',
             'mobilenetv3-edgetpu-dm075': 'EdgeTPU-MobileNet-dm0.75',
             'mobilenetv2-int8': 'MobileNetV2-int8',
             'mobilenetv2-dm05-int8': 'MobileNetV2-dm0.5-int8',
             'resnet50-beta': 'ResNet-50-beta',
             'resnet101-beta': 'ResNet-101-beta'}
DATASETS = {
    'voc12aug': 'Pascal VOC 2012 + Aug', 'voc12': 'Pascal VOC 2012',
    'coco-voc': 'COCO (VOC classes)',
    'coco-voc-pre-voc12aug': 'Pascal VOC 2012 + Aug (from COCO)',
    'cityscapes': 'Cityscapes', 'ade20k': 'ADE20K',
    'pascal-context': 'Pascal Context',
    'pascal-context-59': 'Pascal Context 59',
    'synthvoc': 'Synthetic VOC (make demo)',
}
EVAL_DATASETS = {'voc': 'Pascal VOC 2012', 'cityscapes': 'Cityscapes',
                 'ade20k': 'ADE20K'}
PAPERS = {
    'DeepLabV3+': ('Encoder-Decoder with Atrous Separable Convolution for '
                   'Semantic Image Segmentation',
                   'https://arxiv.org/abs/1802.02611'),
    'DeepLabV3': ('Rethinking Atrous Convolution for Semantic Image '
                  'Segmentation', 'https://arxiv.org/abs/1706.05587'),
    'DeepLab DPC': ('Searching for Efficient Multi-Scale Architectures for '
                    'Dense Image Prediction',
                    'https://arxiv.org/abs/1809.04184'),
    'LR-ASPP': ('Searching for MobileNetV3',
                'https://arxiv.org/abs/1905.02244'),
}
# Figures measured in this repository (the only ones): `make demo` (README,
# "Quick start": 30 synthetic val images, single scale and --tta).
MEASURED = {
    'deeplabv3plus_xception41-d16_1xb8-300it_synthvoc-97x97': dict(
        dataset='Synthetic VOC val (make demo)', miou=89.42, tta_miou=92.77,
        how='make demo (README, Quick start), CPU'),
}
TF_SOURCE = "TF's published figure, not measured here (TF DeepLab zoo: {})"
TASK = 'Semantic Segmentation'


def config_stems(repo: str) -> Dict[str, List[str]]:
    """Config folder -> its leaf configs' paths (``configs/...``)."""
    folders = {}
    for path in sorted(glob.glob(osp.join(repo, 'configs', '*', '*.py'))):
        folder = osp.basename(osp.dirname(path))
        if folder.startswith('_'):
            continue
        folders.setdefault(folder, []).append(osp.relpath(path, repo))
    return folders


def _initial_weights(repo: str, config: str) -> Optional[str]:
    """The URL of the checkpoint a config's backbone starts from: a zoo
    ImageNet tarball (by the path its init_cfg names), mmcv's
    ``open-mmlab://`` weights, or None."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(repo, config), import_custom_modules=False)
    model = cfg.model
    init = (model.get('backbone', {}).get('init_cfg') or {})
    checkpoint = init.get('checkpoint') or model.get('pretrained')
    if not checkpoint:
        return None
    for row in zoo.ZOO_ROWS:
        if row.head is None and row.out == checkpoint:
            return row.url
    if checkpoint.startswith('open-mmlab://'):
        import json

        import mmengine
        with open(osp.join(osp.dirname(mmengine.__file__), 'hub',
                           'openmmlab.json')) as f:
            return json.load(f)[checkpoint[len('open-mmlab://'):]]
    return None


def _results(row: zoo.Row, config: str) -> List[dict]:
    out = []
    dataset = EVAL_DATASETS[row.dataset]
    for result in row.results:
        if result.config != config:
            continue
        metrics = {('mIoU(ms+flip)' if result.tta else 'mIoU'): result.miou}
        if result.pixel_acc is not None:
            metrics['aAcc'] = result.pixel_acc
        out.append(dict(Task=TASK, Dataset=f'{dataset} {result.split}',
                        Metrics=metrics))
    return out


def models(repo: str) -> Dict[str, List[dict]]:
    """Config folder -> its metafile's model entries."""
    segmentor_rows = [r for r in zoo.ZOO_ROWS if r.supported and r.head]
    owner = {}  # config -> first zoo row that fills it
    for row in segmentor_rows:
        for config in [row.config] + [r.config for r in row.results]:
            owner.setdefault(config, row)
    aliased = {}  # zoo row name -> the config entry that carries it
    for row in segmentor_rows:
        for config in [row.config] + [r.config for r in row.results]:
            if owner[config] is row:
                aliased[row.name] = config
                break
    out = {}
    for folder, configs in config_stems(repo).items():
        entries = out.setdefault(folder, [])
        for config in configs:
            stem = osp.splitext(osp.basename(config))[0]
            entry = _entry(repo, stem, config, owner.get(config))
            aliases = [n for n, c in aliased.items() if c == config]
            if aliases:  # right after the name
                entry = dict(Name=entry.pop('Name'), Alias=aliases, **entry)
            entries.append(entry)
        for row in segmentor_rows:  # rows no config entry carries
            config = row.results[0].config if row.results else row.config
            if row.name not in aliased and config in configs:
                entries.append(_entry(repo, row.name, config, row))
    return out


def _entry(repo: str, name: str, config: str,
           row: Optional[zoo.Row]) -> dict:
    folder = config.split('/')[1]
    match = NAME_RE.match(osp.splitext(osp.basename(config))[0])
    if match is None:
        raise ValueError(f'{config}: not an mmseg-style config name')
    parts = match.groupdict()
    method = METHODS.get(parts['algo'], parts['algo'])
    backbone = BACKBONES.get(parts['backbone'], parts['backbone'])
    iters = int(parts['iters']) * (1000 if parts['unit'] == 'k' else 1)
    metadata = {
        'Training Data': DATASETS.get(parts['dataset'], parts['dataset']),
        'Batch Size': int(parts['gpus']) * int(parts['batch']),
        'Architecture': [f'{backbone}-D{parts["os"]}', method],
        'Iterations': iters,
        'Crop Size': parts['crop'],
    }
    entry = dict(Name=name, **{'In Collection': collection_name(folder)})
    measured = MEASURED.get(name)
    if row is not None:
        entry['Results'] = _results(row, config)
        if entry['Results']:
            metadata['Results Source'] = TF_SOURCE.format(row.name)
        metadata['Weights Source'] = (
            f'TF zoo tarball of {row.name}; convert: python '
            f'tools/convert_tf_checkpoint.py --zoo {row.name}')
        weights = row.url
    else:
        weights = _initial_weights(repo, config)
        if weights:
            metadata['Weights Source'] = (
                'initial checkpoint of the backbone (ImageNet), for training;'
                ' no trained checkpoint is published for this config')
    if measured is not None:
        entry['Results'] = [dict(Task=TASK, Dataset=measured['dataset'],
                                 Metrics={'mIoU': measured['miou'],
                                          'mIoU(ms+flip)':
                                          measured['tta_miou']})]
        metadata['Results Source'] = f'measured here: {measured["how"]}'
    if not entry.get('Results'):
        entry.pop('Results', None)
        metadata['Results Source'] = 'none published, not measured here'
    entry['Config'] = config
    entry['Metadata'] = metadata
    if weights:
        entry['Weights'] = weights
    title, url = PAPERS.get(method, PAPERS['DeepLabV3+'])
    entry['Paper'] = dict(Title=title, URL=url)
    entry['Framework'] = 'PyTorch'
    return entry


def collection_name(folder: str) -> str:
    return {'deeplabv3plus': 'DeepLabV3+ (TF-faithful)',
            'deeplabv3': 'DeepLabV3 (TF-faithful)',
            'dpc': 'DeepLab DPC (TF-faithful)',
            'lraspp': 'LR-ASPP (TF-faithful)',
            'demo': 'DeepLabV3+ demo'}.get(folder, folder)


def _collection(folder: str, entries: List[dict]) -> dict:
    data = sorted({e['Metadata']['Training Data'] for e in entries})
    method = entries[0]['Metadata']['Architecture'][1]
    title, url = PAPERS.get(method, PAPERS['DeepLabV3+'])
    return {'Name': collection_name(folder), 'License': 'Apache License 2.0',
            'Metadata': {'Training Data': data},
            'Paper': {'Title': title, 'URL': url},
            'README': f'configs/{folder}/README.md',
            'Frameworks': ['PyTorch']}


def _cell(entry: dict, metric: str) -> str:
    values = []
    for result in entry.get('Results', []):
        value = result['Metrics'].get(metric)
        if value is None:
            continue
        source = ('TF' if 'TF' in entry['Metadata']['Results Source']
                  else 'measured here')
        split = result['Dataset'].rsplit(' ', 1)[-1]
        note = f'{source}, {split}' if split == 'test' else source
        values.append(f'{value:.2f} ({note})')
    return '; '.join(values) or '-'


def readme(folder: str, entries: List[dict]) -> str:
    """mmseg's per-folder README: the results table of a config folder."""
    title = collection_name(folder)
    lines = [
        f'# {title}', '',
        '<!-- generated by tools/generate_model_index.py: edit the zoo table '
        '(deeplabplus_mm/converters/zoo.py) or the configs, not this file '
        '-->', '',
        'mIoU figures marked *TF* are TF DeepLab\'s published ones for the '
        'checkpoint that `python tools/convert_tf_checkpoint.py --zoo NAME` '
        'converts into the config (evaluated as TF did: see the zoo table); '
        'they were not measured here. No accuracy on real data was measured '
        'in this repository. Mem, Inf time: not measured for these settings '
        '(see docs/benchmarks.md for what was).', '',
        '## Results and models', '',
        '| Method | Backbone | Crop Size | Lr schd | Mem (GB) '
        '| Inf time (fps) | Device | mIoU | mIoU(ms+flip) | config '
        '| download |',
        '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ]
    for entry in entries:
        meta = entry['Metadata']
        config = osp.basename(entry['Config'])
        name = entry['Name']
        label = '' if name == osp.splitext(config)[0] else f' ({name})'
        weights = entry.get('Weights')
        if weights and meta['Weights Source'].startswith('TF zoo'):
            zoo_name = meta['Weights Source'].split()[4].rstrip(';')
            download = f'[TF tarball]({weights}) (`--zoo {zoo_name}`)'
        elif weights:
            download = f'[initial checkpoint]({weights})'
        else:
            download = '-'
        device = 'CPU' if name in MEASURED else '-'
        lines.append(
            f'| {meta["Architecture"][1]}{label} | {meta["Architecture"][0]} '
            f'| {meta["Crop Size"]} | {meta["Iterations"]} | - | - | {device} '
            f'| {_cell(entry, "mIoU")} | {_cell(entry, "mIoU(ms+flip)")} '
            f'| [config]({config}) | {download} |')
    notes = [f'- `{row.name}`: {r.miou:.2f} ({r.split}), {r.protocol}: '
             f'`{osp.basename(r.config)}`' + (' with `--tta`' if r.tta else '')
             for row in zoo.ZOO_ROWS if row.supported for r in row.results
             if r.config.startswith(f'configs/{folder}/')]
    if notes:
        lines += ['', 'TF\'s evaluation behind each figure (zoo row: mIoU, '
                  'output stride and scales, the config and `tools/test.py` '
                  'option that evaluate the same way):', ''] + notes
    return '\n'.join(lines) + '\n'


def _yaml(data) -> str:
    import yaml
    return yaml.safe_dump(data, sort_keys=False, width=1000,
                          allow_unicode=True)


# The README's zoo table lies between these lines.
ZOO_TABLE_MARKS = ('<!-- zoo table: python tools/generate_model_index.py -->',
                   '<!-- end of zoo table -->')


def zoo_table() -> str:
    """Every zoo row: TF's published figures, status, config, command."""
    lines = ['| zoo row | TF\'s published mIoU (not measured here) | status '
             '| config it fills | convert |', '|---|---|---|---|---|']
    for row in zoo.ZOO_ROWS:
        figures = '; '.join(f'{r.miou:.2f} ({r.split}, {r.protocol})'
                            for r in row.results) or 'initial checkpoint'
        status = 'supported' if row.supported else row.status
        config = f'`{row.config}`' if row.config else '-'
        lines.append(f'| {row.name} | {figures} | {status} | {config} | '
                     f'`python tools/convert_tf_checkpoint.py --zoo '
                     f'{row.name}` |')
    return '\n'.join(lines) + '\n'


def readme_with_zoo_table(text: str) -> str:
    """The README ``text`` with its zoo table block regenerated."""
    start, end = ZOO_TABLE_MARKS
    head, found, rest = text.partition(start + '\n')
    _, found_end, tail = rest.partition(end)
    if not (found and found_end):
        raise ValueError(f'README.md: the zoo table marks {start!r} ... '
                         f'{end!r} are missing')
    return head + start + '\n' + zoo_table() + end + tail


def generated_files(repo: str) -> Dict[str, str]:
    """Relative path -> text of every generated file."""
    with open(osp.join(repo, 'README.md')) as f:
        files = {'README.md': readme_with_zoo_table(f.read())}
    imports = []
    for folder, entries in models(repo).items():
        metafile = f'configs/{folder}/metafile.yaml'
        imports.append(metafile)
        files[metafile] = _yaml({'Collections': [_collection(folder,
                                                             entries)],
                                 'Models': entries})
        files[f'configs/{folder}/README.md'] = readme(folder, entries)
    files['deeplabplus_mm/.mim/model-index.yml'] = _yaml({'Import': imports})
    return files
