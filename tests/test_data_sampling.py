"""FADA's class-balanced sampler and the class-presence scan."""

import numpy as np
import pytest
from fixtures import write_gta5

from udalib.data import GTA5, ClassBalancedSampler, class_presence


def _presence(n=500, k=5, rare=10, seed=0):
    """Common classes 0..k-2 in ~60% of images each; the last class in `rare` images only; image 0 contains none."""
    rng = np.random.default_rng(seed)
    presence = rng.random((n, k)) < 0.6
    presence[:, -1] = False
    presence[rng.choice(np.arange(1, n), rare, replace=False), -1] = True
    presence[0] = False
    return presence


def test_deterministic_with_a_seed():
    presence = _presence()
    a = list(ClassBalancedSampler(presence, 200, sub_epoch=50, seed=1))
    b = list(ClassBalancedSampler(presence, 200, sub_epoch=50, seed=1))
    c = list(ClassBalancedSampler(presence, 200, sub_epoch=50, seed=2))
    assert a == b and a != c and len(a) == 200
    sampler = ClassBalancedSampler(presence, 200, sub_epoch=50, seed=1)
    assert list(sampler) == a and list(sampler) != a  # the next pass is a new, reproducible draw


def test_draws_only_images_containing_the_chosen_class():
    presence = _presence()
    draws = list(ClassBalancedSampler(presence, 1000, sub_epoch=100, seed=0).draws())
    assert all(presence[i, c] for c, i in draws)
    assert 0 not in {i for _, i in draws}  # an image without any class is never drawn


def test_rare_classes_are_drawn_more_often_than_uniform():
    presence = _presence(rare=10)  # 2% of the images
    draws = np.array(list(ClassBalancedSampler(presence, 3000, sub_epoch=300, seed=0).draws()))
    assert presence[draws[:, 1], -1].mean() > 0.15  # uniform sampling gives 0.02
    # round-robin: the draws made for the rare class cycle through its 10 images evenly
    for_rare = draws[draws[:, 0] == 4, 1]
    counts = np.bincount(for_rare, minlength=len(presence))[presence[:, -1]]
    assert counts.min() > 0 and counts.max() - counts.min() <= 1


def test_first_draws_follow_the_weights():
    # at the start of a sub-epoch all frequencies are 0: every available class is equally likely;
    # once class 0 is frequent its weight 1/log(1.01 + f) falls
    presence = np.array([[True, False], [True, False], [False, True]])
    draws = [c for c, _ in ClassBalancedSampler(presence, 4000, sub_epoch=2, seed=0).draws()]
    first = np.array(draws[0::2])
    assert abs(first.mean() - 0.5) < 0.05
    second = np.array(draws[1::2])[first == 0]  # after drawing class 0: w = (1/log 2.01, 1/log 1.01)
    w = np.array([1 / np.log(2.01), 1 / np.log(1.01)])
    assert abs(second.mean() - w[1] / w.sum()) < 0.03


def test_list_of_sets_equals_matrix_and_empty_is_refused():
    sets = [{0, 2}, {1}, set(), {2}]
    matrix = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0], [0, 0, 1]], dtype=bool)
    assert list(ClassBalancedSampler(sets, 50, seed=3)) == list(ClassBalancedSampler(matrix, 50, seed=3))
    with pytest.raises(ValueError, match="empty"):
        ClassBalancedSampler(np.zeros((3, 2), bool), 5)


def test_class_presence_scans_labels(tmp_path):
    a = np.array([[7, 8], [0, 33]], dtype=np.uint8)  # road, sidewalk, bicycle
    b = np.array([[26, 26], [26, 255]], dtype=np.uint8)  # car
    write_gta5(tmp_path, [a, b])
    presence = class_presence(GTA5(tmp_path))
    assert presence.shape == (2, 19)
    assert np.flatnonzero(presence[0]).tolist() == [0, 1, 18]
    assert np.flatnonzero(presence[1]).tolist() == [13]
