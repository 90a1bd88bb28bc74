"""Write the model index that OpenMMLab's tools read, from one source.

    python tools/generate_model_index.py           # (re)write the files
    python tools/generate_model_index.py --check   # exit 1 if any is stale

From the configs (their names and initial checkpoints) and the zoo table
(``deeplabplus_mm/converters/zoo.py``: TF's published figures and tarballs)
it writes, for each folder of ``configs/``, ``metafile.yaml`` (read by ``mim
search`` / ``mim download`` and by ``MMSegInferencer(model=NAME)`` through
``deeplabplus_mm.apis.model_zoo``) and ``README.md`` (the results table, in
mmseg's format), ``deeplabplus_mm/.mim/model-index.yml`` importing them, and
the zoo table of the repository's README (every row, its status, config and
command).
"""
import argparse
import os
import os.path as osp
import sys

from convert_tf_checkpoint import REPO, import_converters


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--check', action='store_true',
                        help='compare with the files on disk, write nothing')
    args = parser.parse_args(argv)
    import_converters()  # the package without torch, mmseg and mmcv
    from _model_index import generated_files  # this folder's helper
    stale = []
    for rel, text in generated_files(REPO).items():
        path = osp.join(REPO, rel)
        old = open(path).read() if osp.isfile(path) else None
        if old == text:
            continue
        stale.append(rel)
        if not args.check:
            os.makedirs(osp.dirname(path), exist_ok=True)
            with open(path + '.tmp', 'w') as f:
                f.write(text)
            os.replace(path + '.tmp', path)
    if args.check and stale:
        sys.exit('out of date (run python tools/generate_model_index.py): '
                 + ', '.join(stale))
    print(f'{len(stale)} file(s) {"stale" if args.check else "written"}'
          + (': ' + ', '.join(stale) if stale else ''))


if __name__ == '__main__':
    main()
