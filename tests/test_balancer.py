"""Balancer: gradient balancing semantics of AudioCraft."""
import pytest
import torch

from audiocraft.losses import Balancer


def _setup():
    torch.manual_seed(0)
    x = torch.randn(3, 2, 5, requires_grad=True)
    a = torch.randn(3, 2, 5)
    b = torch.randn(3, 2, 5)
    # Linear losses: gradients are a and 100 * b whatever x is.
    losses = {'small': (x * a).sum(), 'big': 100 * (x * b).sum()}
    return x, a, 100 * b, losses


def _per_item_norm(g: torch.Tensor) -> torch.Tensor:
    return g.flatten(1).norm(dim=1).mean()


def test_balanced_gradients_follow_weights_not_scales():
    x, ga, gb, losses = _setup()
    balancer = Balancer({'small': 1., 'big': 3.}, total_norm=2., ema_decay=0.999, per_batch_item=True)
    effective = balancer.backward(losses, x)
    scale_a = 0.25 * 2. / _per_item_norm(ga)
    scale_b = 0.75 * 2. / _per_item_norm(gb)
    torch.testing.assert_close(x.grad, scale_a * ga + scale_b * gb, rtol=1e-5, atol=1e-6)
    expected = scale_a * losses['small'].detach() + scale_b * losses['big'].detach()
    assert effective.item() == pytest.approx(expected.item(), rel=1e-5)
    # Each loss now contributes in proportion to its weight (1:3), whatever its scale.
    ratio = _per_item_norm(scale_b * gb) / _per_item_norm(scale_a * ga)
    assert ratio.item() == pytest.approx(3., rel=1e-5)


def test_whole_batch_norm_and_ema_of_norms():
    x, ga, gb, _ = _setup()
    balancer = Balancer({'small': 1., 'big': 1.}, ema_decay=0.5, per_batch_item=False)
    balancer.backward({'small': (x * ga).sum(), 'big': (x * gb).sum()}, x)
    x.grad = None
    # Second call: gradients doubled, EMA (bias corrected) of norms is (0.5 * n + 2n) / 1.5.
    balancer.backward({'small': (x * 2 * ga).sum(), 'big': (x * 2 * gb).sum()}, x)
    avg_a = (0.5 * ga.norm() + 2 * ga.norm()) / 1.5
    avg_b = (0.5 * gb.norm() + 2 * gb.norm()) / 1.5
    torch.testing.assert_close(x.grad, 0.5 * 2 * ga / avg_a + 0.5 * 2 * gb / avg_b, rtol=1e-5, atol=1e-6)


def test_unbalanced_is_plain_weighting_and_reaches_parameters():
    w = torch.nn.Parameter(torch.tensor(2.))
    base = torch.arange(6.).view(2, 1, 3)
    y = w * base
    balancer = Balancer({'l1': 0.5, 'l2': 2.}, balance_grads=False)
    l1 = y.abs().mean()
    l2 = y.pow(2).mean()
    effective = balancer.backward({'l1': l1, 'l2': l2}, y)
    # d/dw of 0.5 * mean(|w b|) + 2 * mean((w b)^2)
    expected_grad = 0.5 * base.mean() + 2 * 2 * 2. * base.pow(2).mean()
    assert w.grad.item() == pytest.approx(expected_grad.item(), rel=1e-6)
    assert effective.item() == pytest.approx((0.5 * l1 + 2 * l2).item(), rel=1e-6)


def test_monitor_ratios_and_errors():
    x, ga, gb, losses = _setup()
    balancer = Balancer({'small': 1., 'big': 1.}, monitor=True)
    balancer.backward(losses, x)
    ratios = balancer.metrics
    assert set(ratios) == {'ratio_small', 'ratio_big'}
    assert ratios['ratio_small'] + ratios['ratio_big'] == pytest.approx(1.)
    expected = (_per_item_norm(gb) / _per_item_norm(ga)).item()
    assert ratios['ratio_big'] / ratios['ratio_small'] == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="no weight"):
        Balancer({'small': 1.}).backward({'other': (x * ga).sum()}, x)
