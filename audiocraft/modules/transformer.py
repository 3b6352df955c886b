"""Streaming transformer used by the AudioCraft language models.

Layers and stack follow AudioCraft's module names (`self_attn`, `cross_attention`, `linear1`,
`norm1`, ...), so released checkpoints load unchanged. Attention and its key/value cache live in
`audiocraft.modules.attention` (re-exported here, where AudioCraft defines them); the stack owns
the one position counter while streaming (`audiocraft.modules.kv_cache`): sinusoidal embeddings,
the preallocated caches (`start_cache`) and the cross-attention prefill.
"""
import typing as tp

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint as torch_checkpoint

from .activations import is_gated, resolve_activation
from .attention import (StreamingMultiheadAttention, expand_repeated_kv, get_efficient_attention_backend,
                        set_efficient_attention_backend)
from .embeddings import create_sin_embedding
from .kv_cache import CachePosition
from .rope import RotaryEmbedding
from .streaming import StreamingModule
from ..utils.errors import InvalidArgumentError

__all__ = ['create_sin_embedding', 'create_norm_fn', 'LayerScale', 'StreamingMultiheadAttention',
           'StreamingTransformerLayer', 'StreamingTransformer', 'set_efficient_attention_backend',
           'get_efficient_attention_backend', 'expand_repeated_kv']

_CHECKPOINTING = ('none', 'torch', 'xformers_default', 'xformers_mm')


def create_norm_fn(norm_type: str, dim: int, **kwargs: tp.Any) -> nn.Module:
    """Normalization layer by name (only 'layer_norm' is used by AudioCraft models)."""
    if norm_type == 'layer_norm':
        return nn.LayerNorm(dim, eps=1e-5, **kwargs)
    raise InvalidArgumentError(f"Unknown norm type: {norm_type!r} (supported: 'layer_norm').")


class LayerScale(nn.Module):
    """Per-channel learnt rescaling of a residual branch, initialised to a small value.

    Args:
        channels: Number of channels.
        init: Initial scale.
        channel_last: Whether channels are the last dimension (else [B, C, T]).
    """

    def __init__(self, channels: int, init: float = 1e-4, channel_last: bool = True,
                 device=None, dtype=None):
        super().__init__()
        self.channel_last = channel_last
        self.scale = nn.Parameter(torch.full((channels,), init, requires_grad=True, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channel_last:
            return self.scale * x
        return self.scale[:, None] * x


class StreamingTransformerLayer(nn.Module):
    """Transformer layer (self-attention, optional cross-attention, feed-forward) with streaming.

    Submodule names match AudioCraft's (and torch.nn.TransformerEncoderLayer's): `self_attn`,
    `cross_attention`, `norm_cross`, `linear1`, `linear2`, `norm1`, `norm2`, `layer_scale_1/2`.
    `activation` is a name ('relu', 'gelu', 'swiglu', 'geglu', 'reglu', ...) or a callable;
    gated activations halve the hidden size seen by `linear2`.
    """

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 bias_ff: bool = True, bias_attn: bool = True, causal: bool = False,
                 past_context: tp.Optional[int] = None, custom: bool = False,
                 memory_efficient: bool = False, attention_as_float32: bool = False,
                 qk_layer_norm: bool = False, qk_layer_norm_cross: bool = False,
                 cross_attention: bool = False, layer_scale: tp.Optional[float] = None,
                 rope: tp.Optional[RotaryEmbedding] = None, attention_dropout: tp.Optional[float] = None,
                 kv_repeat: int = 1, norm: str = 'layer_norm', device=None, dtype=None,
                 activation: tp.Union[str, tp.Callable[[torch.Tensor], torch.Tensor]] = 'relu',
                 norm_first: bool = False, batch_first: bool = True, layer_norm_eps: float = 1e-5,
                 **kwargs: tp.Any):
        super().__init__()
        if kwargs:
            raise TypeError(f"Unexpected arguments for StreamingTransformerLayer: {sorted(kwargs)}")
        if not batch_first:
            raise InvalidArgumentError("StreamingTransformerLayer only supports batch_first=True.")
        factory_kwargs = {'device': device, 'dtype': dtype}
        attn_kwargs: tp.Dict[str, tp.Any] = {
            'embed_dim': d_model, 'num_heads': num_heads,
            'dropout': dropout if attention_dropout is None else attention_dropout,
            'bias': bias_attn, 'custom': custom, 'memory_efficient': memory_efficient,
            'attention_as_float32': attention_as_float32,
        }
        self.self_attn = StreamingMultiheadAttention(
            causal=causal, past_context=past_context, rope=rope, qk_layer_norm=qk_layer_norm,
            kv_repeat=kv_repeat, **attn_kwargs, **factory_kwargs)
        self.activation = resolve_activation(activation)
        hidden_out = dim_feedforward // 2 if is_gated(activation) or is_gated(self.activation) else dim_feedforward
        self.linear1 = nn.Linear(d_model, dim_feedforward, bias=bias_ff, **factory_kwargs)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(hidden_out, d_model, bias=bias_ff, **factory_kwargs)
        self.norm_first = norm_first
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

        self.layer_scale_1: nn.Module
        self.layer_scale_2: nn.Module
        if layer_scale is None:
            self.layer_scale_1 = nn.Identity()
            self.layer_scale_2 = nn.Identity()
        else:
            self.layer_scale_1 = LayerScale(d_model, layer_scale, **factory_kwargs)
            self.layer_scale_2 = LayerScale(d_model, layer_scale, **factory_kwargs)

        self.cross_attention: tp.Optional[StreamingMultiheadAttention] = None
        if cross_attention:
            self.cross_attention = StreamingMultiheadAttention(
                cross_attention=True, qk_layer_norm=qk_layer_norm_cross, **attn_kwargs, **factory_kwargs)
            self.dropout_cross = nn.Dropout(dropout)
            self.norm_cross = nn.LayerNorm(d_model, eps=1e-5, **factory_kwargs)
            self.layer_scale_cross: nn.Module
            if layer_scale is None:
                self.layer_scale_cross = nn.Identity()
            else:
                self.layer_scale_cross = LayerScale(d_model, layer_scale, **factory_kwargs)
        self.norm1 = create_norm_fn(norm, d_model, **factory_kwargs)
        self.norm2 = create_norm_fn(norm, d_model, **factory_kwargs)

    def _sa_block(self, x: torch.Tensor, attn_mask: tp.Optional[torch.Tensor],
                  key_padding_mask: tp.Optional[torch.Tensor], position: tp.Optional[CachePosition] = None
                  ) -> torch.Tensor:
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=False,
                           position=position)[0]
        # Dropout modules are skipped in eval: their call overhead adds up at one token per step.
        return self.dropout1(x) if self.training else x

    def _ff_block(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.linear2(self.activation(self.linear1(x)))
        x = self.linear2(self.dropout(self.activation(self.linear1(x))))
        return self.dropout2(x)

    def _cross_attention_block(self, src: torch.Tensor, cross_attention_src: torch.Tensor) -> torch.Tensor:
        assert self.cross_attention is not None
        x = self.cross_attention(src, cross_attention_src, cross_attention_src, need_weights=False)[0]
        return self.dropout_cross(x) if self.training else x

    def forward(self, src: torch.Tensor, src_mask: tp.Optional[torch.Tensor] = None,
                src_key_padding_mask: tp.Optional[torch.Tensor] = None,
                cross_attention_src: tp.Optional[torch.Tensor] = None,
                position: tp.Optional[CachePosition] = None) -> torch.Tensor:
        """One layer on src [B, T, C]; `position` is the stack's cache position while streaming."""
        if self.cross_attention is None and cross_attention_src is not None:
            raise InvalidArgumentError("This layer has no cross-attention but cross_attention_src was given.")
        if self.cross_attention is not None and cross_attention_src is None:
            raise InvalidArgumentError("This layer has cross-attention: cross_attention_src is required.")
        x = src
        if self.norm_first:
            x = x + self.layer_scale_1(self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, position))
            if cross_attention_src is not None:
                x = x + self.layer_scale_cross(
                    self._cross_attention_block(self.norm_cross(x), cross_attention_src))
            x = x + self.layer_scale_2(self._ff_block(self.norm2(x)))
        else:
            x = self.norm1(x + self.layer_scale_1(self._sa_block(x, src_mask, src_key_padding_mask, position)))
            if cross_attention_src is not None:
                # AudioCraft queries the cross-attention with the layer input here (not the
                # self-attention output); kept so post-norm checkpoints compute the same thing.
                x = self.norm_cross(
                    x + self.layer_scale_cross(self._cross_attention_block(src, cross_attention_src)))
            x = self.norm2(x + self.layer_scale_2(self._ff_block(x)))
        return x


class StreamingTransformer(StreamingModule):
    """Stack of StreamingTransformerLayer with sinusoidal and/or rotary positional embeddings.

    Args:
        d_model, num_heads, num_layers, dim_feedforward, dropout, bias_ff, bias_attn, causal,
        past_context, custom, memory_efficient, attention_as_float32, cross_attention,
        layer_scale: see StreamingTransformerLayer / StreamingMultiheadAttention.
        positional_embedding: 'sin', 'rope' or 'sin_rope'.
        max_period: Maximum period of the positional embeddings.
        positional_scale: Scale of the sinusoidal embedding (added as scale * emb), or of RoPE.
        xpos: Use the xPos decay with RoPE.
        lr, weight_decay: Optimizer group overrides (see `make_optim_group`).
        layer_class: Layer class.
        checkpointing: 'none' or 'torch' (activation checkpointing); 'xformers_*' map to torch's.
        **kwargs: Passed to each layer (e.g. activation, norm_first, norm, kv_repeat).
    """

    def __init__(self, d_model: int, num_heads: int, num_layers: int, dim_feedforward: int = 2048,
                 dropout: float = 0.1, bias_ff: bool = True, bias_attn: bool = True,
                 causal: bool = False, past_context: tp.Optional[int] = None,
                 custom: bool = False, memory_efficient: bool = False, attention_as_float32: bool = False,
                 cross_attention: bool = False, layer_scale: tp.Optional[float] = None,
                 positional_embedding: str = 'sin', max_period: float = 10_000, positional_scale: float = 1.,
                 xpos: bool = False, lr: tp.Optional[float] = None, weight_decay: tp.Optional[float] = None,
                 layer_class: tp.Type[StreamingTransformerLayer] = StreamingTransformerLayer,
                 checkpointing: str = 'none', device=None, dtype=None, **kwargs: tp.Any):
        super().__init__()
        if d_model % num_heads != 0:
            raise InvalidArgumentError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads}).")
        if positional_embedding not in ['sin', 'rope', 'sin_rope']:
            raise InvalidArgumentError(
                f"positional_embedding must be 'sin', 'rope' or 'sin_rope', got {positional_embedding!r}.")
        if checkpointing not in _CHECKPOINTING:
            raise InvalidArgumentError(f"checkpointing must be one of {_CHECKPOINTING}, got {checkpointing!r}.")
        self.positional_embedding = positional_embedding
        self.max_period = max_period
        self.positional_scale = positional_scale
        self.weight_decay = weight_decay
        self.lr = lr
        self.checkpointing = checkpointing
        self.rope: tp.Optional[RotaryEmbedding] = None
        if self.positional_embedding in ['rope', 'sin_rope']:
            self.rope = RotaryEmbedding(d_model // num_heads, max_period=max_period, xpos=xpos,
                                        scale=positional_scale, device=device)
        self.layers = nn.ModuleList()
        for _ in range(num_layers):
            self.layers.append(layer_class(
                d_model=d_model, num_heads=num_heads, dim_feedforward=dim_feedforward,
                dropout=dropout, bias_ff=bias_ff, bias_attn=bias_attn, causal=causal,
                past_context=past_context, custom=custom, memory_efficient=memory_efficient,
                attention_as_float32=attention_as_float32, cross_attention=cross_attention,
                layer_scale=layer_scale, rope=self.rope, device=device, dtype=dtype, **kwargs))
        if self.checkpointing != 'none':
            for layer in self.layers:
                # Signal used by FSDP wrapping code to know the layer is checkpointed.
                layer._magma_checkpointed = True  # type: ignore

    def _apply_layer(self, layer: nn.Module, *args: tp.Any, **kwargs: tp.Any) -> torch.Tensor:
        if self.checkpointing == 'none' or not self.training:
            return layer(*args, **kwargs)
        return torch_checkpoint(layer, *args, use_reentrant=False, **kwargs)

    def forward(self, x: torch.Tensor, *args: tp.Any, **kwargs: tp.Any) -> torch.Tensor:
        """Run the stack on x ([B, T, C]); kwargs: cross_attention_src, src_mask, src_key_padding_mask."""
        B, T, C = x.shape
        position: tp.Optional[CachePosition] = None
        if self._is_streaming:
            position = CachePosition.read(self._streaming_state, x.device)
            kwargs['position'] = position
        if self.positional_embedding in ['sin', 'sin_rope']:
            positions = torch.arange(T, device=x.device).view(1, -1, 1)
            if position is not None:
                positions = positions + position.tensor.view(-1, 1, 1)
            pos_emb = create_sin_embedding(positions, C, max_period=self.max_period, dtype=x.dtype)
            x = x + self.positional_scale * pos_emb
        for layer in self.layers:
            x = self._apply_layer(layer, x, *args, **kwargs)
        if position is not None:
            position.advance(T).write(self._streaming_state)
        return x

    def _attention_modules(self) -> tp.Iterator[StreamingMultiheadAttention]:
        return (module for module in self.modules() if isinstance(module, StreamingMultiheadAttention))

    def start_cache(self, capacity: int, device: tp.Union[torch.device, str], fixed_shape: bool = False) -> None:
        """While streaming, before the first chunk: preallocate every key/value cache for `capacity`
        positions (the call knows how many it will feed) and start the position counter on `device`.

        `fixed_shape` keeps the position on the device only, advanced in place, and attends the
        first `set_cache_window` slots with a mask: every step then has the same shapes and never
        reads a value back, so it can be compiled or captured in a CUDA graph
        (`audiocraft.models.decoding`). See `audiocraft.modules.kv_cache`.
        """
        if not self._is_streaming:
            raise RuntimeError("start_cache is only meaningful inside the streaming() context.")
        if 'position' in self._streaming_state:
            raise RuntimeError("start_cache must be called before the first chunk is fed.")
        if capacity <= 0:
            raise InvalidArgumentError(f"Cache capacity must be positive, got {capacity}.")
        CachePosition.start(device, fixed_shape).write(self._streaming_state)
        if fixed_shape and self.rope is not None:
            # Chunks after the first may start at position num_kv_heads (see
            # StreamingMultiheadAttention._rope_start): the tables cover that too.
            self.rope.reserve(capacity + max(module.num_heads for module in self._attention_modules()))
        for module in self._attention_modules():
            if not module.cross_attention:
                module._streaming_state['capacity'] = torch.tensor(int(capacity))
        self.set_cache_window(capacity if fixed_shape else None)

    def set_cache_window(self, window: tp.Optional[int]) -> None:
        """Fixed-shape decoding: attend the first `window` cache slots (at least the positions fed)."""
        if window is not None and window <= 0:
            raise InvalidArgumentError(f"The cache window must be a positive number of slots (or None), got {window}.")
        for module in self._attention_modules():
            module.cache_window = None if window is None else int(window)

    def prefill_cross_attention(self, source: torch.Tensor) -> None:
        """While streaming: project the cross-attention keys/values of `source` [B, S, C] once, for
        every layer; the following steps attend them."""
        for module in self._attention_modules():
            if module.cross_attention:
                module.prefill_cross_attention(source)

    def make_optim_group(self) -> tp.Dict[str, tp.Any]:
        """Optimizer parameter group, with this module's lr / weight_decay overrides if any."""
        group: tp.Dict[str, tp.Any] = {"params": list(self.parameters())}
        if self.lr is not None:
            group["lr"] = self.lr
        if self.weight_decay is not None:
            group["weight_decay"] = self.weight_decay
        return group
