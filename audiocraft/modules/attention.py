"""Streaming multi-head attention with a key/value cache, as used by the AudioCraft transformers.

The state_dict follows AudioCraft's released checkpoints: a fused `in_proj_weight` ([q; k; v]
stacked on the first axis) and an `out_proj` linear. Inside, the projections are plain
`nn.Linear` modules (so `audiocraft.modules.optimized` can swap their kernels): `in_proj` for
self-attention; `q_proj` and `kv_proj` for cross-attention, whose keys and values only depend on
the conditions. Loading and saving map between the two layouts. Attention always runs through
`torch.nn.functional.scaled_dot_product_attention`; there is no global backend switch. When
streaming, self-attention appends to its preallocated key/value cache at the stack's one position
counter (`audiocraft.modules.kv_cache`, eager or fixed-shape for compiled and CUDA-graph decoding),
and cross-attention attends keys/values projected once by `prefill_cross_attention`.

On CPU in float32, cross-attention computes every query row independently of the rows computed
with it (matrix products of a fixed number of rows, `_row_exact_bmm`): one streaming step gives
bit for bit what the full pass gives, which AudioCraft's unit tests check at 1e-7.
"""
import typing as tp

import torch
import torch.nn.functional as F
from torch import nn

from .kv_cache import CachePosition, append_kv
from .rope import Position, RotaryEmbedding, positions_from
from .streaming import StreamingModule
from ..utils.errors import InvalidArgumentError

__all__ = ['StreamingMultiheadAttention', 'set_efficient_attention_backend', 'get_efficient_attention_backend',
           'expand_repeated_kv']

# Rows per product, and column multiple, in the row-exact cross-attention (see `_row_exact_bmm`).
_ROW_BLOCK = 8
_COL_BLOCK = 16
_BACKENDS = ('torch', 'xformers')


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


def _row_exact_bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a [G, M, K] @ b [G, K, N] (G may be 1 for b), computed in products of exactly `_ROW_BLOCK` rows.

    CPU matrix-product kernels round differently depending on how many rows they are given, so a
    query computed alone (one streaming step) and the same query within a whole sequence would
    differ in the last bits. With products of a fixed number of rows, a row's result no longer
    depends on the rows computed with it.
    """
    G, M, K = a.shape
    N = b.shape[-1]
    pad = (-M) % _ROW_BLOCK
    if pad:
        a = F.pad(a, (0, 0, 0, pad))
    # Ragged column counts take edge paths whose rounding again depends on the row: pad them too.
    if N % _COL_BLOCK:
        b = F.pad(b, (0, (-N) % _COL_BLOCK))
    blocks = a.shape[1] // _ROW_BLOCK
    if G == 1:  # one right operand for every block: a stride-0 view, no copy
        out = torch.bmm(a.reshape(blocks, _ROW_BLOCK, K), b.expand(blocks, -1, -1)).reshape(1, -1, b.shape[-1])
    else:
        out = torch.cat([torch.bmm(a[:, i * _ROW_BLOCK:(i + 1) * _ROW_BLOCK], b) for i in range(blocks)], dim=1)
    return out[:, :M, :N]


def _row_exact_linear(x: torch.Tensor, weight: torch.Tensor, bias: tp.Optional[torch.Tensor]) -> torch.Tensor:
    """`F.linear` through `_row_exact_bmm`."""
    out = _row_exact_bmm(x.reshape(1, -1, x.shape[-1]), weight.t().unsqueeze(0))
    out = out.reshape(*x.shape[:-1], weight.shape[0])
    return out if bias is None else out + bias


def _row_exact_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: tp.Optional[torch.Tensor],
                         dropout_p: float) -> torch.Tensor:
    """Softmax attention of q [B, H, T, D] over k, v [B, H, S, D] through `_row_exact_bmm`."""
    B, H, T, D = q.shape
    S = k.shape[2]
    scores = _row_exact_bmm((q * D ** -0.5).reshape(B * H, T, D), k.transpose(2, 3).reshape(B * H, D, S))
    scores = scores.view(B, H, T, S)
    if mask is not None:
        scores = scores.masked_fill(~mask, float('-inf')) if mask.dtype == torch.bool else scores + mask
    probs = F.dropout(torch.softmax(scores, dim=-1), dropout_p)
    return _row_exact_bmm(probs.reshape(B * H, T, S), v.reshape(B * H, S, D)).view(B, H, T, D)


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


class _MultiheadAttentionView(nn.Module):
    """`torch.nn.MultiheadAttention`'s parameter layout (`in_proj_weight`, `in_proj_bias`,
    `out_proj`) over the parameters of a `StreamingMultiheadAttention`, which it shares: what
    `.to(dtype)` does here, it does to the attention itself."""

    def __init__(self, attention: 'StreamingMultiheadAttention'):
        super().__init__()
        assert attention.in_proj is not None
        self.in_proj_weight = attention.in_proj.weight
        self.register_parameter('in_proj_bias', attention.in_proj_bias)
        self.out_proj = attention.out_proj
        self.embed_dim = attention.embed_dim
        self.num_heads = attention.num_heads
        self.batch_first = True


def _fuse_in_proj(module: nn.Module, state_dict: tp.Dict[str, torch.Tensor], prefix: str,
                  local_metadata: tp.Any) -> None:
    """State-dict hook: save the input projections in the checkpoint layout (`in_proj_weight`,
    `in_proj_bias`, first among the module's keys), so checkpoints stay AudioCraft's."""
    own = [key for key in state_dict if key.startswith(prefix)]  # this module's subtree, in order
    items = {key: state_dict.pop(key) for key in own}
    for kind in ['weight', 'bias']:
        if prefix + f'in_proj.{kind}' in items:
            state_dict[prefix + f'in_proj_{kind}'] = items.pop(prefix + f'in_proj.{kind}')
        elif prefix + f'q_proj.{kind}' in items:
            q, kv = items.pop(prefix + f'q_proj.{kind}'), items.pop(prefix + f'kv_proj.{kind}')
            state_dict[prefix + f'in_proj_{kind}'] = torch.cat([q, kv])
    state_dict.update(items)


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
        # Fixed-shape decoding attends this many cache slots (StreamingTransformer.set_cache_window).
        self.cache_window: tp.Optional[int] = None

        kv_dim = self.head_dim * (num_heads // kv_repeat)
        in_proj = nn.Linear(embed_dim, embed_dim + 2 * kv_dim, bias=bias, **factory_kwargs)
        if not self.custom:
            # torch.nn.MultiheadAttention's initialisation, whose parameters AudioCraft then uses.
            nn.init.xavier_uniform_(in_proj.weight)
        if bias:
            in_proj.bias.data.zero_()
        self.in_proj: tp.Optional[nn.Module] = None
        self.q_proj: tp.Optional[nn.Module] = None
        self.kv_proj: tp.Optional[nn.Module] = None
        if cross_attention:
            # Split views of the fused initialisation, built on 'meta' so the random stream (and
            # thus every seeded model) is the same as with one fused parameter.
            self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias, device='meta', dtype=in_proj.weight.dtype)
            self.kv_proj = nn.Linear(embed_dim, 2 * kv_dim, bias=bias, device='meta', dtype=in_proj.weight.dtype)
            self.q_proj.weight = nn.Parameter(in_proj.weight.detach()[:embed_dim].clone())
            self.kv_proj.weight = nn.Parameter(in_proj.weight.detach()[embed_dim:].clone())
            if bias:
                self.q_proj.bias = nn.Parameter(in_proj.bias.detach()[:embed_dim].clone())
                self.kv_proj.bias = nn.Parameter(in_proj.bias.detach()[embed_dim:].clone())
        else:
            self.in_proj = in_proj
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory_kwargs)
        if bias:
            self.out_proj.bias.data.zero_()
        if qk_layer_norm:
            if kv_repeat != 1:
                raise InvalidArgumentError("qk_layer_norm requires kv_repeat == 1.")
            self.q_layer_norm = nn.LayerNorm(embed_dim, device=device)
            self.k_layer_norm = nn.LayerNorm(embed_dim, device=device)

        self._register_state_dict_hook(_fuse_in_proj)

    @property
    def in_proj_weight(self) -> torch.Tensor:
        """The fused [q; k; v] input projection, as stored in checkpoints."""
        if self.in_proj is not None:
            return self.in_proj.weight
        assert self.q_proj is not None and self.kv_proj is not None
        return torch.cat([self.q_proj.weight, self.kv_proj.weight])

    @property
    def in_proj_bias(self) -> tp.Optional[torch.Tensor]:
        """The fused input projection bias, as stored in checkpoints (None without biases)."""
        if self.in_proj is not None:
            return self.in_proj.bias
        assert self.q_proj is not None and self.kv_proj is not None
        if self.q_proj.bias is None:
            return None
        return torch.cat([self.q_proj.bias, self.kv_proj.bias])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints of AudioCraft's non-custom attention store nn.MultiheadAttention keys under 'mha.'.
        for key in ['in_proj_weight', 'in_proj_bias', 'out_proj.weight', 'out_proj.bias']:
            if prefix + 'mha.' + key in state_dict and prefix + key not in state_dict:
                state_dict[prefix + key] = state_dict.pop(prefix + 'mha.' + key)
        # The fused checkpoint layout -> this module's projections.
        for kind in ['weight', 'bias']:
            fused = state_dict.pop(prefix + f'in_proj_{kind}', None)
            if fused is None:
                continue
            if self.in_proj is not None:
                state_dict[prefix + f'in_proj.{kind}'] = fused
            else:
                state_dict[prefix + f'q_proj.{kind}'] = fused[:self.embed_dim]
                state_dict[prefix + f'kv_proj.{kind}'] = fused[self.embed_dim:]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def mha(self) -> nn.Module:
        """AudioCraft's non-custom attention (custom=False, memory_efficient=False) wraps a
        `torch.nn.MultiheadAttention` as `.mha`, and code written against it reaches for it (e.g.
        `attn.mha.to(torch.float32)`). Here it is a view sharing this module's parameters; it
        is not a submodule, so checkpoints keep AudioCraft's custom key layout."""
        if self.custom or self.cross_attention or self.kv_repeat != 1 or self.qk_layer_norm:
            raise AttributeError("'mha' exists only for the non-custom attention (custom=False, "
                                 "memory_efficient=False, self-attention, no kv_repeat or qk_layer_norm), as in AudioCraft.")
        return _MultiheadAttentionView(self)

    def _split_heads(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, heads, self.head_dim).transpose(1, 2)

    def _row_exact(self, query: torch.Tensor) -> bool:
        """Whether this cross-attention computes each query row independently of the others (CPU,
        float32, plain `nn.Linear` projections): a streaming step then equals the full pass bit for
        bit, as AudioCraft's unit tests require (`_row_exact_bmm`)."""
        return (self.cross_attention and query.device.type == 'cpu' and query.dtype == torch.float32
                and type(self.q_proj) is nn.Linear and type(self.out_proj) is nn.Linear
                and self.q_proj.weight.dtype == torch.float32 and self.out_proj.weight.dtype == torch.float32
                and not torch.is_autocast_enabled('cpu') and not torch.compiler.is_compiling())

    def _project_q(self, query: torch.Tensor, row_exact: bool = False) -> torch.Tensor:
        if self.q_proj is not None:
            if row_exact:
                q = _row_exact_linear(query, self.q_proj.weight, self.q_proj.bias)
            else:
                q = self.q_proj(query)
        else:  # self-attention with a distinct key/value (not the decoding path)
            assert self.in_proj is not None
            b = self.in_proj.bias
            q = F.linear(query, self.in_proj.weight[:self.embed_dim], None if b is None else b[:self.embed_dim])
        if self.qk_layer_norm:
            q = self.q_layer_norm(q)
        return self._split_heads(q, self.num_heads)

    def _project_kv(self, key: torch.Tensor, value: torch.Tensor) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        dim = self.embed_dim
        if self.kv_proj is not None:
            w, b, dim = self.kv_proj.weight, self.kv_proj.bias, 0
        else:
            assert self.in_proj is not None
            w, b = self.in_proj.weight, self.in_proj.bias
        kv_dim = (w.shape[0] - dim) // 2
        if self.kv_proj is not None and value is key:
            k, v = self.kv_proj(key).split(kv_dim, dim=-1)
        else:
            k = F.linear(key, w[dim:dim + kv_dim], None if b is None else b[dim:dim + kv_dim])
            v = F.linear(value, w[dim + kv_dim:], None if b is None else b[dim + kv_dim:])
        if self.qk_layer_norm:
            k = self.k_layer_norm(k)
        kv_heads = self.num_heads // self.kv_repeat
        return self._split_heads(k, kv_heads), self._split_heads(v, kv_heads)

    def _project_fused(self, x: torch.Tensor) -> tp.Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, T, _ = x.shape
        assert self.in_proj is not None
        projected = self.in_proj(x)
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

    def prefill_cross_attention(self, source: torch.Tensor) -> None:
        """While streaming: project the keys and values of the cross-attention `source` ([B, S, C])
        once; every following step attends them (the `key`/`value` it is given are then unused)."""
        if not self.cross_attention:
            raise RuntimeError("prefill_cross_attention is for cross-attention layers.")
        if not self._is_streaming:
            raise RuntimeError("prefill_cross_attention is only meaningful inside the streaming() context.")
        self._streaming_state['cross_k'], self._streaming_state['cross_v'] = self._project_kv(source, source)

    def _rope_start(self, past: Position, kv_heads: int) -> Position:
        """Rotary position of the first step of a chunk fed after `past` cached steps.

        AudioCraft (torch backend) takes the number of cached steps from axis 1 of its key cache.
        That axis is time only when `memory_efficient=False`; with `memory_efficient=True` the
        cache is [B, H, T, D] and axis 1 holds the key/value heads. So in that configuration every
        chunk after the first is rotated as if it started at position `kv_heads`, while the full
        pass uses true positions. Models trained with AudioCraft generate this way, and the
        golden case `musicgen_variants_tiny` requires it; `past` may be a device tensor (static
        cache), hence no branching on its value.
        """
        if not self.memory_efficient:
            return past
        if isinstance(past, torch.Tensor):
            return (past > 0).long() * kv_heads
        return kv_heads if past > 0 else 0

    def _allowed_keys(self, query_positions: torch.Tensor, k_len: int) -> torch.Tensor:
        """Boolean [T, k_len] mask of the keys each query position may attend: causal, and
        within `past_context` when set."""
        delta = query_positions.view(-1, 1) - torch.arange(k_len, device=query_positions.device).view(1, -1)
        valid = delta >= 0
        if self.past_context is not None:
            valid &= delta <= self.past_context
        return valid

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
        return self._allowed_keys(torch.arange(past, past + q_len, device=device), k_len), False

    def _attend_past(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, position: tp.Optional[CachePosition],
                     explicit: bool) -> tp.Tuple[torch.Tensor, torch.Tensor, torch.Tensor, tp.Optional[torch.Tensor], bool]:
        """Self-attention: rotary positions, then (while streaming) the key/value cache at `position`
        (the stack's counter, or this module's own when it streams alone); returns q, k, v, the mask
        of the keys each query may attend and whether to use SDPA's `is_causal` instead."""
        T = q.shape[2]
        own = self._is_streaming and position is None
        if own:
            position = CachePosition.read(self._streaming_state, q.device)
        if self.rope is not None:
            start = self._rope_start(0 if position is None else position.start_index, k.shape[1])
            q, k = self.rope.rotate_qk(q, k, start=start, time_dim=2)
        mask: tp.Optional[torch.Tensor] = None
        use_causal = False
        if position is not None:
            k, v = append_kv(self._streaming_state, k, v, position, self.cache_window)
        if position is not None and position.host is None:  # fixed-shape: the window holds unwritten slots
            mask = self._allowed_keys(positions_from(position.tensor, T), k.shape[2])
        elif self.causal:
            past = 0 if position is None else position.host
            mask, use_causal = self._causal_mask(past, T, k.shape[2], q.device, explicit)
        if own:
            assert position is not None
            position.advance(T).write(self._streaming_state)
        return q, k, v, mask, use_causal

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: tp.Optional[torch.Tensor] = None, need_weights: bool = False,
                attn_mask: tp.Optional[torch.Tensor] = None, average_attn_weights: bool = True,
                is_causal: bool = False, position: tp.Optional[CachePosition] = None
                ) -> tp.Tuple[torch.Tensor, None]:
        """Attend `query` ([B, T, C]) to `key`/`value`; returns (output [B, T, C], None).

        While streaming, self-attention appends to its key/value cache at `position` (the stack's
        counter, `audiocraft.modules.kv_cache`; a module streaming alone keeps its own).

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
        dtype = out_dtype = query.dtype
        B, T, _ = query.shape
        if self.attention_as_float32 and not self.custom and self.in_proj_weight.dtype == torch.float32:
            # AudioCraft's non-custom path runs nn.MultiheadAttention on float32 inputs, projections
            # included, once its weights were cast (`attn.mha.to(torch.float32)`).
            # One cast per distinct tensor: `key is query` / `value is key` select the fused and cached paths.
            cast: tp.Dict[int, torch.Tensor] = {}
            query, key, value = [cast.setdefault(id(x), x.float()) for x in (query, key, value)]
            dtype = torch.float32
        row_exact = self._row_exact(query)
        if self.cross_attention or key is not query or value is not query:
            q = self._project_q(query, row_exact)
            if self.cross_attention and self._is_streaming and 'cross_k' in self._streaming_state:
                k, v = self._streaming_state['cross_k'], self._streaming_state['cross_v']  # prefilled
            else:
                k, v = self._project_kv(key, value)
        else:
            q, k, v = self._project_fused(query)
        mask: tp.Optional[torch.Tensor] = None
        use_causal = False
        if not self.cross_attention:
            explicit = attn_mask is not None or key_padding_mask is not None
            q, k, v, mask, use_causal = self._attend_past(q, k, v, position, explicit)
        k_len = k.shape[2]
        if attn_mask is not None:
            if attn_mask.shape[-2] > T or attn_mask.shape[-1] > k_len:
                attn_mask = attn_mask[..., :T, :k_len]
            mask = _merge_masks(mask, attn_mask, q.dtype)
        if key_padding_mask is not None:
            mask = _merge_masks(mask, ~key_padding_mask.bool()[:, None, None, :], q.dtype)

        k = expand_repeated_kv(k, self.kv_repeat, memory_efficient=False)
        v = expand_repeated_kv(v, self.kv_repeat, memory_efficient=False)
        if self.attention_as_float32:
            q, k, v = q.float(), k.float(), v.float()
            if mask is not None and mask.dtype != torch.bool:
                mask = mask.float()
        elif mask is not None and mask.dtype != torch.bool and mask.dtype != q.dtype:
            mask = mask.to(q.dtype)
        p = self.dropout if self.training else 0.0
        if row_exact:
            x = _row_exact_attention(q, k, v, mask, p)
            x = x.to(dtype).transpose(1, 2).reshape(B, T, self.embed_dim)
            return _row_exact_linear(x, self.out_proj.weight, self.out_proj.bias).to(out_dtype), None
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=use_causal)
        x = x.to(dtype).transpose(1, 2).reshape(B, T, self.embed_dim)
        return self.out_proj(x).to(out_dtype), None
