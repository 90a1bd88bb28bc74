"""VOC's facts live in one module and agree with mmseg; the one palette-PNG
writer writes what it is given, atomically, and rejects what a palette PNG
cannot hold."""
import numpy as np
import pytest
from mmseg.datasets import PascalVOCDataset
from PIL import Image

from deeplabplus_mm.datasets import (COCOVOCDataset, LoadVOCAnnotations,
                                     PascalVOCAugDataset)
from deeplabplus_mm.datasets.voc_meta import (IGNORE_INDEX, NUM_CLASSES,
                                              VOC_CLASSES, VOC_METAINFO,
                                              VOC_PALETTE, VOID_COLOR,
                                              palette_array, save_palette_png)


def test_facts_agree_with_mmseg_and_are_used():
    assert VOC_METAINFO == PascalVOCDataset.METAINFO
    assert NUM_CLASSES == len(VOC_PALETTE) == 21 and IGNORE_INDEX == 255
    assert VOC_CLASSES[0] == 'background' and VOC_PALETTE.dtype == np.uint8
    with pytest.raises(ValueError):
        VOC_PALETTE[0, 0] = 1  # read-only
    for dataset in (PascalVOCAugDataset, COCOVOCDataset):
        assert dataset.METAINFO is VOC_METAINFO
    load = LoadVOCAnnotations()
    assert (load.num_classes, load.ignore_index) == (21, 255)


def test_save_palette_png_round_trip(tmp_path):
    label = np.arange(21 * 3, dtype=np.int64).reshape(7, 9) % NUM_CLASSES
    label[0, :4] = IGNORE_INDEX
    path = tmp_path / 'm.png'
    save_palette_png(str(path), label)
    with Image.open(path) as img:
        assert img.mode == 'P'
        np.testing.assert_array_equal(np.array(img), label)
        flat = img.getpalette()
    assert flat[:63] == VOC_PALETTE.reshape(-1).tolist()
    assert tuple(flat[3 * 255:3 * 256]) == VOID_COLOR
    assert [p.name for p in tmp_path.iterdir()] == ['m.png']  # no temp left
    # Another data set's palette (e.g. 3 classes).
    mine = [(1, 2, 3), (4, 5, 6), (7, 8, 9)]
    save_palette_png(str(path), label % 3, mine)
    with Image.open(path) as img:
        assert img.getpalette()[:9] == list(range(1, 10))
    assert (palette_array(mine)[255] == VOID_COLOR).all()


@pytest.mark.parametrize('bad,message', [
    (np.full((3, 4), 256), 'labels must be in 0..255'),
    (np.full((3, 4), -1), 'labels must be in 0..255'),
    (np.zeros((3, 4, 3), np.uint8), 'must be 2-D'),
])
def test_save_palette_png_rejects_what_it_cannot_hold(tmp_path, bad, message):
    path = tmp_path / 'bad.png'
    with pytest.raises(ValueError, match=message) as info:
        save_palette_png(str(path), bad)
    assert str(path) in str(info.value)
    assert not list(tmp_path.iterdir())  # nothing written
