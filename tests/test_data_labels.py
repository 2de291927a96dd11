"""Label tables: every official Cityscapes id, the SYNTHIA 16/13/19-class tables and the Cross-City table."""

import numpy as np
import pytest
from cityscapesscripts.helpers import labels as cs

from udalib.data.base import CITYSCAPES_KNOWN_IDS, cityscapes_label_map
from udalib.data.crosscity import crosscity_label_map
from udalib.data.labels import CITYSCAPES19, CROSSCITY13, SYNTHIA13, SYNTHIA16, get_protocol
from udalib.data.synthia import synthia_label_map

# AdaptSegNet dataset/cityscapes_list/info.json label2train
SPEC_19 = dict(zip((7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33), range(19)))
# DADA dada/dataset/synthia.py: SYNTHIA → 16 classes, and the Cityscapes side of the 16-class protocol
SPEC_SYNTHIA_16 = dict(zip((3, 4, 2, 21, 5, 7, 15, 9, 6, 1, 10, 17, 8, 19, 12, 11), range(16)))
SPEC_CITYSCAPES_16 = dict(zip((7, 8, 11, 12, 13, 17, 19, 20, 21, 23, 24, 25, 26, 28, 32, 33), range(16)))
# global_local's synthia.py: the 19-class SYNTHIA table (16 → terrain, 18 → truck, 20 → train)
SPEC_SYNTHIA_19 = dict(zip((3, 4, 2, 21, 5, 7, 15, 9, 6, 16, 1, 10, 17, 8, 18, 19, 20, 12, 11), range(19)))


def _expected(table: dict[int, int], size: int) -> np.ndarray:
    lut = np.full(size, 255, dtype=np.uint8)
    lut[list(table)] = list(table.values())
    return lut


@pytest.mark.parametrize("label", cs.labels, ids=lambda lab: f"{lab.id}-{lab.name}")
def test_every_official_cityscapes_id_maps_as_cityscapesscripts(label):
    train = label.trainId if 0 <= label.trainId < 19 else 255
    assert CITYSCAPES19.cityscapes_lut[label.id % 256] == train  # -1 (license plate) is stored as 255


def test_cityscapes_19_table_equals_spec_and_ignores_the_rest():
    np.testing.assert_array_equal(CITYSCAPES19.cityscapes_lut, _expected(SPEC_19, 256))
    assert CITYSCAPES19.num_classes == 19 and CITYSCAPES19.classes[0] == "road"
    assert CITYSCAPES_KNOWN_IDS == frozenset(range(34)) | {255}


def test_cityscapes_label_map_counts_ids_outside_the_official_table():
    raw = np.array([[7, 33, 0, 255], [34, 34, 200, 26]], dtype=np.uint8)
    mapped, unknown = cityscapes_label_map(CITYSCAPES19)(raw)
    np.testing.assert_array_equal(mapped, [[0, 18, 255, 255], [255, 255, 255, 13]])
    assert unknown == {34: 2, 200: 1}  # 0 (unlabeled) and 255 (-1, license plate) are official ids


def test_synthia_16_and_cityscapes_side():
    np.testing.assert_array_equal(SYNTHIA16.synthia_lut, _expected(SPEC_SYNTHIA_16, 65536))
    np.testing.assert_array_equal(SYNTHIA16.cityscapes_lut, _expected(SPEC_CITYSCAPES_16, 256))
    assert SYNTHIA16.num_classes == 16
    assert [SYNTHIA16.classes[i] for i in (3, 4, 5)] == ["wall", "fence", "pole"]


def test_synthia_13_is_the_16_without_wall_fence_pole():
    assert SYNTHIA13.num_classes == 13
    assert SYNTHIA16.subset_indices(SYNTHIA13.classes) == [0, 1, 2, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
    table13 = {
        raw: SYNTHIA13.classes.index(SYNTHIA16.classes[t])
        for raw, t in SPEC_SYNTHIA_16.items()
        if SYNTHIA16.classes[t] in SYNTHIA13.classes
    }
    assert len(table13) == 13
    np.testing.assert_array_equal(SYNTHIA13.synthia_lut, _expected(table13, 65536))


def test_synthia_19_class_table():
    np.testing.assert_array_equal(CITYSCAPES19.synthia_lut, _expected(SPEC_SYNTHIA_19, 65536))
    assert CITYSCAPES19.classes[CITYSCAPES19.synthia_lut[16]] == "terrain"


def test_synthia_label_map_knows_ids_0_to_22_only():
    raw = np.array([[3, 0, 13, 22], [23, 300, 16, 1]], dtype=np.uint16)
    mapped, unknown = synthia_label_map(SYNTHIA16)(raw)
    np.testing.assert_array_equal(mapped, [[0, 255, 255, 255], [255, 255, 255, 9]])
    assert unknown == {23: 1, 300: 1}  # terrain (16) is a SYNTHIA id, ignored by the 16-class protocol


def test_crosscity_table_is_cityscapes_ids_restricted_to_13():
    mapped, unknown = crosscity_label_map(CROSSCITY13)(np.arange(256, dtype=np.uint8)[None])
    got = {raw: int(t) for raw, t in enumerate(mapped[0]) if t != 255}
    assert got == {7: 0, 8: 1, 11: 2, 19: 3, 20: 4, 21: 5, 23: 6, 24: 7, 25: 8, 26: 9, 28: 10, 32: 11, 33: 12}
    assert set(unknown) == set(range(34, 255))


def test_get_protocol_rejects_unknown_names():
    assert get_protocol("synthia16") is SYNTHIA16
    with pytest.raises(ValueError, match="cityscapes19"):
        get_protocol("cityscapes20")
