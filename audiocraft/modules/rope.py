"""Rotary positional embeddings (RoPE), with optional xPos decay, as used by AudioCraft transformers."""
import typing as tp

import torch
from torch import nn

# A first position: a Python int, or a 1-element long tensor on the model's device (static decoding).
Position = tp.Union[int, torch.Tensor]


def positions_from(start: torch.Tensor, length: int) -> torch.Tensor:
    """Positions [start, start + length) as a long tensor, `start` a 1-element device tensor (no host sync)."""
    return start.view(-1)[:1] + torch.arange(length, device=start.device)


def _span(table: tp.Optional[torch.Tensor], start: torch.Tensor, length: int) -> torch.Tensor:
    """Rows [start, start + length) of a precomputed `table`, `start` a device tensor (no host sync)."""
    if table is None:
        raise RuntimeError("Positional tables must be reserved (RotaryEmbedding.reserve) before "
                           "positions are given as a tensor.")
    return table.index_select(0, positions_from(start, length))


class XPos(nn.Module):
    """Length-extrapolatable decay applied on top of rotary embeddings (xPos).

    Args:
        dim: Per-head embedding dimension (even).
        smoothing: Smoothing factor of the decay rates.
        base_scale: Base decay scale, in number of steps.
        device: Device for the decay rates.
        dtype: float32 or float64, precision of the complex computation.
    """

    def __init__(self, dim: int, smoothing: float = 0.4, base_scale: int = 512,
                 device=None, dtype: torch.dtype = torch.float32):
        super().__init__()
        assert dim % 2 == 0
        assert dtype in [torch.float64, torch.float32]
        self.dtype = dtype
        self.base_scale = base_scale
        half_dim = dim // 2
        adim = torch.arange(half_dim, device=device, dtype=dtype)
        decay_rates = (adim / half_dim + smoothing) / (1.0 + smoothing)
        self.register_buffer("decay_rates", decay_rates)
        # Recomputed lazily when a longer span is needed; derived data only, never in the state dict.
        self.decay: tp.Optional[torch.Tensor] = None

    def get_decay(self, start: int, end: int) -> torch.Tensor:
        """Complex decay factors for positions [start, end)."""
        if self.decay is None or end > self.decay.shape[0] or self.decay.device != self.decay_rates.device:
            idx = torch.arange(end, device=self.decay_rates.device, dtype=self.dtype)
            power = idx / self.base_scale
            scale = self.decay_rates ** power.unsqueeze(-1)
            self.decay = torch.polar(scale, torch.zeros_like(scale))
        return self.decay[start:end]


class RotaryEmbedding(nn.Module):
    """Rotary positional embedding (RoPE) applied to queries and keys.

    Args:
        dim: Per-head embedding dimension (even).
        max_period: Maximum period of the rotation frequencies.
        xpos: Whether to apply the xPos decay.
        scale: Scale of the positional embedding; 0 disables it.
        device: Device for the frequencies.
        dtype: float32 or float64, precision of the complex computation.
    """

    def __init__(self, dim: int, max_period: float = 10000.0, xpos: bool = False,
                 scale: float = 1.0, device=None, dtype: torch.dtype = torch.float32):
        super().__init__()
        assert dim % 2 == 0
        assert dtype in [torch.float64, torch.float32]
        self.scale = scale
        self.dtype = dtype
        adim = torch.arange(0, dim, 2, device=device, dtype=dtype)[: (dim // 2)]
        frequencies = 1.0 / (max_period ** (adim / dim))
        self.register_buffer("frequencies", frequencies)
        self.rotation: tp.Optional[torch.Tensor] = None
        self.xpos = XPos(dim, device=device, dtype=dtype) if xpos else None

    def reserve(self, length: int) -> None:
        """Precompute the tables for positions [0, length), so that positions given as a device
        tensor (static decoding) are looked up without a host sync or a table update."""
        self.get_rotation(0, length)
        if self.xpos is not None:
            self.xpos.get_decay(0, length)

    def get_rotation(self, start: int, end: int) -> torch.Tensor:
        """Complex rotations for positions [start, end)."""
        if (self.rotation is None or end > self.rotation.shape[0]
                or self.rotation.device != self.frequencies.device):
            idx = torch.arange(end, device=self.frequencies.device, dtype=self.dtype)
            angles = torch.outer(idx, self.frequencies)
            self.rotation = torch.polar(torch.ones_like(angles), angles)
        return self.rotation[start:end]

    def rotate(self, x: torch.Tensor, start: Position = 0, time_dim: int = 1,
               invert_decay: bool = False) -> torch.Tensor:
        """Apply the rotation to `x` whose time axis is `time_dim`, first position being `start`."""
        T = x.shape[time_dim]
        target_shape = [1] * x.dim()
        target_shape[time_dim] = T
        target_shape[-1] = x.shape[-1] // 2
        decay: tp.Union[float, torch.Tensor] = 1.0
        if isinstance(start, torch.Tensor):
            rotation = _span(self.rotation, start, T).view(target_shape)
            if self.xpos is not None:
                decay = _span(self.xpos.decay, start, T).view(target_shape)
        else:
            rotation = self.get_rotation(start, start + T).view(target_shape)
            if self.xpos is not None:
                decay = self.xpos.get_decay(start, start + T).view(target_shape)
        if invert_decay:
            decay = decay ** -1
        x_complex = torch.view_as_complex(x.to(self.dtype).reshape(*x.shape[:-1], -1, 2))
        scaled_rotation = (rotation * decay) * self.scale + (1.0 - self.scale)
        x_out = torch.view_as_real(x_complex * scaled_rotation).view_as(x)
        return x_out.type_as(x)

    def rotate_qk(self, query: torch.Tensor, key: torch.Tensor, start: Position = 0,
                  time_dim: int = 1) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        """Rotate queries and keys; when there are more keys than queries, queries are the last ones."""
        assert time_dim in [1, 2]
        streaming_offset = key.shape[time_dim] - query.shape[time_dim]
        query_out = self.rotate(query, start + streaming_offset, time_dim)
        key_out = self.rotate(key, start, time_dim, invert_decay=True)
        return query_out, key_out
