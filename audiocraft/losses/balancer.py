"""Gradient balancer: combine several losses by the norm of their gradients w.r.t. one tensor."""
import typing as tp

import flashy
import torch
from torch import autograd


class Balancer:
    """Balance the gradients that several losses send into a single tensor (typically the model output).

    With `balance_grads=True`, each loss `i` contributes `g_i * w_i / sum(w) * total_norm / avg_norm_i`,
    where `g_i` is the gradient of loss `i` w.r.t. `input` and `avg_norm_i` an exponential moving average
    of its norm. The effective weight of each loss then no longer depends on its natural scale, only on
    its `weights` entry. With `balance_grads=False`, the losses are simply weighted by `weights`.

    Args:
        weights: weight of each loss, keyed by the same names as in `backward`.
        balance_grads: rescale gradients as described above, otherwise plain weighting.
        total_norm: reference norm of the combined gradient when balancing.
        ema_decay: decay of the running average of gradient norms (1 or None: plain average).
        per_batch_item: compute norms per batch item then average them, rather than over the batch.
        epsilon: numerical stability term in the rescaling.
        monitor: record in `metrics` each loss's share of the total gradient norm.
    """

    def __init__(self, weights: tp.Dict[str, float], balance_grads: bool = True, total_norm: float = 1.,
                 ema_decay: float = 0.999, per_batch_item: bool = True, epsilon: float = 1e-12,
                 monitor: bool = False):
        self.weights = weights
        self.per_batch_item = per_batch_item
        self.total_norm = total_norm or 1.
        self.averager = flashy.averager(ema_decay or 1.)
        self.epsilon = epsilon
        self.monitor = monitor
        self.balance_grads = balance_grads
        self._metrics: tp.Dict[str, tp.Any] = {}

    @property
    def metrics(self) -> tp.Dict[str, tp.Any]:
        """Ratios of each loss's gradient norm to the total (only filled when `monitor=True`)."""
        return self._metrics

    def backward(self, losses: tp.Dict[str, torch.Tensor], input: torch.Tensor) -> torch.Tensor:
        """Backpropagate the balanced combination of `losses` through `input`.

        Each loss is differentiated w.r.t. `input` only; the rescaled sum of those gradients is then
        pushed through the graph that produced `input` with a single `input.backward`.

        Returns:
            The effective loss, i.e. the sum of each (detached) loss times its effective scale.
        """
        missing = [name for name in losses if name not in self.weights]
        if missing:
            raise ValueError(f"Balancer has no weight for losses {missing}; known: {list(self.weights)}.")
        if not losses:
            raise ValueError("Balancer.backward needs at least one loss.")
        norms = {}
        grads = {}
        for name, loss in losses.items():
            grad, = autograd.grad(loss, [input], retain_graph=True)
            if self.per_batch_item:
                dims = tuple(range(1, grad.dim()))
                norm = grad.norm(dim=dims, p=2).mean()
            else:
                norm = grad.norm(p=2)
            norms[name] = norm
            grads[name] = grad

        count = 1
        if self.per_batch_item:
            count = len(grad)
        # Average across workers so every rank applies the same scales.
        avg_norms = flashy.distrib.average_metrics(self.averager(norms), count)
        total = sum(avg_norms.values())

        self._metrics = {}
        if self.monitor:
            for name, avg_norm in avg_norms.items():
                self._metrics[f'ratio_{name}'] = avg_norm / total

        total_weights = sum(self.weights[name] for name in avg_norms)
        if total_weights <= 0:
            raise ValueError("Balancer weights of the given losses must sum to a positive value.")
        desired_ratios = {name: w / total_weights for name, w in self.weights.items()}

        out_grad = torch.zeros_like(input)
        effective_loss = torch.tensor(0., device=input.device, dtype=input.dtype)
        for name, avg_norm in avg_norms.items():
            if self.balance_grads:
                scale = desired_ratios[name] * self.total_norm / (self.epsilon + avg_norm)
            else:
                scale = self.weights[name]
            out_grad.add_(grads[name], alpha=scale)
            effective_loss += scale * losses[name].detach()
        input.backward(out_grad)
        return effective_loss
