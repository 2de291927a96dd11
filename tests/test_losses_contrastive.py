"""SDCA: class statistics (exact pooled merge) and the closed-form contrastive bound."""

import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from udalib.losses.contrastive import (
    ClassStatistics,
    contrastive_bound,
    downsample_labels,
    flatten_pixels,
)

K, A = 5, 8


def make_batch(g, n, absent=(), ignore_frac=0.2, offset=20.0):
    """Features with class-dependent offsets (large mean vs small spread stresses cancellation)."""
    labels = torch.randint(0, K, (n,), generator=g)
    for c in absent:
        labels[labels == c] = (c + 1) % K
    feats = offset * (labels[:, None].float() + 1) + 0.3 * torch.randn(n, A, generator=g)
    labels[torch.rand(n, generator=g) < ignore_frac] = 255
    return feats, labels


def reference_stats(feats, labels):
    f, y = feats.double(), labels
    count = torch.zeros(K, dtype=torch.float64)
    mean = torch.zeros(K, A, dtype=torch.float64)
    var = torch.zeros(K, A, dtype=torch.float64)
    for c in range(K):
        x = f[y == c]
        count[c] = len(x)
        if len(x):
            mean[c] = x.mean(0)
            var[c] = x.var(0, unbiased=False)
    return count, mean, var


def test_class_statistics_match_direct_computation():
    g = torch.Generator().manual_seed(0)
    stats = ClassStatistics(K, A)
    seen_f, seen_y = [], []
    for i, n in enumerate([50, 3, 400, 1, 120]):
        absent = (1, 3) if i % 2 == 0 else (0,)  # classes missing from some batches
        feats, labels = make_batch(g, n, absent=absent)
        stats.update(feats, labels)
        seen_f.append(feats)
        seen_y.append(labels)
    feats, labels = torch.cat(seen_f), torch.cat(seen_y)
    count, mean, var = reference_stats(feats, labels)
    assert torch.equal(stats.count, count)
    torch.testing.assert_close(stats.mean, mean, rtol=1e-5, atol=0)
    torch.testing.assert_close(stats.var, var, rtol=1e-5, atol=1e-12)
    assert stats.mean.dtype == torch.float64 and stats.var.dtype == torch.float64


def test_statistics_do_not_depend_on_the_batch_split_and_skip_absent_classes():
    g = torch.Generator().manual_seed(1)
    feats, labels = make_batch(g, 300, absent=(4,))
    one, many = ClassStatistics(K, A), ClassStatistics(K, A)
    one.update(feats, labels)
    for chunk in torch.split(torch.arange(300), 37):
        many.update(feats[chunk], labels[chunk])
    torch.testing.assert_close(one.mean, many.mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(one.var, many.var, rtol=1e-9, atol=1e-12)
    assert one.count[4] == 0 and torch.equal(one.mean[4], torch.zeros(A)) and torch.equal(one.var[4], torch.zeros(A))


def test_update_is_outside_autograd_and_state_dict_round_trips():
    feats = torch.randn(10, A, requires_grad=True)
    stats = ClassStatistics(K, A)
    stats.update(feats, torch.arange(10) % K)
    assert not stats.mean.requires_grad and feats.grad is None
    state = stats.state_dict()
    assert set(state) == {"count", "mean", "var"}
    other = ClassStatistics(K, A)
    other.load_state_dict(state)
    assert torch.equal(other.mean, stats.mean) and torch.equal(other.count, stats.count)


def test_labels_out_of_range_are_rejected():
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        ClassStatistics(K, A).update(torch.randn(3, A), torch.tensor([0, 5, 255]))


def test_update_from_maps_downsamples_labels_nearest():
    g = torch.Generator().manual_seed(2)
    feats = torch.randn(2, A, 3, 4, generator=g)  # (B, A, h, w)
    labels = torch.randint(0, K, (2, 12, 16), generator=g)  # (B, H, W)
    labels[0, :4] = 255
    stats = ClassStatistics(K, A)
    stats.update_from_maps(feats, labels)
    small = labels[:, ::4, ::4]  # nearest for an integer factor picks the top-left pixel of each cell
    assert torch.equal(downsample_labels(labels, (3, 4)), small)
    count, mean, var = reference_stats(feats.permute(0, 2, 3, 1).reshape(-1, A), small.reshape(-1))
    assert torch.equal(stats.count, count)
    torch.testing.assert_close(stats.mean, mean)
    torch.testing.assert_close(stats.var, var)
    assert torch.equal(flatten_pixels(feats)[5], feats[0, :, 1, 1])  # pixel (b=0, y=1, x=1)


def test_large_batch_runs_without_n_by_k_by_a_temporaries():
    # an N x K x A float64 temporary would be 200000 * 19 * 256 * 8 bytes = 7.8 GB
    n, k, a = 200_000, 19, 256
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(n, a, generator=g)
    labels = torch.randint(0, k, (n,), generator=g)
    stats = ClassStatistics(k, a)
    stats.update(feats, labels)  # would need ~8 GB with a dense temporary
    assert stats.count.sum().item() == n
    sel = labels == 7
    torch.testing.assert_close(stats.mean[7], feats[sel].double().mean(0), rtol=1e-5, atol=1e-9)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        g = torch.Generator().manual_seed(10 + rank)  # different data on every rank
        stats = ClassStatistics(K, A)
        for _ in range(2):
            stats.update(*make_batch(g, 40 + 30 * rank))
        torch.save(stats.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available() and "fork" in mp.get_all_start_methods()),
    reason="needs torch.distributed with gloo and the fork start method",
)
def test_distributed_ranks_hold_identical_global_statistics(tmp_path):
    # fork: the children reuse the imported torch (spawn would re-import it, ~15 s on 2 cores)
    mp.start_processes(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, start_method="fork")
    g0, g1 = torch.Generator().manual_seed(10), torch.Generator().manual_seed(11)
    batches = [make_batch(g0, 40), make_batch(g0, 40), make_batch(g1, 70), make_batch(g1, 70)]
    count, mean, var = reference_stats(torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches]))
    for rank in range(2):
        state = torch.load(tmp_path / f"rank{rank}.pt")
        torch.testing.assert_close(state["count"], count)
        torch.testing.assert_close(state["mean"], mean, rtol=1e-5, atol=0)
        torch.testing.assert_close(state["var"], var, rtol=1e-5, atol=1e-12)


# ---------------------------------------------------------------- contrastive bound


def random_problem(n=64, k=6, a=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.rand(n, a, generator=g, dtype=torch.float64) * 3  # post-ReLU-like, non-negative
    labels = torch.randint(0, k, (n,), generator=g)
    mean = torch.rand(k, a, generator=g, dtype=torch.float64) * 3
    var = torch.rand(k, a, generator=g, dtype=torch.float64)
    return feats, labels, mean, var


@pytest.mark.parametrize("normalize", [True, False])
def test_ce_plus_variance_term_equals_the_bound(normalize):
    feats, labels, mean, var = random_problem()
    tau, lam = 2.0, 0.7  # a small tau makes every term matter
    got = contrastive_bound(feats, labels, mean, var, tau=tau, lambda_cov=lam, normalize=normalize)
    f, mu, s = feats, mean, var
    if normalize:
        f, mu, s = F.normalize(f, dim=1), F.normalize(mu, dim=1), F.normalize(s, dim=1)
    # L_bar = -z.mu_y / tau + log sum_c exp(z.mu_c / tau + lam / (2 tau^2) z^T Sigma_c z), Sigma_c = diag(s_c)
    quad = torch.einsum("na,cab,nb->nc", f, torch.diag_embed(s), f)
    bound_logits = f @ mu.T / tau + lam / (2 * tau**2) * quad
    positive = (f * mu[labels]).sum(1) / tau
    expected = (-positive + torch.logsumexp(bound_logits, dim=1)).mean()
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    # and the same value split as CE(bound logits) + positive variance term
    ce = F.cross_entropy(bound_logits, labels)
    reg = (lam / (2 * tau**2) * quad.gather(1, labels[:, None])).mean()
    torch.testing.assert_close(got, ce + reg, rtol=1e-10, atol=1e-12)


def test_shipped_setting_stays_near_log_k():
    g = torch.Generator().manual_seed(4)
    k, a, n = 19, 2048, 512
    feats = torch.relu(torch.randn(n, a, generator=g))
    labels = torch.randint(0, k, (n,), generator=g)
    mean = torch.relu(torch.randn(k, a, generator=g))
    var = torch.rand(k, a, generator=g)
    loss = contrastive_bound(feats, labels, mean, var)  # tau = 100, lambda = 1, normalize = True
    assert abs(loss.item() - math.log(k)) < 0.02
    # the textbook version on raw vectors is scale-dependent: here it is clearly further from log K
    raw = contrastive_bound(feats, labels, mean, var, normalize=False)
    assert abs(raw.item() - loss.item()) > 0.02
    assert abs(contrastive_bound(3 * feats, labels, mean, var, normalize=False).item() - loss.item()) > 0.1


def test_ignored_pixels_do_not_contribute():
    feats, labels, mean, var = random_problem()
    masked = labels.clone()
    masked[::3] = 255
    keep = masked != 255
    garbage = feats.clone()
    garbage[~keep] = 1e6  # values of ignored pixels must not matter
    a = contrastive_bound(garbage, masked, mean, var, tau=1.0)
    b = contrastive_bound(feats[keep], labels[keep], mean, var, tau=1.0)
    torch.testing.assert_close(a, b)


def test_no_valid_pixel_gives_zero_with_a_graph():
    feats = torch.randn(4, 3, requires_grad=True)
    loss = contrastive_bound(feats, torch.full((4,), 255), torch.randn(2, 3), torch.rand(2, 3))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(feats.grad, torch.zeros_like(feats))


def test_gradient_reaches_features_but_not_statistics():
    feats, labels, mean, var = random_problem()
    feats = feats.float().requires_grad_(True)
    mean = mean.float().requires_grad_(True)
    var = var.float().requires_grad_(True)
    loss = contrastive_bound(feats, labels, mean, var, tau=1.0)
    loss.backward()
    assert feats.grad is not None and feats.grad.abs().sum() > 0
    assert mean.grad is None and var.grad is None
    assert loss.dtype == torch.float32


def test_works_with_class_statistics_buffers():
    g = torch.Generator().manual_seed(5)
    feats, labels = make_batch(g, 100, ignore_frac=0.1)
    stats = ClassStatistics(K, A)
    stats.update(feats, labels)
    loss = contrastive_bound(feats.requires_grad_(True), labels, stats.mean, stats.var)
    assert torch.isfinite(loss) and loss.dtype == torch.float32
