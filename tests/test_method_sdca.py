"""SDCA method: estimator pass, one training step, on-the-fly thresholds, state round-trip, registry."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from udalib import methods
from udalib.data.streams import Batch
from udalib.losses.contrastive import ClassStatistics, contrastive_bound, downsample_labels, flatten_pixels
from udalib.losses.lovasz import lovasz_softmax_logits
from udalib.losses.segmentation import seg_ce
from udalib.methods.sdca import SDCA, SDCAConfig, SDCASource, SDCASourceConfig
from udalib.methods.supervised import Supervised
from udalib.models import SegOutput, SmallDeepLab, build_model
from udalib.presets import QUICK_TRAIN, resolve

K = 5
H, W = 32, 64
A = 24  # feature channels of the narrow test model


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread avoids spin-wait slowdowns on a shared 2-CPU box (restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small_model(seed: int = 0, multi_level: bool = False) -> nn.Module:
    """The quick model's architecture, narrowed so that a 2-CPU box runs every test in seconds."""
    torch.manual_seed(seed)
    return SmallDeepLab(K, multi_level=multi_level, channels=(8, 12, 16, A))


def make_batch(seed: int, n: int = 2, ignore_frac: float = 0.2) -> Batch:
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(n, 3, H, W, generator=g)
    label = torch.randint(0, K, (n, H, W), generator=g)
    label[torch.rand(n, H, W, generator=g) < ignore_frac] = 255
    return Batch(image, label, {})


def reference_stats(pixels: torch.Tensor, labels: torch.Tensor):
    """Direct per-class count, mean and biased variance over valid pixels (float64)."""
    x = pixels.double()
    count = torch.zeros(K, dtype=torch.float64)
    mean = torch.zeros(K, x.shape[1], dtype=torch.float64)
    var = torch.zeros(K, x.shape[1], dtype=torch.float64)
    for c in range(K):
        sel = x[labels == c]
        count[c] = sel.shape[0]
        if sel.shape[0]:
            mean[c] = sel.mean(0)
            var[c] = sel.var(0, unbiased=False)
    return count, mean, var


def collect(model, batches):
    """Features, logits and downsampled labels of `batches`, model in eval mode."""
    model.eval()
    feats, logits, labels = [], [], []
    with torch.no_grad():
        for image, label, _ in batches:
            out = model(image)
            y = downsample_labels(label, out.features.shape[-2:]).reshape(-1)
            feats.append(flatten_pixels(out.features))
            logits.append(flatten_pixels(out.logits))
            labels.append(y)
    model.train()
    return torch.cat(feats), torch.cat(logits), torch.cat(labels)


def test_feature_channels_are_the_features_the_model_returns():
    for model in (build_model("small", num_classes=K, multi_level=False), small_model()):
        out = model(torch.randn(1, 3, H, W))
        assert out.features.shape[1] == model.feature_channels and out.aux_logits is None
    assert build_model("small", num_classes=K).feature_channels == 128 and small_model().feature_channels == A


def test_prepare_fills_estimators_with_exact_source_statistics():
    model = small_model()
    loader = [(b.image, b.label, b.meta) for b in (make_batch(s, n=3) for s in range(4))]
    method = SDCA(SDCAConfig(), K, feature_dim=A)
    method.prepare(model, loader, torch.device("cpu"))
    assert model.training  # mode restored

    feats, logits, y = collect(model, loader)  # eval mode: the pass must run in eval mode to match
    for stats, pixels in ((method.feat_stats, feats), (method.out_stats, logits)):
        count, mean, var = reference_stats(pixels, y)
        assert torch.equal(stats.count, count)
        assert count.sum() == (y != 255).sum() > 0
        torch.testing.assert_close(stats.mean, mean, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(stats.var, var, rtol=1e-7, atol=1e-9)

    # the train-mode (batch-statistics BN) features differ, so the comparison above does test eval mode
    model.train()
    with torch.no_grad():
        f_train = flatten_pixels(model(loader[0][0]).features)
    assert not torch.allclose(f_train, feats[: f_train.shape[0]])


def test_prepare_rejects_wrong_feature_dim_and_aux_head():
    loader = [(make_batch(0).image, make_batch(0).label, {})]
    with pytest.raises(ValueError, match="feature_dim"):
        SDCA(SDCAConfig(), K, feature_dim=A + 1).prepare(small_model(), loader, torch.device("cpu"))
    multi = small_model(multi_level=True)
    with pytest.raises(ValueError, match="multi_level=False"):
        SDCA(SDCAConfig(), K, feature_dim=A).prepare(multi, loader, torch.device("cpu"))


def test_estimator_init_pass_can_be_skipped():
    method = SDCA(SDCAConfig(estimator_init_pass=False), K, feature_dim=A)
    method.prepare(small_model(), [(make_batch(0).image, make_batch(0).label, {})], torch.device("cpu"))
    assert method.feat_stats.count.sum() == 0 and method.out_stats.count.sum() == 0


def test_training_step_losses_gradients_and_estimator_updates():
    model = small_model()
    method = SDCA(SDCAConfig(), K, feature_dim=A)
    warm = [(b.image, b.label, b.meta) for b in (make_batch(10 + s) for s in range(2))]
    method.prepare(model, warm, torch.device("cpu"))
    before = {k: v.clone() for k, v in method.state_dict().items()}

    source, target = make_batch(1), make_batch(2, ignore_frac=0.0)
    target.label.fill_(0)  # target labels must never be read: a single class would show up in the counts
    # A very confident model makes the target term non-empty: scale the head so that softmax > 0.9 somewhere.
    with torch.no_grad():
        for conv in model.layer6.conv2d_list:
            conv.weight.mul_(200.0)
    captured = []
    model.zero_grad(set_to_none=True)
    logs = method.training_step(model, source, target, 0, lambda loss: (captured.append(loss), loss.backward()))

    names = {"loss", "ce", "lovasz", "feat_src", "feat_tgt", "out_src", "out_tgt", "pl_kept"}
    assert set(logs) == names
    assert all(torch.isfinite(v) and not v.requires_grad and v.dim() == 0 for v in logs.values())
    assert 0.0 < logs["pl_kept"] < 1.0  # some target pixels pass the 0.9 threshold, some do not
    assert logs["feat_tgt"] > 0 and logs["out_tgt"] > 0
    # with tau = 100 and the shipped normalisations every bound stays close to log K (PixelContrastiveLoss)
    for k in ("feat_src", "feat_tgt", "out_src", "out_tgt"):
        assert abs(logs[k].item() - math.log(K)) < 0.05
    # one backward, of the documented weighted sum
    assert len(captured) == 1
    total = logs["ce"] + 0.75 * logs["lovasz"] + logs["feat_src"] + logs["feat_tgt"] + logs["out_src"] + logs["out_tgt"]
    torch.testing.assert_close(captured[0].detach(), total)
    torch.testing.assert_close(logs["loss"], total)

    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, name

    # estimators: exactly the source batch's valid downsampled pixels were added, nothing from the target
    with torch.no_grad():
        out_s = model(source.image)  # train-mode BN: same batch, same outputs as in the step
    y_s = downsample_labels(source.label, out_s.features.shape[-2:]).reshape(-1)
    added = torch.bincount(y_s[y_s != 255], minlength=K).double()
    torch.testing.assert_close(method.feat_stats.count - before["feat_stats.count"], added)
    torch.testing.assert_close(method.out_stats.count - before["out_stats.count"], added)
    expected = ClassStatistics(K, A)
    expected.load_state_dict({k.split(".", 1)[1]: v for k, v in before.items() if k.startswith("feat_stats.")})
    expected.update(flatten_pixels(out_s.features), y_s)
    torch.testing.assert_close(method.feat_stats.mean, expected.mean)
    torch.testing.assert_close(method.feat_stats.var, expected.var)

    # the bound used the statistics *after* the update (train_sdca.py): recompute it from the final state
    feat_src = contrastive_bound(flatten_pixels(out_s.features), y_s, method.feat_stats.mean, method.feat_stats.var)
    torch.testing.assert_close(logs["feat_src"], feat_src)
    out_src = contrastive_bound(flatten_pixels(out_s.logits), y_s, method.out_stats.mean, method.out_stats.var)
    torch.testing.assert_close(logs["out_src"], out_src)
    torch.testing.assert_close(logs["ce"], seg_ce(out_s.logits, source.label))
    torch.testing.assert_close(logs["lovasz"], lovasz_softmax_logits(out_s.logits, source.label))


def test_first_step_uses_updated_statistics():
    """From empty estimators the bound would be exactly log K (zero prototypes) if the update came after it."""
    model = small_model()
    method = SDCA(SDCAConfig(use_target=False), K, feature_dim=A)
    logs = method.training_step(model, make_batch(1), None, 0, lambda loss: loss.backward())
    assert logs["feat_tgt"] == 0 and logs["out_tgt"] == 0 and logs["pl_kept"] == 0
    assert abs(logs["feat_src"].item() - math.log(K)) > 1e-5
    assert method.feat_stats.count.sum() > 0


class ConstantHead(nn.Module):
    """Tiny segmenter whose logits are a per-class constant: the head's bias (weights zero)."""

    def __init__(self, bias):
        super().__init__()
        self.body = nn.Conv2d(3, 6, 3, stride=4, padding=1)
        self.head = nn.Conv2d(6, K, 1)
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.bias.copy_(torch.tensor(bias))

    def forward(self, x):
        f = F.relu(self.body(x))  # (B, 6, H/4, W/4)
        return SegOutput(logits=self.head(f), features=f)


@pytest.mark.parametrize("bias, kept", [([1.0, 0.95, 0.0, 0.0, 0.0], 0.0), ([12.0, 0.0, 0.0, 0.0, 0.0], 1.0)])
def test_target_threshold_uses_probabilities(bias, kept):
    model = ConstantHead(bias)
    logits = model(make_batch(2).image).logits
    assert (logits.max(1).values > 0.9).all()  # thresholding raw logits (the pre-c6e2a34 bug) would keep all
    method = SDCA(SDCAConfig(), K, feature_dim=6)
    logs = method.training_step(model, make_batch(1), make_batch(2), 0, lambda loss: loss.backward())
    assert logs["pl_kept"].item() == kept
    if kept == 0.0:  # softmax max = e/(e + e^0.95 + 3) ~ 0.32 < 0.9: no target pixel counted
        assert logs["feat_tgt"] == 0 and logs["out_tgt"] == 0
    else:
        assert logs["feat_tgt"] > 0 and logs["out_tgt"] > 0


def test_state_dict_round_trip():
    model = small_model()
    method = SDCA(SDCAConfig(), K, feature_dim=A)
    method.prepare(model, [(make_batch(0).image, make_batch(0).label, {})], torch.device("cpu"))
    method.training_step(model, make_batch(1), make_batch(2), 0, lambda loss: loss.backward())
    state = method.state_dict()
    assert set(state) == {f"{e}.{b}" for e in ("feat_stats", "out_stats") for b in ("count", "mean", "var")}
    assert state["feat_stats.mean"].shape == (K, A) and state["out_stats.var"].shape == (K, K)
    fresh = SDCA(SDCAConfig(), K, feature_dim=A)
    fresh.load_state_dict(state)
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_source_stage_step():
    model = small_model()
    method = SDCASource(SDCASourceConfig(), K)
    assert not SDCASource.uses_target
    src = make_batch(1)
    logs = method.training_step(model, src, None, 0, lambda loss: loss.backward())
    torch.testing.assert_close(logs["loss"], logs["ce"] + 0.75 * logs["lovasz"])
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_registry_quick():
    cfg = resolve("sdca", "quick")
    assert methods.get("sdca").cls is SDCA
    assert cfg.train.init_checkpoint == "stage:sdca_source"
    assert cfg.data.source_sampling == "class_balanced" and cfg.data.source_aug == "sdca_color"
    assert not cfg.train.multi_level and cfg.train.lr == 0.005
    assert (cfg.train.iters, cfg.train.batch_source, cfg.train.batch_target) == (200, 4, 4)  # QUICK_ADAPTATION

    ssl = resolve("sdca_ssl", "quick")
    assert methods.get("sdca_ssl").cls is Supervised and ssl.data.labelled == "target"
    assert ssl.data.pseudo_label_dir == "stage:sdca"
    assert ssl.train.init_checkpoint is None and ssl.method_cfg.lambda_seg_aux == 0.0
    assert ssl.train.iters == QUICK_TRAIN.iters  # a fresh network, as long as the source-only model it is compared with
    assert ssl.data.labelled_aug == "scale_crop" and ssl.data.eval_size == (128, 256)

    src = resolve("sdca_source", "quick")
    assert not methods.get("sdca_source").cls.uses_target
    assert src.train.iters == QUICK_TRAIN.iters and src.train.lr == 0.01 and not src.train.multi_level
    assert src.method_cfg.lambda_lov == 0.75


def test_registry_paper_rows():
    def paper(method):
        return resolve(method, "paper", data_root="/gta5", target_root="/cityscapes", device="cuda")

    cfg = paper("sdca")
    assert cfg.method_cfg.tau == 100.0 and cfg.method_cfg.delta == 0.9
    assert cfg.data.source_aug == "sdca_color" and cfg.data.source_sampling == "class_balanced"
    assert cfg.data.normalization == "imagenet_rgb"
    t = cfg.train
    assert (t.iters, t.poly_horizon, t.lr, t.bn_mode) == (40_000, 62_500, 2.5e-4, "frozen")
    assert t.batch_source * t.accum == 4 and t.init_checkpoint == "stage:sdca_source"
    t = paper("sdca_source").train
    assert (t.iters, t.poly_horizon, t.lr, t.bn_mode) == (20_000, 31_250, 5e-4, "frozen")
    ssl = paper("sdca_ssl")
    assert ssl.data.pseudo_label_dir == "stage:sdca" and ssl.train.init_checkpoint is None
    t = ssl.train
    assert (t.iters, t.poly_horizon, t.lr, t.pretrained) == (20_000, 31_250, 5e-4, "imagenet")
