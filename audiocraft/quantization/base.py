"""Quantizer interface shared by EnCodec-style compression models."""
from dataclasses import dataclass, field
import typing as tp

import torch
from torch import nn


@dataclass
class QuantizedResult:
    """Output of a quantizer forward: quantized latent, codes [B, K, T], bandwidth (kb/s), penalty, metrics."""
    x: torch.Tensor
    codes: torch.Tensor
    bandwidth: torch.Tensor  # bandwidth in kb/s used, per batch item.
    penalty: tp.Optional[torch.Tensor] = None
    metrics: dict = field(default_factory=dict)


class BaseQuantizer(nn.Module):
    """Base class for quantizers."""

    def forward(self, x: torch.Tensor, frame_rate: int) -> QuantizedResult:
        """Quantize `x` [B, D, T] given the latent frame rate (used for the bandwidth)."""
        raise NotImplementedError()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Encode a latent [B, D, T] into codes [B, K, T]."""
        raise NotImplementedError()

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Decode codes [B, K, T] into a latent [B, D, T]."""
        raise NotImplementedError()

    @property
    def cardinality(self) -> int:
        """Number of distinct values of each code."""
        raise NotImplementedError()

    @property
    def total_codebooks(self) -> int:
        """Total number of codebooks."""
        raise NotImplementedError()

    @property
    def num_codebooks(self) -> int:
        """Number of active codebooks."""
        raise NotImplementedError()

    def set_num_codebooks(self, n: int) -> None:
        """Set the number of active codebooks."""
        raise NotImplementedError()


class DummyQuantizer(BaseQuantizer):
    """Identity "quantizer": the latent itself is the (single, float) codebook."""

    def __init__(self) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor, frame_rate: int) -> QuantizedResult:
        q = x.unsqueeze(1)
        return QuantizedResult(x, q, torch.tensor(q.numel() * 32 * frame_rate / 1000 / len(x)).to(x))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return codes.squeeze(1)

    @property
    def total_codebooks(self) -> int:
        return 1

    @property
    def num_codebooks(self) -> int:
        return self.total_codebooks

    def set_num_codebooks(self, n: int) -> None:
        raise AttributeError("Cannot override the number of codebooks for the dummy quantizer")
