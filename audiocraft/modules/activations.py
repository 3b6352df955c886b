"""Activation functions for transformer feed-forward blocks, including gated linear units."""
import typing as tp

import torch
from torch import nn
import torch.nn.functional as F

from ..utils.errors import InvalidArgumentError


class CustomGLU(nn.Module):
    """Gated linear unit: split the input in two halves `a, b` along `dim`, return `a * activation(b)`.

    Args:
        activation: Activation applied to the gate half.
        dim: Dimension to split on.
    """

    def __init__(self, activation: nn.Module, dim: int = -1):
        super().__init__()
        self.dim = dim
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[self.dim] % 2 == 0, "GLU input size must be even along the split dimension"
        a, b = torch.chunk(x, 2, dim=self.dim)
        return a * self.activation(b)


class SwiGLU(CustomGLU):
    """GLU with a SiLU (swish) gate."""

    def __init__(self, dim: int = -1):
        super().__init__(nn.SiLU(), dim)


class GeGLU(CustomGLU):
    """GLU with a GELU gate."""

    def __init__(self, dim: int = -1):
        super().__init__(nn.GELU(), dim)


class ReGLU(CustomGLU):
    """GLU with a ReLU gate."""

    def __init__(self, dim: int = -1):
        super().__init__(nn.ReLU(), dim)


_GATED = {"reglu": ReGLU, "geglu": GeGLU, "swiglu": SwiGLU}
_PLAIN = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu, "swish": F.silu, "elu": F.elu, "tanh": torch.tanh}


def get_activation_fn(activation: tp.Union[str, tp.Callable[[torch.Tensor], torch.Tensor]]
                      ) -> tp.Union[str, tp.Callable[[torch.Tensor], torch.Tensor]]:
    """Map gated activation names ('reglu', 'geglu', 'swiglu') to modules; pass anything else through."""
    if isinstance(activation, str) and activation in _GATED:
        return _GATED[activation]()
    return activation


def resolve_activation(activation: tp.Union[str, tp.Callable[[torch.Tensor], torch.Tensor]]
                       ) -> tp.Callable[[torch.Tensor], torch.Tensor]:
    """Turn an activation name or callable into a callable."""
    activation = get_activation_fn(activation)
    if isinstance(activation, str):
        if activation not in _PLAIN:
            raise InvalidArgumentError(f"Unknown activation {activation!r}; expected one of "
                                       f"{sorted(_PLAIN) + sorted(_GATED)} or a callable.")
        return _PLAIN[activation]
    return activation


def is_gated(activation: tp.Any) -> bool:
    """Whether the activation halves its input size (GLU family)."""
    return isinstance(activation, CustomGLU) or (isinstance(activation, str) and activation in _GATED)
