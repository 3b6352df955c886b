"""Inverse square root learning rate schedule with linear warmup."""
from .linear_warmup_lr_scheduler import LinearWarmupLRScheduler


class InverseSquareRootLRScheduler(LinearWarmupLRScheduler):
    """Linear warmup from `warmup_init_lr` over `warmup_steps`, then `lr * sqrt(warmup_steps / step)`.

    Args:
        optimizer: wrapped optimizer.
        warmup_steps: number of warmup steps.
        warmup_init_lr: learning rate at step 0.
    """

    def _get_sched_lr(self, lr: float, step: int) -> float:
        if step < self.warmup_steps:
            return super()._get_sched_lr(lr, step)
        decay_factor = lr * self.warmup_steps ** 0.5
        return decay_factor * step ** -0.5

    def get_lr(self):  # type: ignore[override]
        # Counted from `_step_count` (one ahead of `last_epoch`), as AudioCraft does.
        return [self._get_sched_lr(base_lr, self._step_count) for base_lr in self.base_lrs]
