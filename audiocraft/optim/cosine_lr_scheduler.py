"""Cosine learning rate schedule with linear warmup."""
import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import _LRScheduler


class CosineLRScheduler(_LRScheduler):
    """Linear warmup from 0 over `warmup_steps`, then cosine decay to `lr_min_ratio * lr` at `total_steps`.

    Args:
        optimizer: wrapped optimizer.
        total_steps: total number of steps.
        warmup_steps: number of warmup steps.
        lr_min_ratio: minimum learning rate, as a fraction of the base one.
        cycle_length: fraction of a half cosine period covered by the decay (1 = full decay).
    """

    def __init__(self, optimizer: Optimizer, total_steps: int, warmup_steps: int,
                 lr_min_ratio: float = 0.0, cycle_length: float = 1.0):
        if warmup_steps is None or total_steps is None or warmup_steps < 0 or total_steps < 0:
            raise ValueError("CosineLRScheduler needs non-negative total_steps and warmup_steps "
                             "(set schedule.cosine.warmup).")
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.lr_min_ratio = lr_min_ratio
        self.cycle_length = cycle_length
        super().__init__(optimizer)

    def _get_sched_lr(self, lr: float, step: int) -> float:
        if step < self.warmup_steps:
            lr_ratio = step / self.warmup_steps
        elif step <= self.total_steps:
            s = (step - self.warmup_steps) / (self.total_steps - self.warmup_steps)
            lr_ratio = self.lr_min_ratio + 0.5 * (1 - self.lr_min_ratio) * \
                (1. + math.cos(math.pi * s / self.cycle_length))
        else:
            lr_ratio = self.lr_min_ratio
        return lr_ratio * lr

    def get_lr(self):  # type: ignore[override]
        return [self._get_sched_lr(lr, self.last_epoch) for lr in self.base_lrs]
