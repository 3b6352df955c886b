"""Condition dropout: per-attribute dropout and classifier-free-guidance dropout.

Each module draws from its own `torch.Generator`, so the global RNG state never
changes which conditions are dropped (and dropping never disturbs other code's RNG).
"""
from collections import defaultdict
from copy import deepcopy
import typing as tp

import torch
from torch import nn

from .base import ConditioningAttributes, nullify_joint_embed, nullify_wav

CONDITION_TYPES = ('text', 'wav', 'joint_embed')


def dropout_condition(sample: ConditioningAttributes, condition_type: str, condition: str) -> ConditioningAttributes:
    """Null one attribute of `sample` in place: text becomes None, waveforms become null waveforms."""
    if condition_type not in CONDITION_TYPES:
        raise ValueError(f"dropout_condition: condition_type must be one of {CONDITION_TYPES}, "
                         f"got '{condition_type}'.")
    if condition not in getattr(sample, condition_type):
        raise ValueError(f"dropout_condition: unknown {condition_type} condition '{condition}'; "
                         f"available: {list(getattr(sample, condition_type).keys())}.")
    if condition_type == 'wav':
        sample.wav[condition] = nullify_wav(sample.wav[condition])
    elif condition_type == 'joint_embed':
        sample.joint_embed[condition] = nullify_joint_embed(sample.joint_embed[condition])
    else:
        sample.text[condition] = None
    return sample


class DropoutModule(nn.Module):
    """Base for condition dropout modules, owning a seeded generator."""

    def __init__(self, seed: int = 1234):
        super().__init__()
        self.rng = torch.Generator()
        self.rng.manual_seed(seed)


class AttributeDropout(DropoutModule):
    """Drop each named attribute, for the whole batch at once, with its own probability.

    Args:
        p: {condition_type: {attribute: probability}}; an 'args' entry (as found in
            AudioCraft configs) may carry `active_on_eval`.
        active_on_eval: also drop in eval mode.
        seed: seed of this module's generator.
    """

    def __init__(self, p: tp.Dict[str, tp.Any], active_on_eval: bool = False, seed: int = 1234):
        super().__init__(seed=seed)
        p = dict(p or {})
        args = dict(p.pop('args', None) or {})
        self.active_on_eval = bool(args.get('active_on_eval', active_on_eval))
        self.p: tp.Dict[str, tp.Dict[str, float]] = {}
        for condition_type, probs in p.items():
            if condition_type not in CONDITION_TYPES:
                raise ValueError(f"AttributeDropout: unknown condition type '{condition_type}'; "
                                 f"expected some of {CONDITION_TYPES}.")
            self.p[condition_type] = defaultdict(lambda: 0, dict(probs or {}))

    def forward(self, samples: tp.List[ConditioningAttributes]) -> tp.List[ConditioningAttributes]:
        """Return a copy of `samples` with some attributes nulled (unchanged in eval by default)."""
        if not self.training and not self.active_on_eval:
            return samples
        samples = deepcopy(samples)
        for condition_type, ps in self.p.items():
            for condition, p in ps.items():
                if torch.rand(1, generator=self.rng).item() < p:
                    for sample in samples:
                        dropout_condition(sample, condition_type, condition)
        return samples

    def __repr__(self) -> str:
        return f"AttributeDropout({dict(self.p)})"


class ClassifierFreeGuidanceDropout(DropoutModule):
    """With probability `p`, null every text and waveform attribute of the whole batch.

    In training mode only; `ClassifierFreeGuidanceDropout(p=1.0)(samples)` on a fresh
    module is how null conditions are made for classifier-free guidance at generation.
    """

    def __init__(self, p: float, seed: int = 1234):
        super().__init__(seed=seed)
        if not 0. <= float(p) <= 1.:
            raise ValueError(f"ClassifierFreeGuidanceDropout: p must be in [0, 1], got {p}.")
        self.p = p

    def forward(self, samples: tp.List[ConditioningAttributes]) -> tp.List[ConditioningAttributes]:
        """Return `samples`, or nulled copies of them when dropped."""
        if not self.training:
            return samples
        drop = torch.rand(1, generator=self.rng).item() < self.p
        if not drop:
            return samples
        samples = deepcopy(samples)
        for condition_type in ["wav", "text"]:
            for sample in samples:
                for condition in list(sample.attributes[condition_type]):
                    dropout_condition(sample, condition_type, condition)
        return samples

    def __repr__(self) -> str:
        return f"ClassifierFreeGuidanceDropout(p={self.p})"
