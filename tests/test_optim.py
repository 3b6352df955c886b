"""Learning rate schedules, D-Adaptation Adam, EMA and FSDP helpers."""
import math

import pytest
import torch

from audiocraft.optim import (
    CosineLRScheduler,
    DAdaptAdam,
    InverseSquareRootLRScheduler,
    LinearWarmupLRScheduler,
    ModuleDictEMA,
    PolynomialDecayLRScheduler,
)
from audiocraft.optim import fsdp


def _lrs(make_scheduler, n_steps: int, lr: float = 1.0):
    """Learning rate in use before each of `n_steps` optimizer steps."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = make_scheduler(opt)
    values = []
    for _ in range(n_steps):
        values.append(opt.param_groups[0]['lr'])
        opt.step()
        sched.step()
    return values


def test_cosine_schedule():
    lrs = _lrs(lambda o: CosineLRScheduler(o, total_steps=110, warmup_steps=10), 120, lr=2.0)
    assert lrs[0] == 0. and lrs[5] == pytest.approx(1.0) and lrs[10] == pytest.approx(2.0)
    assert lrs[60] == pytest.approx(1.0)  # half way through the cosine
    assert lrs[110] == pytest.approx(0., abs=1e-12) and lrs[115] == 0.
    lrs = _lrs(lambda o: CosineLRScheduler(o, total_steps=110, warmup_steps=10, lr_min_ratio=0.1), 120)
    assert lrs[60] == pytest.approx(0.55) and lrs[119] == pytest.approx(0.1)
    lrs = _lrs(lambda o: CosineLRScheduler(o, total_steps=110, warmup_steps=10, cycle_length=2.), 111)
    assert lrs[110] == pytest.approx(0.5)  # only a quarter period covered
    with pytest.raises(ValueError):
        CosineLRScheduler(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.), 10, -1)
    with pytest.raises(ValueError, match="warmup"):
        CosineLRScheduler(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.), 10, None)


def test_linear_warmup_schedule():
    lrs = _lrs(lambda o: LinearWarmupLRScheduler(o, warmup_steps=4, warmup_init_lr=0.2), 7)
    assert lrs == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0])


def test_inverse_sqrt_schedule():
    # Counts optimizer steps from 1 (torch's `_step_count`), so no division by zero at the start.
    lrs = _lrs(lambda o: InverseSquareRootLRScheduler(o, warmup_steps=4), 16)
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[15] == pytest.approx(math.sqrt(4 / 16))
    assert lrs[8] == pytest.approx(math.sqrt(4 / 9))


def test_polynomial_decay_schedule():
    lrs = _lrs(lambda o: PolynomialDecayLRScheduler(o, warmup_steps=10, total_steps=110, end_lr=0.1, power=2), 115)
    assert lrs[5] == pytest.approx(0.5) and lrs[10] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.9 * 0.25 + 0.1)
    assert lrs[110] == pytest.approx(0.1) and lrs[114] == pytest.approx(0.1)
    lrs = _lrs(lambda o: PolynomialDecayLRScheduler(o, warmup_steps=10, total_steps=110,
                                                    zero_lr_warmup_steps=5), 20)
    assert lrs[3] == 0. and lrs[5] == 0. and lrs[10] == pytest.approx(0.5) and lrs[15] == pytest.approx(1.0)


def test_dadapt_adam_first_step_and_adaptation():
    grad = torch.tensor([1., -2., 0.5])
    p = torch.nn.Parameter(torch.zeros(3))
    opt = DAdaptAdam([p], lr=1.0, betas=(0.9, 0.999), eps=1e-8, d0=1e-3)
    p.grad = grad.clone()
    opt.step()
    # First step: d cannot grow yet; update is -d0 * lr * (1 - beta1) * g / (sqrt(1 - beta2) |g| + eps).
    assert opt.param_groups[0]['d'] == pytest.approx(1e-3)
    expected = -1e-3 * 0.1 * grad / (math.sqrt(0.001) * grad.abs() + 1e-8)
    torch.testing.assert_close(p.detach(), expected)

    torch.manual_seed(0)
    q = torch.nn.Parameter(3 * torch.randn(10))
    opt = DAdaptAdam([q], lr=1.0, d0=1e-6)
    start = (q ** 2).sum().item()
    for _ in range(200):
        opt.zero_grad()
        (q ** 2).sum().backward()
        opt.step()
    assert opt.param_groups[0]['d'] > 1.  # the step size estimate grew by orders of magnitude
    assert (q ** 2).sum().item() < 1e-3 * start


def test_dadapt_adam_rejects_mixed_lrs():
    a, b = torch.nn.Parameter(torch.ones(1)), torch.nn.Parameter(torch.ones(1))
    opt = DAdaptAdam([{'params': [a]}, {'params': [b], 'lr': 0.5}], lr=1.0)
    a.grad, b.grad = torch.ones(1), torch.ones(1)
    with pytest.raises(RuntimeError, match="different lr"):
        opt.step()
    with pytest.raises(ValueError):
        DAdaptAdam([a], lr=0.)


def test_module_dict_ema():
    lin = torch.nn.Linear(2, 1)
    lin.register_buffer('persistent', torch.zeros(1))
    lin.register_buffer('ignored', torch.zeros(1), persistent=False)
    lin.register_buffer('steps', torch.zeros(1, dtype=torch.long))
    with torch.no_grad():
        lin.weight.fill_(1.)
    ema = ModuleDictEMA(torch.nn.ModuleDict({'model': lin}), decay=0.5, device='cpu')
    assert set(ema.state['model']) == {'weight', 'bias', 'persistent'}
    ema.step()  # unbiased: first step copies the values
    torch.testing.assert_close(ema.state['model']['weight'], torch.ones(1, 2))
    with torch.no_grad():
        lin.weight.fill_(4.)
    ema.step()  # count = 1.5, weight 2/3 on the new value
    torch.testing.assert_close(ema.state['model']['weight'], torch.full((1, 2), 3.))

    other = ModuleDictEMA(torch.nn.ModuleDict({'model': torch.nn.Linear(2, 1)}), decay=0.5)
    other.load_state_dict({'state': {'model': {'weight': ema.state['model']['weight'],
                                               'bias': ema.state['model']['bias']}}, 'count': ema.count})
    assert other.count == pytest.approx(1.5)
    torch.testing.assert_close(other.state['model']['weight'], torch.full((1, 2), 3.))

    biased = ModuleDictEMA(torch.nn.ModuleDict({'model': lin}), decay=0.9, unbias=False)
    with torch.no_grad():
        lin.weight.fill_(14.)
    biased.step()  # 0.9 * 4 + 0.1 * 14
    torch.testing.assert_close(biased.state['model']['weight'], torch.full((1, 2), 5.))


def test_fsdp_helpers_single_process():
    assert fsdp.is_fsdp_used() is False
    with pytest.raises(RuntimeError, match="process group"):
        fsdp.wrap_with_fsdp(None, torch.nn.Linear(1, 1))
    model = torch.nn.Linear(1, 1)
    with fsdp.switch_to_full_state_dict([model]):  # plain modules pass through untouched
        assert set(model.state_dict()) == {'weight', 'bias'}
