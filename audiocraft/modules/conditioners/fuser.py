"""ConditionFuser: merges condition embeddings into the transformer input or its cross-attention memory."""
import typing as tp

import torch
import torch.nn.functional as F

from ..embeddings import create_sin_embedding
from ..streaming import StreamingModule
from .base import ConditionType


class ConditionFuser(StreamingModule):
    """Fuse conditions by name with one method each.

    Methods: 'sum' (added to the input, lengths must match), 'input_interpolate' (resized
    to the input length, then added), 'prepend' (concatenated before the input, on the
    first streaming step only), 'cross' (concatenated into the cross-attention memory),
    'ignore'. Conditions are visited in the order of the `conditions` dict, so with
    several prepended conditions the last visited ends up first.

    Args:
        fuse2cond: {method: [condition names]}.
        cross_attention_pos_emb: add sinusoidal positions to the cross-attention memory.
        cross_attention_pos_emb_scale: scale of those positions.
    """
    FUSING_METHODS = ["sum", "prepend", "cross", "ignore", "input_interpolate"]

    def __init__(self, fuse2cond: tp.Dict[str, tp.List[str]], cross_attention_pos_emb: bool = False,
                 cross_attention_pos_emb_scale: float = 1.0):
        super().__init__()
        unknown = [k for k in fuse2cond.keys() if k not in self.FUSING_METHODS]
        if unknown:
            raise ValueError(f"Unknown fusing methods {unknown}; expected some of {self.FUSING_METHODS}.")
        self.cross_attention_pos_emb = cross_attention_pos_emb
        self.cross_attention_pos_emb_scale = cross_attention_pos_emb_scale
        self.fuse2cond: tp.Dict[str, tp.List[str]] = {k: list(v or []) for k, v in fuse2cond.items()}
        self.cond2fuse: tp.Dict[str, str] = {}
        for fuse_method, conditions in self.fuse2cond.items():
            for condition in conditions:
                if condition in self.cond2fuse:
                    raise ValueError(f"Condition '{condition}' is fused twice "
                                     f"({self.cond2fuse[condition]} and {fuse_method}).")
                self.cond2fuse[condition] = fuse_method

    def forward(self, input: torch.Tensor,
                conditions: tp.Dict[str, ConditionType]) -> tp.Tuple[torch.Tensor, tp.Optional[torch.Tensor]]:
        """Fuse `conditions` into `input` [B, T, D]; return (input, cross-attention memory or None)."""
        # While streaming, prepended conditions enter with the first chunk only.
        first_step = 'prepended' not in self._streaming_state
        unknown = set(conditions.keys()) - set(self.cond2fuse.keys())
        if unknown:
            raise ValueError(f"Conditions {sorted(unknown)} have no fusing method; "
                             f"known: {sorted(self.cond2fuse.keys())}.")
        for cond_type, (cond, _) in conditions.items():
            op = self.cond2fuse[cond_type]
            if op == 'sum':
                input = input + cond
            elif op == 'input_interpolate':
                resized = F.interpolate(cond.transpose(1, 2), size=input.shape[1])
                input = input + resized.transpose(1, 2)
            elif op == 'prepend':
                if first_step:
                    input = torch.cat([cond, input], dim=1)
            # 'cross' (below) and 'ignore': nothing to add to the input.
        cross_attention_output = self.cross_attention_source(conditions)
        if self._is_streaming and first_step:
            self._streaming_state['prepended'] = torch.ones((), dtype=torch.bool)
        return input, cross_attention_output

    def cross_attention_source(self, conditions: tp.Dict[str, ConditionType]) -> tp.Optional[torch.Tensor]:
        """The cross-attention memory [B, S, D] of `conditions` (the 'cross' ones, concatenated in
        order, with the optional positional embedding), or None; no streaming state is touched."""
        sources = [cond for cond_type, (cond, _) in conditions.items() if self.cond2fuse.get(cond_type) == 'cross']
        if not sources:
            return None
        output = sources[0] if len(sources) == 1 else torch.cat(sources, dim=1)
        if self.cross_attention_pos_emb:
            positions = torch.arange(output.shape[1], device=output.device).view(1, -1, 1)
            pos_emb = create_sin_embedding(positions, output.shape[-1])
            output = output + self.cross_attention_pos_emb_scale * pos_emb
        return output
