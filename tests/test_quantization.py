"""Quantizers: RVQ shapes, bandwidth, codebook selection, AudioCraft distance/tie rules, training paths."""
import pytest
import torch

from audiocraft.quantization import DummyQuantizer, QuantizedResult, ResidualVectorQuantizer
from audiocraft.quantization.core_vq import EuclideanCodebook, VectorQuantization, kmeans


def make_rvq(**kwargs):
    args = dict(dimension=8, n_q=4, bins=16, kmeans_init=False)
    args.update(kwargs)
    return ResidualVectorQuantizer(**args)


def test_rvq_shapes_bandwidth_and_codebooks():
    torch.manual_seed(0)
    rvq = make_rvq().eval()
    x = torch.randn(3, 8, 10)
    res = rvq(x, frame_rate=50)
    assert isinstance(res, QuantizedResult)
    assert res.x.shape == x.shape and res.codes.shape == (3, 4, 10)
    assert res.bandwidth.item() == pytest.approx(4 * 4 * 50 / 1000)  # n_q * log2(bins) * frame_rate
    assert res.penalty is not None and res.penalty.item() == 0
    codes = rvq.encode(x)
    assert torch.equal(codes, res.codes)
    assert torch.allclose(rvq.decode(codes), res.x, atol=1e-6)
    assert rvq.total_codebooks == rvq.num_codebooks == 4 and rvq.cardinality == 16
    rvq.set_num_codebooks(2)
    assert rvq.num_codebooks == 2 and rvq.total_codebooks == 4
    assert rvq.encode(x).shape == (3, 2, 10)
    assert torch.equal(rvq.encode(x), codes[:, :2])
    assert rvq(x, 50).bandwidth.item() == pytest.approx(2 * 4 * 50 / 1000)
    assert rvq.decode(codes[:, :2]).shape == x.shape
    for bad in [0, 5]:
        with pytest.raises(ValueError):
            rvq.set_num_codebooks(bad)
    with pytest.raises(ValueError, match="latent"):
        rvq.encode(torch.randn(3, 7, 10))
    with pytest.raises(ValueError, match="codebooks"):
        rvq.decode(torch.zeros(3, 5, 10, dtype=torch.long))


def test_residual_decoding_is_sum_of_layers():
    torch.manual_seed(1)
    rvq = make_rvq().eval()
    x = torch.randn(2, 8, 6)
    codes = rvq.encode(x)
    total = sum(rvq.vq.layers[k].decode(codes[:, k]) for k in range(4))
    assert torch.allclose(rvq.decode(codes), total)
    # Each extra codebook reduces the residual error on average.
    errs = [(rvq.vq.decode(codes.transpose(0, 1)[:k]) - x).pow(2).mean() for k in range(1, 5)]
    assert errs[-1] < errs[0]


def test_distance_formula_and_first_max_tie():
    cb = EuclideanCodebook(dim=2, codebook_size=3)
    cb.embed.copy_(torch.tensor([[1., 0.], [0., 1.], [1., 0.]]))  # codes 0 and 2 are identical
    x = torch.tensor([[0.9, 0.1], [0.1, 0.9], [1., 0.]])
    assert cb.encode(x).tolist() == [0, 1, 0]  # the first of tied codes wins
    # AudioCraft's expression: -(|x|^2 - 2 x.e + |e|^2), then max.
    e = cb.embed.t()
    dist = -(x.pow(2).sum(1, keepdim=True) - 2 * x @ e + e.pow(2).sum(0, keepdim=True))
    assert torch.equal(cb.quantize(x), dist.max(dim=-1).indices)


def test_kmeans_init_ema_and_dead_code_expiry():
    torch.manual_seed(2)
    vq = VectorQuantization(dim=4, codebook_size=8, kmeans_init=True, kmeans_iters=5, decay=0.5,
                            threshold_ema_dead_code=2)
    assert vq.inited.item() == 0 and vq.codebook.abs().sum() == 0
    x = torch.randn(2, 4, 50)
    vq.train()
    quantize, codes, loss = vq(x)
    assert vq.inited.item() == 1
    assert vq.codebook.abs().sum() > 0
    assert quantize.shape == x.shape and codes.shape == (2, 50) and loss.shape == (1,)
    assert loss.item() > 0  # commitment loss
    # EMA: cluster sizes track code usage with the configured decay.
    counts = torch.bincount(codes.flatten(), minlength=8).float()
    sizes = vq._codebook.cluster_size.clone()
    _, codes2, _ = vq(x)
    counts2 = torch.bincount(codes2.flatten(), minlength=8).float()
    assert torch.allclose(vq._codebook.cluster_size, sizes * 0.5 + counts2 * 0.5)
    del counts
    # Dead codes (EMA size under the threshold) are replaced by vectors of the batch.
    cb = vq._codebook
    cb.cluster_size.copy_(torch.tensor([5., 0., 5., 0., 5., 5., 5., 5.]))
    before = cb.embed.clone()
    batch = torch.randn(20, 4) + 100
    cb.expire_codes_(batch)
    assert torch.equal(cb.embed[0], before[0])
    for dead in [1, 3]:
        assert (cb.embed[dead] - batch).abs().sum(-1).min() == 0


def test_straight_through_gradient_and_orthogonal_reg():
    torch.manual_seed(3)
    rvq = make_rvq(orthogonal_reg_weight=1.0, orthogonal_reg_active_codes_only=True, orthogonal_reg_max_codes=4)
    rvq.train()
    x = torch.randn(2, 8, 12, requires_grad=True)
    res = rvq(x, 50)
    (res.x.sum() + res.penalty).backward()
    assert x.grad is not None
    # Straight-through: d(sum of output)/dx is 1 everywhere, plus the commitment term.
    assert res.penalty.item() > 0
    assert x.grad.abs().min() > 0


def test_q_dropout_uses_fewer_codebooks_in_training():
    torch.manual_seed(4)
    rvq = make_rvq(n_q=6, q_dropout=True).train()
    x = torch.randn(2, 8, 5)
    seen = {rvq(x, 50).codes.shape[1] for _ in range(30)}
    assert len(seen) > 1 and max(seen) <= 6 and min(seen) >= 1
    rvq.eval()
    assert rvq(x, 50).codes.shape[1] == 6


def test_kmeans_function():
    torch.manual_seed(5)
    centers = torch.tensor([[0., 0.], [10., 10.]])
    samples = torch.cat([centers[0] + torch.randn(50, 2) * .1, centers[1] + torch.randn(50, 2) * .1])
    means, bins = kmeans(samples, 2, num_iters=10)
    assert sorted(bins.tolist()) == [50, 50]
    assert torch.allclose(means.sort(dim=0).values, centers, atol=0.1)


def test_dummy_quantizer():
    q = DummyQuantizer()
    x = torch.randn(2, 4, 5)
    res = q(x, frame_rate=10)
    assert torch.equal(res.x, x) and res.codes.shape == (2, 1, 4, 5)
    assert torch.equal(q.decode(q.encode(x)), x)
    assert q.total_codebooks == q.num_codebooks == 1
    with pytest.raises(AttributeError):
        q.set_num_codebooks(2)


def test_buffers_and_meta_build():
    rvq = make_rvq(kmeans_init=True)
    keys = rvq.state_dict()
    assert set(keys) == {f'vq.layers.{i}._codebook.{b}' for i in range(4)
                         for b in ['inited', 'cluster_size', 'embed', 'embed_avg']}
    assert keys['vq.layers.0._codebook.inited'].dtype == torch.float32
    with torch.device('meta'):
        meta = make_rvq(kmeans_init=True)
    assert all(b.is_meta for b in meta.buffers())
