"""What the chapters measure (``udalib.analysis``), and that ``udalib.viz`` draws it: class statistics, a model's
probabilities and pixel features, class-mean similarities, entropy."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from udalib import analysis, viz
from udalib.inference import upsample
from udalib.models.output import SegOutput

VOID = 255


class TinySegmenter(nn.Module):
    """Features (B, 4, H/2, W/2) from a strided 1×1 conv, logits (B, 3, H/2, W/2) from a 1×1 head on them."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 1, stride=2), nn.BatchNorm2d(4))
        self.head = nn.Conv2d(4, 3, 1)

    def forward(self, x):
        features = self.backbone(x)
        return SegOutput(logits=self.head(features), features=features)


def test_analysis_never_imports_the_drawing_module():
    code = "import sys, udalib.analysis; print(sorted(m for m in ('udalib.viz', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_class_frequencies_and_top_row():
    a = np.array([[VOID, VOID, 2, 2], [0, 0, 0, 1], [0, 0, 0, 1]])
    b = torch.tensor([[2, 2, 2, 2], [0, 0, 0, 0], [0, 0, 0, 0]])
    dataset = [(None, a, {}), (None, b, {})]
    assert analysis.class_pixel_frequencies(dataset, 3) == pytest.approx(np.array([14, 2, 6]) / 22)
    assert analysis.class_pixel_frequencies(dataset, 3, n=1) == pytest.approx(np.array([6, 2, 2]) / 10)
    assert analysis.top_row(a, 0) == pytest.approx(1 / 3) and analysis.top_row(b, 2) == 0.0
    assert np.isnan(analysis.top_row(a, 5))


def test_class_means_and_their_cosine_similarity():
    sample = analysis.PixelSample(
        features=np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]]), labels=np.array([0, 0, 1]), preds=np.array([0, 1, 1])
    )
    by_label = analysis.class_means(sample, 3)
    assert by_label[:2] == pytest.approx(np.array([[2.0, 0.0], [0.0, 2.0]])) and np.isnan(by_label[2]).all()
    assert analysis.class_means(sample, 3, by="preds")[1] == pytest.approx([1.5, 1.0])
    sim = analysis.cosine_similarity_matrix(torch.tensor(by_label))
    assert sim[:2, :2] == pytest.approx(np.eye(2)) and np.isnan(sim[2]).all() and np.isnan(sim[:, 2]).all()
    assert analysis.cosine_similarity_matrix(by_label[:2], np.array([[1.0, 1.0]]))[:, 0] == pytest.approx(
        [2**-0.5, 2**-0.5]
    )


def test_entropy_maps_and_their_class_means():
    certain = torch.zeros(1, 4, 2, 3)
    certain[:, 1] = 1.0
    probs = torch.cat([certain, torch.full((1, 4, 2, 3), 0.25)])  # (2, 4, 2, 3): one-hot, then uniform
    ent = analysis.entropy_maps(probs)
    assert ent.shape == (2, 2, 3) and ent[0] == pytest.approx(0.0, abs=1e-6) and ent[1] == pytest.approx(1.0)
    labels = np.array([[[0, 0, 1], [1, VOID, VOID]], [[0, 1, 1], [VOID, VOID, VOID]]])
    assert analysis.class_mean_entropy(ent, labels, 3)[:2] == pytest.approx([1 / 3, 2 / 4], abs=1e-6)
    assert np.isnan(analysis.class_mean_entropy(ent, labels, 3)[2])


def test_predict_and_collect_pixels_leave_the_model_in_train_mode():
    model = TinySegmenter().train()
    images = torch.randn(2, 3, 8, 12)
    probs = analysis.predict(model, images)
    assert probs.shape == (2, 3, 8, 12) and probs.sum(1) == pytest.approx(torch.ones(2, 8, 12))
    assert analysis.predict(model, images, size=(4, 6)).shape == (2, 3, 4, 6) and model.training

    labels = torch.randint(0, 3, (2, 8, 12))
    labels[:, :4] = VOID  # the top half of every image is void
    loader = [(images, labels), (images, labels)]
    pix = analysis.collect_pixels(model, loader, n_images=3, per_image=5)
    assert model.training
    assert pix.features.shape == (15, 4) and pix.labels.shape == pix.preds.shape == (15,)
    assert (pix.labels < 3).all()  # void dropped
    with torch.no_grad():  # predictions are the head's argmax on the kept features
        logits = model.eval().head(torch.from_numpy(pix.features)[:, :, None, None])[:, :, 0, 0]
    assert (pix.preds == logits.argmax(1).numpy()).all()


def test_viz_draws_a_tsne_of_pixel_samples():
    rng = np.random.default_rng(0)
    samples = {
        d: analysis.PixelSample(rng.normal(size=(40, 8)), rng.integers(0, 19, 40), rng.integers(0, 19, 40))
        for d in ("source", "target")
    }
    emb, labels, dom = analysis.tsne_embed(samples, max_points=60, max_iter=250)
    assert emb.shape == (60, 2) and labels.shape == dom.shape == (60,) and set(dom) == {0, 1}
    fig = viz.plot_tsne(samples, max_points=60)
    assert isinstance(fig, Figure) and len(fig.axes) == 2


def test_knn_domain_accuracy_tells_mixed_from_separated_domains():
    from udalib.analysis import PixelSample, knn_domain_accuracy

    rng = np.random.default_rng(0)
    labels = np.zeros(300, dtype=np.int64)
    mixed = {d: PixelSample(rng.normal(size=(300, 16)), labels, labels) for d in ("source", "target")}
    assert abs(knn_domain_accuracy(mixed, k=10) - 0.5) < 0.1
    apart = {
        "source": PixelSample(rng.normal(size=(300, 16)) + 5, labels, labels),
        "target": PixelSample(rng.normal(size=(300, 16)) - 5, labels, labels),
    }
    assert knn_domain_accuracy(apart, k=10) == 1.0


def test_class_mean_distances_of_aligned_and_shifted_domains():
    from udalib.analysis import PixelSample, class_mean_distances

    feats = np.array([[1.0, 0.0], [0.0, 1.0]])
    labels = np.array([0, 1])
    same = class_mean_distances(PixelSample(feats, labels, labels), PixelSample(feats, labels, labels), 2)
    assert same["same class"] == pytest.approx(0.0) and same["other classes"] == pytest.approx(1.0)
    swapped = class_mean_distances(PixelSample(feats, labels, labels), PixelSample(feats[::-1], labels, labels), 2)
    assert swapped["same class"] == pytest.approx(1.0)  # each class sits where the other one is in the source


def test_alignment_report_prints_both_numbers_per_model():
    from udalib.analysis import PixelSample, alignment_report, class_mean_distances, knn_domain_accuracy

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 100)
    src = PixelSample(rng.normal(size=(200, 8)) + 3 * labels[:, None], labels, labels)
    tgt = PixelSample(rng.normal(size=(200, 8)) + 3 * labels[:, None] + 5, labels, labels)
    pixels = {"mixed": {"source": src, "target": src}, "shifted": {"source": src, "target": tgt}}
    report = alignment_report(pixels, num_classes=2, seed=0).splitlines()
    assert len(report) == 2 and report[0].startswith("mixed ") and report[1].startswith("shifted ")
    for line, p in zip(report, pixels.values()):
        dist = class_mean_distances(p["source"], p["target"], 2)
        assert f"kNN domain accuracy {knn_domain_accuracy(p, seed=0):.3f}" in line
        assert f"same class {dist['same class']:.3f}, other classes {dist['other classes']:.3f}" in line
    assert "same class -0.000" in report[0] or "same class 0.000" in report[0]  # identical domains


def test_discriminator_maps_are_sigmoid_outputs_at_the_input_size():
    model, images = TinySegmenter().eval(), torch.randn(2, 3, 8, 8)
    torch.manual_seed(1)
    coarse = nn.Conv2d(3, 1, kernel_size=1, stride=4)  # a (B, 1, 2, 2) map, like a patch discriminator's
    maps = analysis.discriminator_maps(model, {"main": coarse}, images, lambda p: p)
    assert set(maps) == {"main"} and maps["main"].shape == (2, 8, 8)
    with torch.no_grad():
        prob = torch.softmax(upsample(model(images).logits, (8, 8)), 1)
        d = torch.sigmoid(coarse(prob))[:, 0].numpy()  # (2, 2, 2)
    assert maps["main"] == pytest.approx(np.kron(d, np.ones((4, 4))), abs=1e-5)  # each patch's value, nearest
    assert ((maps["main"] > 0) & (maps["main"] < 1)).all()


def test_temperature_sweep_tends_to_log_k_and_splits_by_class():
    from udalib.losses.contrastive import contrastive_bound

    rng = np.random.default_rng(0)
    labels = np.array([0] * 30 + [1] * 30 + [VOID] * 5)  # class 2 absent
    sample = analysis.PixelSample(rng.random((65, 6)), labels, labels)
    mean, var = torch.rand(3, 6, dtype=torch.float64), torch.rand(3, 6, dtype=torch.float64)
    losses, per_class = analysis.temperature_sweep(sample, mean, var, [1.0, 1e6], num_classes=3)
    assert losses.shape == (2,) and per_class.shape == (2, 3)
    direct = contrastive_bound(torch.from_numpy(sample.features), torch.from_numpy(labels), mean, var, tau=1.0)
    assert losses[0] == pytest.approx(direct.item())
    assert losses[1] == pytest.approx(np.log(3), abs=1e-5) and per_class[1, :2] == pytest.approx(np.log(3), abs=1e-5)
    assert np.isnan(per_class[:, 2]).all()
    assert losses[0] == pytest.approx(per_class[0, :2].mean())  # equal class sizes: the mean of the two


def test_knob_frames_title_their_numbers():
    losses, per_class = np.array([3.0, 1.2]), np.array([[2.5, 3.5], [1.0, 1.4]])
    fig = viz.plot_temperature([0.1, 100.0], losses, per_class, 1, ["a", "b"])
    assert isinstance(fig, Figure) and fig.axes[0].get_title() == f"tau = 100: loss - log K = {1.2 - np.log(2):+.3f}"
    protos = np.array([[4.0, 1.0, 0.0, 3.0], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])  # class 1 never seen
    fig = viz.plot_sparsity(protos, 0.5, ["a", "b", "c"], loss=-0.2)
    left, right = fig.axes[:2]
    assert left.get_title() == "rho = 0.5: L_sp = -0.200"
    assert [t.get_text() for t in right.get_yticklabels()] == ["a", "c"]
    assert [p.get_width() for p in right.patches] == pytest.approx([0.5, 1.0])  # channels at or above rho
