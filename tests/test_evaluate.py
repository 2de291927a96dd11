"""Evaluation: the confusion matrix, IoU on known cases, the 16/13-class protocol, and agreement with the official
``cityscapesscripts`` pixel-level evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from udalib.data.labels import CITYSCAPES19, CITYSCAPES_LABEL_IDS, SYNTHIA16
from udalib.evaluate import ConfusionMatrix, score_folders, summarize


def test_confusion_matrix_and_iou_on_a_known_case():
    cm = ConfusionMatrix(3)
    gt = torch.tensor([0, 0, 1, 1, 2, 255])
    pred = torch.tensor([0, 1, 1, 1, 0, 2])
    cm.update(gt, pred)
    assert cm.mat.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    # IoU_0 = 1 / (2 + 2 - 1), IoU_1 = 2 / (2 + 3 - 2), IoU_2 = 0 / (1 + 0 - 0)
    np.testing.assert_allclose(cm.iou(), [1 / 3, 2 / 3, 0.0])


def test_absent_class_is_nan_and_left_out_of_the_mean():
    cm = ConfusionMatrix(19)
    cm.update(torch.tensor([0, 1]), torch.tensor([0, 1]))
    res = summarize(cm, CITYSCAPES19)
    assert res.main_miou == pytest.approx(100.0)
    assert np.isnan(res.per_class_iou["wall"])


def test_synthia_protocol_reports_16_and_13_classes():
    cm = ConfusionMatrix(16)
    # perfect on every class except wall (3), which is always predicted as road
    gt = torch.arange(16).repeat(10)
    pred = gt.clone()
    pred[gt == 3] = 0
    cm.update(gt, pred)
    res = summarize(cm, SYNTHIA16)
    iou = np.array(list(res.per_class_iou.values()))
    assert res.miou[16] == pytest.approx(np.mean(iou))
    # wall's pixels become road false positives: road IoU = 10 / 20; wall, fence, pole are not among the 13
    assert res.per_class_iou["road"] == pytest.approx(50.0) and res.per_class_iou["wall"] == 0.0
    assert res.miou[13] == pytest.approx((12 * 100 + 50) / 13)
    assert res.miou[16] == pytest.approx((14 * 100 + 50 + 0) / 16)


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)


@pytest.mark.parametrize("void_predictions", [False, True], ids=["classes only", "with void (255) predictions"])
def test_matches_cityscapesscripts_pixel_level_evaluation(tmp_path, void_predictions):
    """Void predictions (255 in a prediction PNG) are misses of the ground-truth class for cityscapesscripts."""
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official

    rng = np.random.default_rng(0)
    label_ids = np.array(CITYSCAPES_LABEL_IDS)
    gt_files, pred_label_files = [], []
    for i in range(3):
        stem = f"frankfurt/frankfurt_{i:06d}_000019"
        gt = rng.integers(0, 34, (64, 128))  # every official id, void ones included
        mostly_classes = rng.random(gt.shape) < 0.6
        gt[mostly_classes] = label_ids[rng.integers(0, 19, mostly_classes.sum())]
        noise = rng.integers(0, 19, gt.shape)
        pred_train = np.where(rng.random(gt.shape) < 0.6, CITYSCAPES19.cityscapes_lut[gt], noise)
        pred_train[pred_train == 255] = 0
        if void_predictions:
            pred_train[rng.random(gt.shape) < 0.1] = 255
        _write(tmp_path / "gt" / f"{stem}_gtFine_labelIds.png", gt)
        _write(tmp_path / "pred" / f"{stem}_leftImg8bit.png", pred_train)
        pred_ids = np.where(pred_train == 255, 0, label_ids[np.minimum(pred_train, 18)])  # void: labelId 0
        _write(tmp_path / "pred_ids" / f"{stem}_leftImg8bit.png", pred_ids)
        gt_files.append(str(tmp_path / "gt" / f"{stem}_gtFine_labelIds.png"))
        pred_label_files.append(str(tmp_path / "pred_ids" / f"{stem}_leftImg8bit.png"))

    ours = score_folders(tmp_path / "pred", tmp_path / "gt", "cityscapes19")

    args = official.args
    args.evalInstLevelScore, args.JSONOutput, args.quiet = False, False, True
    result = official.evaluateImgLists(pred_label_files, gt_files, args)
    theirs = {name: 100 * v for name, v in result["classScores"].items()}
    for name in CITYSCAPES19.classes:
        assert ours.per_class_iou[name] == pytest.approx(theirs[name], abs=1e-4), name
    assert ours.main_miou == pytest.approx(100 * result["averageScoreClasses"], abs=1e-6)
