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
        _, length, _ = input.shape
        first_step = 'offsets' not in self._streaming_state
        if first_step:
            offsets = torch.zeros(input.shape[0], dtype=torch.long, device=input.device)
        else:
            offsets = self._streaming_state['offsets']
        unknown = set(conditions.keys()) - set(self.cond2fuse.keys())
        if unknown:
            raise ValueError(f"Conditions {sorted(unknown)} have no fusing method; "
                             f"known: {sorted(self.cond2fuse.keys())}.")
        cross_attention_output = None
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
            elif op == 'cross':
                if cross_attention_output is not None:
                    cross_attention_output = torch.cat([cross_attention_output, cond], dim=1)
                else:
                    cross_attention_output = cond
            # 'ignore': nothing to do.
        if self.cross_attention_pos_emb and cross_attention_output is not None:
            positions = torch.arange(cross_attention_output.shape[1],
                                     device=cross_attention_output.device).view(1, -1, 1)
            pos_emb = create_sin_embedding(positions, cross_attention_output.shape[-1])
            cross_attention_output = cross_attention_output + self.cross_attention_pos_emb_scale * pos_emb
        if self._is_streaming:
            self._streaming_state['offsets'] = offsets + length
        return input, cross_attention_output
