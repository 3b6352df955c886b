"""Streaming transformer used by the AudioCraft language models.

Parameter names and layouts follow AudioCraft's released checkpoints: attention uses a fused
`in_proj_weight` ([q; k; v] stacked on the first axis) and an `out_proj` linear. Attention
always runs through `torch.nn.functional.scaled_dot_product_attention`; there is no global
backend switch. When streaming, self-attention keeps a preallocated key/value cache that is
written in place at the current offset, and cross-attention keeps the projected keys/values
of its (constant) source.

The same cache has a static form (`StreamingTransformer.start_static_cache`): fixed capacity,
the current position kept in a device tensor and advanced in place, keys attended through a
window of fixed length. A decoding step then has the same shapes every time and never reads a
value back to the host, so it can be compiled or captured in a CUDA graph
(`audiocraft.models.decoding`).
"""
import typing as tp

import torch
from torch import nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint as torch_checkpoint

from .activations import is_gated, resolve_activation
from .embeddings import create_sin_embedding
from .fast_linear import FastLinear, get_packed, linear as fast_linear
from .rope import RotaryEmbedding
from .streaming import StreamingModule
from ..utils.errors import InvalidArgumentError

__all__ = ['create_sin_embedding', 'create_norm_fn', 'LayerScale', 'StreamingMultiheadAttention',
           'StreamingTransformerLayer', 'StreamingTransformer', 'set_efficient_attention_backend',
           'get_efficient_attention_backend', 'expand_repeated_kv']

# Growth granularity of the key/value cache, in steps.
_CACHE_CHUNK = 256
_BACKENDS = ('torch', 'xformers')
_CHECKPOINTING = ('none', 'torch', 'xformers_default', 'xformers_mm')


def set_efficient_attention_backend(backend: str = 'torch') -> None:
    """Kept for AudioCraft API compatibility: validates the name and changes nothing.

    Attention always runs through PyTorch's scaled_dot_product_attention, which picks the best
    kernel by itself; there is deliberately no process-wide switch.
    """
    if backend not in _BACKENDS:
        raise InvalidArgumentError(f"Unknown attention backend {backend!r}, expected one of {_BACKENDS}.")


def get_efficient_attention_backend() -> str:
    """Kept for AudioCraft API compatibility: always 'torch' (see `set_efficient_attention_backend`)."""
    return 'torch'


def expand_repeated_kv(x: torch.Tensor, n_rep: int, memory_efficient: bool) -> torch.Tensor:
    """Repeat each key/value head `n_rep` times along the head axis (grouped-query attention).

    The head axis is 2 for the [B, T, H, D] layout (`memory_efficient=True`), else 1 ([B, H, T, D]).
    """
    if n_rep == 1:
        return x
    return torch.repeat_interleave(x, n_rep, dim=2 if memory_efficient else 1)


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


def _to_additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean 'may attend' mask -> additive float mask (0 / -inf)."""
    if mask.dtype != torch.bool:
        return mask.to(dtype)
    zero = torch.zeros([], device=mask.device, dtype=dtype)
    return torch.where(mask, zero, torch.full([], float('-inf'), device=mask.device, dtype=dtype))


def _merge_masks(a: tp.Optional[torch.Tensor], b: tp.Optional[torch.Tensor],
                 dtype: torch.dtype) -> tp.Optional[torch.Tensor]:
    """Combine two attention masks (boolean 'may attend' or additive float)."""
    if a is None:
        return b
    if b is None:
        return a
    if a.dtype == torch.bool and b.dtype == torch.bool:
        return a & b
    return _to_additive(a, dtype) + _to_additive(b, dtype)


class StreamingMultiheadAttention(StreamingModule):
    """Multi-head attention with streaming support (causal self-attention or cross-attention).

    Args:
        embed_dim: Model dimension.
        num_heads: Number of heads.
        dropout: Attention dropout (training only).
        bias: Whether the projections have biases.
        causal: Causal self-attention.
        past_context: Limit on how far in the past a query may look (causal only).
        custom: AudioCraft's "custom" implementation flag; the parameter layout here is always
            the fused one, which is also what AudioCraft checkpoints contain.
        memory_efficient: Kept for config compatibility (SDPA picks efficient kernels itself).
        attention_as_float32: Compute the attention itself in float32.
        rope: Rotary embedding applied to queries and keys.
        cross_attention: Keys/values come from another sequence.
        safe_streaming: Kept for config compatibility.
        qk_layer_norm: Layer-normalize queries and keys.
        kv_repeat: Number of query heads sharing one key/value head.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 causal: bool = False, past_context: tp.Optional[int] = None, custom: bool = False,
                 memory_efficient: bool = False, attention_as_float32: bool = False,
                 rope: tp.Optional[RotaryEmbedding] = None, cross_attention: bool = False,
                 safe_streaming: bool = True, qk_layer_norm: bool = False, kv_repeat: int = 1,
                 device=None, dtype=None):
        super().__init__()
        factory_kwargs = {'device': device, 'dtype': dtype}
        if past_context is not None and not causal:
            raise InvalidArgumentError("past_context requires causal=True.")
        if embed_dim % num_heads != 0:
            raise InvalidArgumentError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads}).")
        if cross_attention and causal:
            raise InvalidArgumentError("Causal cannot work with cross attention.")
        if cross_attention and rope is not None:
            raise InvalidArgumentError("Rope cannot work with cross attention.")
        if num_heads % kv_repeat != 0:
            raise InvalidArgumentError(f"num_heads ({num_heads}) must be divisible by kv_repeat ({kv_repeat}).")
        if cross_attention and kv_repeat != 1:
            raise InvalidArgumentError("kv_repeat is only supported for self-attention.")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.causal = causal
        self.past_context = past_context
        self.memory_efficient = memory_efficient
        self.attention_as_float32 = attention_as_float32
        self.rope = rope
        self.cross_attention = cross_attention
        self.safe_streaming = safe_streaming
        self.dropout = dropout
        self.kv_repeat = kv_repeat
        self.custom = custom or memory_efficient
        self.qk_layer_norm = qk_layer_norm
        # Length of the key window attended in static-cache mode (set by StreamingTransformer).
        self.static_window: tp.Optional[int] = None

        kv_dim = self.head_dim * (num_heads // kv_repeat)
        in_proj = nn.Linear(embed_dim, embed_dim + 2 * kv_dim, bias=bias, **factory_kwargs)
        if not self.custom:
            # torch.nn.MultiheadAttention's initialisation, whose parameters AudioCraft then uses.
            nn.init.xavier_uniform_(in_proj.weight)
        self.in_proj_weight = in_proj.weight
        if bias:
            self.in_proj_bias = in_proj.bias
            self.in_proj_bias.data.zero_()
        else:
            self.register_parameter('in_proj_bias', None)
        self.out_proj = FastLinear(embed_dim, embed_dim, bias=bias, **factory_kwargs)
        if bias:
            self.out_proj.bias.data.zero_()
        if qk_layer_norm:
            if kv_repeat != 1:
                raise InvalidArgumentError("qk_layer_norm requires kv_repeat == 1.")
            self.q_layer_norm = nn.LayerNorm(embed_dim, device=device)
            self.k_layer_norm = nn.LayerNorm(embed_dim, device=device)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints of AudioCraft's non-custom attention store nn.MultiheadAttention keys under 'mha.'.
        for key in ['in_proj_weight', 'in_proj_bias', 'out_proj.weight', 'out_proj.bias']:
            if prefix + 'mha.' + key in state_dict and prefix + key not in state_dict:
                state_dict[prefix + key] = state_dict.pop(prefix + 'mha.' + key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def packable_linears(self) -> tp.Dict[str, tp.Tuple[torch.Tensor, tp.Optional[torch.Tensor]]]:
        """Weights that `fast_linear.pack_linear_weights` may pack: the per-step projections."""
        dim, b = self.embed_dim, self.in_proj_bias
        if self.cross_attention:  # keys/values are projected once per source, queries every step
            return {'q': (self.in_proj_weight[:dim], None if b is None else b[:dim])}
        return {'in_proj': (self.in_proj_weight, b)}

    def _split_heads(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, heads, self.head_dim).transpose(1, 2)

    def _project_q(self, query: torch.Tensor) -> torch.Tensor:
        dim = self.embed_dim
        b = self.in_proj_bias
        q = fast_linear(query, self.in_proj_weight[:dim], None if b is None else b[:dim], get_packed(self, 'q'))
        if self.qk_layer_norm:
            q = self.q_layer_norm(q)
        return self._split_heads(q, self.num_heads)

    def _project_kv(self, key: torch.Tensor, value: torch.Tensor) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        dim = self.embed_dim
        kv_dim = (self.in_proj_weight.shape[0] - dim) // 2
        w, b = self.in_proj_weight, self.in_proj_bias
        k = fast_linear(key, w[dim:dim + kv_dim], None if b is None else b[dim:dim + kv_dim])
        v = fast_linear(value, w[dim + kv_dim:], None if b is None else b[dim + kv_dim:])
        if self.qk_layer_norm:
            k = self.k_layer_norm(k)
        kv_heads = self.num_heads // self.kv_repeat
        return self._split_heads(k, kv_heads), self._split_heads(v, kv_heads)

    def _project_fused(self, x: torch.Tensor) -> tp.Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, T, _ = x.shape
        projected = fast_linear(x, self.in_proj_weight, self.in_proj_bias, get_packed(self, 'in_proj'))
        if self.kv_repeat == 1 and not self.qk_layer_norm:
            packed = projected.view(B, T, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
            return packed[0], packed[1], packed[2]
        dim = self.embed_dim
        kv_dim = (projected.shape[-1] - dim) // 2
        q, k, v = projected[..., :dim], projected[..., dim:dim + kv_dim], projected[..., dim + kv_dim:]
        if self.qk_layer_norm:
            q = self.q_layer_norm(q)
            k = self.k_layer_norm(k)
        kv_heads = self.num_heads // self.kv_repeat
        return self._split_heads(q, self.num_heads), self._split_heads(k, kv_heads), self._split_heads(v, kv_heads)

    def _cached_cross_kv(self, key: torch.Tensor, value: torch.Tensor
                         ) -> tp.Optional[tp.Tuple[torch.Tensor, torch.Tensor]]:
        state = self._streaming_state
        if not self._is_streaming or 'cross_src' not in state or value is not key:
            return None
        if 'static_pos' in state:  # static decoding keeps one source: no comparison (a host sync)
            return state['cross_k'], state['cross_v']
        src = state['cross_src']
        if src is key or (src.shape == key.shape and src.dtype == key.dtype and torch.equal(src, key)):
            return state['cross_k'], state['cross_v']
        return None

    def _cache_length(self) -> int:
        length = self._streaming_state.get('cache_len')
        return 0 if length is None else int(length)

    def _complete_kv(self, k: torch.Tensor, v: torch.Tensor, past: int
                     ) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        """Append k, v ([B, H, T, D]) to the streaming cache and return all keys/values so far."""
        if not self._is_streaming:
            return k, v
        state = self._streaming_state
        end = past + k.shape[2]
        k_cache, v_cache = state.get('k_cache'), state.get('v_cache')
        if k_cache is None or k_cache.shape[2] < end or k_cache.shape[:2] != k.shape[:2]:
            old = 0 if k_cache is None else k_cache.shape[2]
            reserve = state.get('cache_reserve')
            if k_cache is None and reserve is not None:
                capacity = end + int(reserve)  # the caller knows how many steps will follow
            else:
                capacity = max(end, 2 * old)
                capacity = -(-capacity // _CACHE_CHUNK) * _CACHE_CHUNK
            new_k = k.new_empty(k.shape[0], k.shape[1], capacity, k.shape[3])
            new_v = v.new_empty(v.shape[0], v.shape[1], capacity, v.shape[3])
            if past > 0:
                assert k_cache is not None and v_cache is not None
                new_k[:, :, :past] = k_cache[:, :, :past]
                new_v[:, :, :past] = v_cache[:, :, :past]
            k_cache, v_cache = new_k, new_v
            state['k_cache'], state['v_cache'] = k_cache, v_cache
        # Positions >= past are never part of an earlier snapshot's valid range, so writing in place
        # keeps states returned by get_streaming_state() valid.
        k_cache[:, :, past:end] = k
        v_cache[:, :, past:end] = v
        state['cache_len'] = torch.tensor(end)
        return k_cache[:, :, :end], v_cache[:, :, :end]

    def _static_kv(self, k: torch.Tensor, v: torch.Tensor, start: torch.Tensor
                   ) -> tp.Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Static-cache form of `_complete_kv`: write k, v at positions `start + [0, T)` of the
        fixed-capacity cache; return the first `static_window` keys/values and the boolean
        [T, window] mask of those each query may attend (causal, and `past_context`)."""
        state = self._streaming_state
        k_cache, v_cache = state.get('k_cache'), state.get('v_cache')
        if k_cache is None or v_cache is None:
            capacity = int(state['static_capacity'])
            # Zeros, not empty: masked slots still enter the attention product with weight 0,
            # and uninitialised memory may hold NaN.
            k_cache = k.new_zeros(k.shape[0], k.shape[1], capacity, k.shape[3])
            v_cache = v.new_zeros(v.shape[0], v.shape[1], capacity, v.shape[3])
            state['k_cache'], state['v_cache'] = k_cache, v_cache
        positions = start.view(-1)[:1] + torch.arange(k.shape[2], device=k.device)
        k_cache.index_copy_(2, positions, k.to(k_cache.dtype))
        v_cache.index_copy_(2, positions, v.to(v_cache.dtype))
        capacity = k_cache.shape[2]
        window = capacity if self.static_window is None else min(self.static_window, capacity)
        delta = positions.view(-1, 1) - torch.arange(window, device=k.device).view(1, -1)
        valid = delta >= 0
        if self.past_context is not None:
            valid &= delta <= self.past_context
        return k_cache[:, :, :window], v_cache[:, :, :window], valid

    def _causal_mask(self, past: int, q_len: int, k_len: int, device: torch.device,
                     explicit: bool) -> tp.Tuple[tp.Optional[torch.Tensor], bool]:
        """Causal self-attention mask: (boolean 'may attend' mask or None, whether to use is_causal).

        Unless `explicit`, the common cases avoid building a mask: one query step sees every cached
        key, and a chunk starting at position 0 is plain lower-triangular attention.
        """
        if self.past_context is None and not explicit:
            if q_len == 1:
                return None, False
            if past == 0 and q_len == k_len:
                return None, True
        q_pos = torch.arange(past, past + q_len, device=device).view(-1, 1)
        k_pos = torch.arange(k_len, device=device).view(1, -1)
        delta = q_pos - k_pos
        valid = delta >= 0
        if self.past_context is not None:
            valid &= delta <= self.past_context
        return valid, False

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: tp.Optional[torch.Tensor] = None, need_weights: bool = False,
                attn_mask: tp.Optional[torch.Tensor] = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tp.Tuple[torch.Tensor, None]:
        """Attend `query` ([B, T, C]) to `key`/`value`; returns (output [B, T, C], None).

        `attn_mask` is boolean (True = may attend) or additive float, broadcastable to
        [B, H, T, S]; a larger mask (e.g. padded to a multiple of 8) is cropped.
        `key_padding_mask` ([B, S], True = padding) follows torch.nn.MultiheadAttention.
        """
        if is_causal:
            raise InvalidArgumentError("Pass causal=True at construction instead of is_causal.")
        if need_weights:
            raise InvalidArgumentError("need_weights=True is not supported.")
        if self._is_streaming and not (self.causal or self.cross_attention):
            raise RuntimeError("Streaming is only available for causal or cross attention.")
        dtype = query.dtype
        B, T, _ = query.shape
        past = 0
        if self.cross_attention or key is not query or value is not query:
            q = self._project_q(query)
            cached = self._cached_cross_kv(key, value) if self.cross_attention else None
            if cached is None:
                k, v = self._project_kv(key, value)
                if self.cross_attention and self._is_streaming and value is key:
                    self._streaming_state.update({'cross_src': key, 'cross_k': k, 'cross_v': v})
            else:
                k, v = cached
        else:
            q, k, v = self._project_fused(query)
        mask: tp.Optional[torch.Tensor] = None
        use_causal = False
        static_pos = self._streaming_state.get('static_pos') if self._is_streaming else None
        if not self.cross_attention and static_pos is not None:
            if self.rope is not None:
                q, k = self.rope.rotate_qk(q, k, start=static_pos, time_dim=2)
            k, v, mask = self._static_kv(k, v, static_pos)
        elif not self.cross_attention:
            past = self._cache_length() if self._is_streaming else 0
            if self.rope is not None:
                q, k = self.rope.rotate_qk(q, k, start=past, time_dim=2)
            k, v = self._complete_kv(k, v, past)
            if self.causal:
                explicit = attn_mask is not None or key_padding_mask is not None
                mask, use_causal = self._causal_mask(past, T, k.shape[2], query.device, explicit)
        k_len = k.shape[2]
        if attn_mask is not None:
            if attn_mask.shape[-2] > T or attn_mask.shape[-1] > k_len:
                attn_mask = attn_mask[..., :T, :k_len]
            mask = _merge_masks(mask, attn_mask, q.dtype)
        if key_padding_mask is not None:
            mask = _merge_masks(mask, ~key_padding_mask.bool()[:, None, None, :], q.dtype)

        if self.kv_repeat > 1:
            k = k.repeat_interleave(self.kv_repeat, dim=1)
            v = v.repeat_interleave(self.kv_repeat, dim=1)
        if self.attention_as_float32:
            q, k, v = q.float(), k.float(), v.float()
            if mask is not None and mask.dtype != torch.bool:
                mask = mask.float()
        elif mask is not None and mask.dtype != torch.bool and mask.dtype != q.dtype:
            mask = mask.to(q.dtype)
        p = self.dropout if self.training else 0.0
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=use_causal)
        x = x.to(dtype).transpose(1, 2).reshape(B, T, self.embed_dim)
        return self.out_proj(x), None


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
        self.linear1 = FastLinear(d_model, dim_feedforward, bias=bias_ff, **factory_kwargs)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = FastLinear(hidden_out, d_model, bias=bias_ff, **factory_kwargs)
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
                  key_padding_mask: tp.Optional[torch.Tensor]) -> torch.Tensor:
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=False)[0]
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
                cross_attention_src: tp.Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.cross_attention is None and cross_attention_src is not None:
            raise InvalidArgumentError("This layer has no cross-attention but cross_attention_src was given.")
        if self.cross_attention is not None and cross_attention_src is None:
            raise InvalidArgumentError("This layer has cross-attention: cross_attention_src is required.")
        x = src
        if self.norm_first:
            x = x + self.layer_scale_1(self._sa_block(self.norm1(x), src_mask, src_key_padding_mask))
            if cross_attention_src is not None:
                x = x + self.layer_scale_cross(
                    self._cross_attention_block(self.norm_cross(x), cross_attention_src))
            x = x + self.layer_scale_2(self._ff_block(self.norm2(x)))
        else:
            x = self.norm1(x + self.layer_scale_1(self._sa_block(x, src_mask, src_key_padding_mask)))
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
        static_pos = self._streaming_state.get('static_pos') if self._is_streaming else None
        offsets = self._streaming_state.get('offsets') if static_pos is None else static_pos
        if offsets is None:
            offsets = torch.zeros(B, dtype=torch.long, device=x.device)
        if self.positional_embedding in ['sin', 'sin_rope']:
            positions = torch.arange(T, device=x.device).view(1, -1, 1) + offsets.view(-1, 1, 1)
            pos_emb = create_sin_embedding(positions, C, max_period=self.max_period, dtype=x.dtype)
            x = x + self.positional_scale * pos_emb
        for layer in self.layers:
            x = self._apply_layer(layer, x, *args, **kwargs)
        if static_pos is not None:
            static_pos.add_(T)  # in place: a captured graph advances the same tensor on replay
        elif self._is_streaming:
            self._streaming_state['offsets'] = offsets + T
        return x

    def _attention_modules(self) -> tp.Iterator[StreamingMultiheadAttention]:
        return (module for module in self.modules() if isinstance(module, StreamingMultiheadAttention))

    def start_static_cache(self, capacity: int, device: tp.Union[torch.device, str]) -> None:
        """While streaming, before the first chunk: use fixed-capacity key/value caches for
        `capacity` positions, addressed by a position tensor on `device` that every forward
        advances in place. See the module docstring; `set_static_window` picks the key window."""
        if not self._is_streaming:
            raise RuntimeError("start_static_cache is only meaningful inside the streaming() context.")
        if self._streaming_state:
            raise RuntimeError("start_static_cache must be called before the first chunk is fed.")
        if capacity <= 0:
            raise InvalidArgumentError(f"Static cache capacity must be positive, got {capacity}.")
        position = torch.zeros(1, dtype=torch.long, device=device)
        self._streaming_state['static_pos'] = position
        if self.rope is not None:
            self.rope.reserve(capacity)
        for module in self._attention_modules():
            module._streaming_state['static_pos'] = position
            if not module.cross_attention:
                module._streaming_state['static_capacity'] = torch.tensor(capacity)
        self.set_static_window(capacity)

    def set_static_window(self, window: int) -> None:
        """Attend to the first `window` cached positions (static cache; at least the positions fed)."""
        for module in self._attention_modules():
            module.static_window = int(window)

    def reserve_cache(self, steps: int) -> None:
        """While streaming: size the key/value caches, when first allocated, for `steps` more steps
        than the first chunk (instead of growing them geometrically)."""
        if not self._is_streaming:
            raise RuntimeError("reserve_cache is only meaningful inside the streaming() context.")
        for module in self._attention_modules():
            if not module.cross_attention:
                module._streaming_state['cache_reserve'] = torch.tensor(max(0, int(steps)))

    def make_optim_group(self) -> tp.Dict[str, tp.Any]:
        """Optimizer parameter group, with this module's lr / weight_decay overrides if any."""
        group: tp.Dict[str, tp.Any] = {"params": list(self.parameters())}
        if self.lr is not None:
            group["lr"] = self.lr
        if self.weight_decay is not None:
            group["weight_decay"] = self.weight_decay
        return group
