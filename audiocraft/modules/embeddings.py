"""Fixed positional embeddings shared by the transformer and the condition fuser."""
import torch


def create_sin_embedding(positions: torch.Tensor, dim: int, max_period: float = 10000,
                         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Sinusoidal embedding of `positions` ([B, T, 1]) -> [B, T, dim], cosines first then sines.

    The frequency of channel i is max_period ** (-i / (dim / 2 - 1)), matching AudioCraft's
    layout so pretrained transformers see the same positional signal.
    """
    if dim % 2 != 0:
        raise ValueError(f"Sinusoidal embedding needs an even dimension, got {dim}.")
    half_dim = dim // 2
    positions = positions.to(dtype)
    adim = torch.arange(half_dim, device=positions.device, dtype=dtype).view(1, 1, -1)
    # A 0-dim tensor keeps the power on-device (no host sync), as AudioCraft does.
    max_period_tensor = torch.full([], max_period, device=positions.device, dtype=dtype)
    phase = positions / (max_period_tensor ** (adim / (half_dim - 1)))
    return torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1)
