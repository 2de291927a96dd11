"""Pseudo-labels: probability thresholding, streaming class-wise medians, PNG generation."""

import json
import math
import weakref
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from udalib.inference import predict_logits
from udalib.models.output import SegOutput
from udalib.pseudo_labels import (
    PSEUDO_SUFFIX,
    SOFTMAX_THEN_UPSAMPLE,
    UPSAMPLE_THEN_SOFTMAX,
    ClassThresholds,
    apply_thresholds,
    class_probabilities,
    generate_pseudo_labels,
    labels_order,
    pseudo_label_path,
    pseudo_label_relpath,
    threshold_labels,
)


def exact_median_rule(conf: np.ndarray) -> float:
    """The shipped rule: the element of index round(0.5 * n) of the sorted values."""
    return float(np.sort(conf)[int(np.round(0.5 * len(conf)))])


# ------------------------------------------------------------------ on-the-fly thresholding


def test_threshold_labels_compares_probabilities_not_logits():
    logits = torch.zeros(1, 3, 1, 2)
    logits[0, :, 0, 0] = torch.tensor([0.95, 0.9, 0.0])  # max logit 0.95 > 0.9, but max prob ~0.40
    logits[0, :, 0, 1] = torch.tensor([0.0, 10.0, 0.0])  # max prob 0.9999
    assert torch.softmax(logits, 1)[0, 0, 0, 0] < 0.9 < logits[0, 0, 0, 0]
    labels = threshold_labels(logits, delta=0.9)
    assert labels.dtype == torch.int64 and labels.tolist() == [[[255, 1]]]


def test_threshold_labels_has_no_gradient():
    logits = torch.randn(2, 4, 3, 3, requires_grad=True)
    assert not threshold_labels(logits).requires_grad


def test_apply_thresholds_per_class():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.7, 0.2, 0.1], [0.1, 0.5, 0.4], [0.3, 0.3, 0.4]])  # (4 pixels, K)
    probs = probs.T.reshape(1, 3, 2, 2)
    labels = apply_thresholds(probs, torch.tensor([0.8, 0.5, 0.3]))
    assert labels.tolist() == [[[255, 255], [1, 2]]]  # 0.7 < 0.8; 0.5 >= 0.5 kept; 0.4 >= 0.3 kept


# ------------------------------------------------------------------ streaming medians


def random_probs(seed, b=2, k=5, h=6, w=7, never=4):
    g = torch.Generator().manual_seed(seed)
    logits = 2.5 * torch.randn(b, k, h, w, generator=g)
    logits[:, 0] += 1.0  # class 0 is frequent
    logits[:, never] = -50.0  # class `never` is never the argmax
    return torch.softmax(logits, dim=1)


def test_streaming_medians_match_exact_medians_within_one_bin():
    bins = 1000
    stats = ClassThresholds(5, bins)
    batches = [random_probs(s) for s in range(4)]
    for probs in batches:
        stats.update(probs)
    conf, pred = torch.cat(batches).max(dim=1)
    thr = stats.thresholds(cap=1.0)
    for c in range(4):
        values = conf[pred == c].numpy()
        assert len(values) > 0
        exact = exact_median_rule(values)
        assert 0.0 <= exact - thr[c].item() < 1.0 / bins + 1e-7  # lower edge of the median's bin
    assert thr[4].item() == 0.0  # never predicted
    assert stats.counts.tolist() == [int((pred == c).sum()) for c in range(5)]


def test_median_rule_uses_round_half_to_even():
    stats = ClassThresholds(2, bins=10)
    # class 0 gets 3 pixels with confidences 0.55, 0.65, 0.95: index round(1.5) = 2 -> 0.95 (not 0.65)
    p0 = torch.tensor([0.55, 0.65, 0.95])
    stats.update(torch.stack([p0, 1 - p0]).view(1, 2, 1, 3))
    assert stats.thresholds(cap=1.0)[0].item() == pytest.approx(0.9)


def test_thresholds_are_capped():
    sharp = torch.softmax(40 * torch.randn(2, 5, 6, 7, generator=torch.Generator().manual_seed(1)), dim=1)
    sharp_stats = ClassThresholds(5)
    sharp_stats.update(sharp)
    thr = sharp_stats.thresholds(cap=0.9)
    assert thr.max().item() == pytest.approx(0.9) and (thr <= 0.9).all()
    assert sharp_stats.thresholds(cap=1.0).max().item() > 0.9


def test_histogram_state_does_not_grow_with_images():
    stats = ClassThresholds(5, bins=100)
    size = stats.hist.numel()
    for s in range(10):
        stats.update(random_probs(s))
    assert stats.hist.numel() == size == 5 * 100
    assert stats.hist.sum().item() == 10 * 2 * 6 * 7


# ------------------------------------------------------------------ files


def test_pseudo_label_names():
    name = "aachen/aachen_000000_000019_leftImg8bit.png"
    assert pseudo_label_relpath(name) == "aachen/aachen_000000_000019" + PSEUDO_SUFFIX
    assert pseudo_label_path("/out", name).as_posix() == "/out/aachen/aachen_000000_000019_pseudo_trainIds.png"
    with pytest.raises(ValueError):
        pseudo_label_relpath("../aachen/x_leftImg8bit.png")


class ConstantLogitsModel(nn.Module):
    """Logits = 2x2 average pool of the image (3 channels = 3 classes); records its mode."""

    def __init__(self):
        super().__init__()
        self.modes = []

    def forward(self, x):
        self.modes.append(self.training)
        logits = F.avg_pool2d(x, 2)
        return SegOutput(logits=logits, features=logits)


class ListLoader:
    """Iterable twice; builds each batch when asked and checks that old batches were released."""

    def __init__(self, batches):
        self.batches = batches  # list of (list of (3,) log-prob vectors, list of names)
        self.leaks = 0

    def __iter__(self):
        refs = []
        for vectors, names in self.batches:
            images = torch.stack([v.view(3, 1, 1).expand(3, 8, 8) for v in vectors]).contiguous()
            refs.append(weakref.ref(images))
            if len(refs) >= 3 and refs[-3]() is not None:
                self.leaks += 1  # the batch before last is still referenced by the consumer
            yield images, torch.zeros(len(vectors), 8, 8, dtype=torch.long), {"name": list(names)}
            del images


def logp(*p):
    return torch.tensor([math.log(x) for x in p])


NAMES = [
    "aachen/aachen_000000_000019_leftImg8bit.png",
    "aachen/aachen_000001_000019_leftImg8bit.png",
    "bochum/bochum_000000_000313_leftImg8bit.png",
]


def hand_loader():
    return ListLoader(
        [
            ([logp(0.95, 0.03, 0.02), logp(0.6, 0.3, 0.1)], NAMES[:2]),
            ([logp(0.1, 0.2, 0.7)], NAMES[2:]),
        ]
    )


def test_generate_pseudo_labels_by_hand(tmp_path):
    model = ConstantLogitsModel().train()
    out = tmp_path / "pl"
    stats = generate_pseudo_labels(model, hand_loader(), out, num_classes=3, label_size=(16, 12))
    # class 0: 64 pixels at 0.95 and 64 at 0.6 -> median 0.95 -> capped 0.9; class 2: all 0.7; class 1: never
    thr = stats["thresholds"]
    assert thr[0].item() == pytest.approx(0.9)
    assert thr[1].item() == 0.0
    assert 0.7 - 1e-3 <= thr[2].item() <= 0.7
    expected = {NAMES[0]: 0, NAMES[1]: 255, NAMES[2]: 2}  # 0.95 kept, 0.6 < 0.9 ignored, 0.7 kept
    for name, value in expected.items():
        path = out / pseudo_label_relpath(name)
        assert path.is_file()
        with Image.open(path) as img:
            assert img.mode == "L" and img.size == (12, 16)  # PIL size is (W, H)
            assert np.array_equal(np.asarray(img), np.full((16, 12), value, dtype=np.uint8))
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == sorted(
        [pseudo_label_relpath(n) for n in NAMES] + ["thresholds.json"]
    )
    saved = json.loads((out / "thresholds.json").read_text())
    assert saved["thresholds"] == pytest.approx(thr.tolist())
    assert saved["predicted_pixels_pass1"] == [128, 0, 64]
    assert stats["kept_fraction"].tolist() == pytest.approx([0.5, 0.0, 1.0])
    assert stats["num_images"] == 3
    assert set(model.modes) == {False} and model.training  # eval during the call, mode restored after


class RampModel(nn.Module):
    """Logits (B, 2, 1, 2) whatever the image: class 0 scores 2 on the left pixel and 0 on the right, class 1 0."""

    def forward(self, x):
        logits = torch.zeros(x.shape[0], 2, 1, 2)
        logits[:, 0, 0, 0] = 2.0
        return SegOutput(logits=logits, features=logits)


def test_the_two_orders_of_softmax_and_upsampling_by_hand(tmp_path):
    images = torch.zeros(1, 3, 1, 5)  # upsampled to 1 x 5: class 0's logit 2, 1.5, 1, 0.5, 0
    up_first = class_probabilities(RampModel(), images, (1, 5), UPSAMPLE_THEN_SOFTMAX)[0, 0, 0]
    soft_first = class_probabilities(RampModel(), images, (1, 5), SOFTMAX_THEN_UPSAMPLE)[0, 0, 0]
    sig = torch.sigmoid
    assert up_first.tolist() == pytest.approx(sig(torch.tensor([2.0, 1.5, 1.0, 0.5, 0.0])).tolist())
    t = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])  # the softmax, then linear between sigmoid(2) and 1/2
    assert soft_first.tolist() == pytest.approx((sig(torch.tensor(2.0)) * (1 - t) + 0.5 * t).tolist())
    # the median (index round(2.5) = 2 of 5) is the middle pixel: sigmoid(1) = 0.7311 or (0.8808 + 0.5) / 2 = 0.6904,
    # as the lower edge of its 1/1000 bin
    loader = [(images, torch.zeros(1, 1, 5, dtype=torch.long), {"name": ["a/a_leftImg8bit.png"]})]
    thresholds = {}
    for order in (UPSAMPLE_THEN_SOFTMAX, SOFTMAX_THEN_UPSAMPLE):
        stats = generate_pseudo_labels(
            RampModel(), loader, tmp_path / order, num_classes=2, label_size=(1, 5), order=order
        )
        thresholds[order] = stats["thresholds"][0].item()
        assert labels_order(tmp_path / order) == order
    assert thresholds == pytest.approx({UPSAMPLE_THEN_SOFTMAX: 0.731, SOFTMAX_THEN_UPSAMPLE: 0.690}, abs=1e-6)
    with pytest.raises(ValueError, match="pseudo-label order must be one of"):
        generate_pseudo_labels(RampModel(), loader, tmp_path / "x", num_classes=2, label_size=(1, 5), order="logits")
    assert labels_order(tmp_path / "none") is None


def test_bafft_pseudo_labels_take_the_softmax_first_as_released_and_sdca_upsamples_first():
    from udalib.methods import get as get_method

    assert get_method("bafft_step1").cls.pseudo_label_order == SOFTMAX_THEN_UPSAMPLE  # Generate_Pseudo_Label.py
    assert get_method("sdca").cls.pseudo_label_order == UPSAMPLE_THEN_SOFTMAX


def test_a_folder_written_before_the_order_was_recorded_reads_as_upsampled_first(tmp_path):
    (tmp_path / "thresholds.json").write_text(json.dumps({"thresholds": [0.5]}))
    assert labels_order(tmp_path) == UPSAMPLE_THEN_SOFTMAX


def test_a_stage_makes_bafft_pseudo_labels_in_the_released_order_and_remakes_older_ones(tmp_path, monkeypatch):
    from udalib import stages
    from udalib.presets import resolve

    ckpt = tmp_path / "bafft_step1" / "checkpoint_final.pt"
    out = ckpt.parent / "pseudo_labels"
    out.mkdir(parents=True)
    (out / "thresholds.json").write_text(json.dumps({"thresholds": [0.5]}))  # made before the order was recorded
    made = []

    def generate(model, loader, out_dir, *, order, **kw):
        made.append(order)
        (Path(out_dir) / "thresholds.json").write_text(json.dumps({"order": order}))

    monkeypatch.setattr(stages, "stage_checkpoint", lambda cfg, method, **_: ckpt)
    monkeypatch.setattr(stages, "load_trained", lambda path, device: None)
    monkeypatch.setattr(stages, "build_domains", lambda cfg: SimpleNamespace(pseudo_label_loader=lambda: []))
    monkeypatch.setattr(stages, "generate_pseudo_labels", generate)
    cfg = resolve("bafft", "quick")
    assert stages.stage_pseudo_labels(cfg, "bafft_step1") == out and made == [SOFTMAX_THEN_UPSAMPLE]
    stages.stage_pseudo_labels(cfg, "bafft_step1")  # now in BAFFT's order: reused, not made again
    assert made == [SOFTMAX_THEN_UPSAMPLE]


def test_refuses_a_non_empty_folder(tmp_path):
    out = tmp_path / "pl"
    out.mkdir()  # an empty folder is fine
    generate_pseudo_labels(ConstantLogitsModel(), hand_loader(), out, num_classes=3, label_size=(8, 8))
    with pytest.raises(FileExistsError, match=str(out)):
        generate_pseudo_labels(ConstantLogitsModel(), hand_loader(), out, num_classes=3, label_size=(8, 8))
    (out / "mine.txt").write_text("a file of the user's")
    generate_pseudo_labels(ConstantLogitsModel(), hand_loader(), out, num_classes=3, label_size=(8, 8), overwrite=True)
    assert not list(out.rglob("*.tmp")) and not (out / "mine.txt").exists()  # a fresh folder
    (aside,) = tmp_path.glob("pl.previous-*")  # the old one, moved aside with everything in it
    assert (aside / "mine.txt").read_text() == "a file of the user's" and (aside / "thresholds.json").is_file()


class RandomModel(nn.Module):
    def __init__(self, k=4):
        super().__init__()
        self.head = nn.Conv2d(3, k, 1)
        torch.nn.init.normal_(self.head.weight, std=2.0, generator=torch.Generator().manual_seed(0))

    def forward(self, x):
        logits = self.head(F.avg_pool2d(x, 2))
        return SegOutput(logits=logits, features=logits)


class RandomLoader:
    def __init__(self, num_batches):
        self.num_batches = num_batches
        self.leaks = 0

    def __iter__(self):
        refs = []
        for i in range(self.num_batches):
            images = torch.randn(2, 3, 8, 10, generator=torch.Generator().manual_seed(i))
            refs.append(weakref.ref(images))
            if len(refs) >= 3 and refs[-3]() is not None:
                self.leaks += 1
            names = [f"city{i}/city{i}_{j:06d}_000019_leftImg8bit.png" for j in range(2)]
            yield images, torch.zeros(2, 8, 10, dtype=torch.long), {"name": names}
            del images


def test_generated_labels_follow_the_saved_thresholds(tmp_path):
    model, loader = RandomModel(), RandomLoader(3)
    stats = generate_pseudo_labels(model, loader, tmp_path / "pl", num_classes=4, label_size=(12, 15), cap=1.0)
    thr = torch.tensor(json.loads((tmp_path / "pl" / "thresholds.json").read_text())["thresholds"])
    pass1 = torch.cat([torch.softmax(predict_logits(model, x, (8, 10)), 1) for x, _, _ in loader])
    conf, pred = pass1.max(1)
    for c in range(4):
        if (pred == c).any():
            assert 0.0 <= exact_median_rule(conf[pred == c].numpy()) - thr[c].item() < 1e-3 + 1e-7
    kept = 0
    for images, _, meta in loader:
        expected = apply_thresholds(torch.softmax(predict_logits(model, images, (12, 15)), 1), thr)
        for name, label in zip(meta["name"], expected, strict=True):
            written = np.asarray(Image.open(pseudo_label_path(tmp_path / "pl", name)))
            assert np.array_equal(written, label.numpy().astype(np.uint8))
            kept += int((label != 255).sum())
    assert 0 < kept < 6 * 12 * 15
    assert stats["kept_fraction_all"] == pytest.approx(kept / (6 * 12 * 15))


@pytest.mark.parametrize("num_batches", [3, 8])
def test_only_the_current_batch_is_held(tmp_path, num_batches):
    # Every batch older than the previous one must be garbage by the time the next is built, in both
    # passes: memory cannot grow with the number of images. The pass-1 state is a fixed K x bins histogram.
    loader = RandomLoader(num_batches)
    generate_pseudo_labels(RandomModel(), loader, tmp_path / "pl", num_classes=4, label_size=(16, 20), bins=50)
    assert loader.leaks == 0
    saved = json.loads((tmp_path / "pl" / "thresholds.json").read_text())
    assert sum(saved["predicted_pixels_pass1"]) == num_batches * 2 * 8 * 10
