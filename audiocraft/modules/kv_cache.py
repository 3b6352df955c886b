"""The key/value cache of streaming self-attention, and the one position counter that addresses it.

One mechanism for every decoding path. While streaming, a `StreamingTransformer` owns a single
`CachePosition`: a device tensor (what indexes the caches, rotary and sinusoidal positions) and,
on the eager path, the same count on the host. Each self-attention layer keeps its keys and
values in buffers preallocated to the capacity `generate` knows (`StreamingTransformer.start_cache`),
written in place at that position by `append_kv`:

- eager (`host` known): the queries attend the exact prefix `[:end]` of the buffers, which is what
  a whole-sequence pass computes (and what AudioCraft computes);
- fixed-shape (`host` None, for `torch.compile` and CUDA graphs): the position stays on the device
  and is advanced in place, the queries attend the first `window` slots with a mask of the valid
  ones, so every step has the same shapes and never reads a value back to the host.

The buffers live in each module's streaming state (`StreamingModule`), the one state mechanism of
convolutions, the LSTM and the transformer. Positions at or after the current one are never part
of an earlier snapshot's valid range, so in-place writes keep `get_streaming_state()` snapshots valid.
"""
import typing as tp

import torch

from .rope import positions_from

# Growth granularity, in steps, when nobody said the capacity (plain streaming use).
_CACHE_CHUNK = 256


class CachePosition(tp.NamedTuple):
    """Positions fed so far: `tensor` ([1], long, on the model's device) and `host`, the same
    count as a Python int, or None in fixed-shape decoding (where `tensor` advances in place).

    In a streaming state it is kept as tensors only (`read` / `write`), as AudioCraft's state API
    expects (states are cloned and restored)."""
    tensor: torch.Tensor
    host: tp.Optional[int]

    @staticmethod
    def start(device: tp.Union[torch.device, str], fixed_shape: bool = False) -> 'CachePosition':
        """Position 0, on `device`; `fixed_shape` keeps it on the device only."""
        return CachePosition(torch.zeros(1, dtype=torch.long, device=device), None if fixed_shape else 0)

    @staticmethod
    def read(state: tp.Dict[str, torch.Tensor], device: tp.Union[torch.device, str]) -> 'CachePosition':
        """The position kept in a streaming `state` (position 0 when there is none yet)."""
        tensor = state.get('position')
        if tensor is None:
            return CachePosition.start(device)
        host = state.get('host_position')
        return CachePosition(tensor, None if host is None else int(host))

    def write(self, state: tp.Dict[str, torch.Tensor]) -> None:
        """Keep this position in a streaming `state` (the host count as a CPU scalar tensor)."""
        state['position'] = self.tensor
        if self.host is None:
            state.pop('host_position', None)
        else:
            state['host_position'] = torch.tensor(self.host)

    @property
    def start_index(self) -> tp.Union[int, torch.Tensor]:
        """The position as the host int when known, else the device tensor."""
        return self.tensor if self.host is None else self.host

    def advance(self, steps: int) -> 'CachePosition':
        """The position `steps` later. Fixed-shape: in place (a captured graph replays the same
        tensor); eager: a new value, so snapshots of the streaming state stay valid."""
        if self.host is None:
            self.tensor.add_(steps)
            return self
        return CachePosition(self.tensor + steps, self.host + steps)


def append_kv(state: tp.Dict[str, torch.Tensor], k: torch.Tensor, v: torch.Tensor, position: CachePosition,
              window: tp.Optional[int] = None) -> tp.Tuple[torch.Tensor, torch.Tensor]:
    """Write k, v ([B, H, T, D]) at `position` into the cache held in `state` (allocated at
    `state['capacity']` slots, or grown when that is unknown); return the keys and values to attend:
    the exact prefix when `position.host` is known, else the first `window` slots (all of them
    without a window)."""
    T = k.shape[2]
    keys, values = state.get('k_cache'), state.get('v_cache')
    if position.host is not None:
        end = position.host + T
        if keys is None or keys.shape[2] < end or keys.shape[:2] != k.shape[:2] or keys.dtype != k.dtype:
            capacity = _capacity(state)
            size = capacity if capacity is not None and capacity >= end else \
                -(-max(end, 2 * (0 if keys is None else keys.shape[2])) // _CACHE_CHUNK) * _CACHE_CHUNK
            keys, values = _allocate(state, k, v, size, keep=position.host, old=(keys, values))
        keys[:, :, position.host:end] = k
        values[:, :, position.host:end] = v
        return keys[:, :, :end], values[:, :, :end]
    if keys is None:
        capacity = _capacity(state)
        if capacity is None:
            raise RuntimeError("Fixed-shape decoding needs the cache capacity: call StreamingTransformer.start_cache.")
        # Zeros, not empty: masked slots still enter the attention product with weight 0, and
        # uninitialised memory may hold NaN.
        keys, values = _allocate(state, k, v, capacity, keep=0, old=(None, None), zeros=True)
    slots = positions_from(position.tensor, T)
    keys.index_copy_(2, slots, k.to(keys.dtype))
    values.index_copy_(2, slots, v.to(values.dtype))
    size = keys.shape[2] if window is None else min(window, keys.shape[2])
    return keys[:, :, :size], values[:, :, :size]


def _capacity(state: tp.Dict[str, torch.Tensor]) -> tp.Optional[int]:
    capacity = state.get('capacity')
    return None if capacity is None else int(capacity)


def _allocate(state: tp.Dict[str, torch.Tensor], k: torch.Tensor, v: torch.Tensor, size: int, keep: int,
              old: tp.Tuple[tp.Optional[torch.Tensor], tp.Optional[torch.Tensor]], zeros: bool = False
              ) -> tp.Tuple[torch.Tensor, torch.Tensor]:
    make = torch.zeros if zeros else torch.empty
    keys = make(k.shape[0], k.shape[1], size, k.shape[3], dtype=k.dtype, device=k.device)
    values = make(v.shape[0], v.shape[1], size, v.shape[3], dtype=v.dtype, device=v.device)
    old_keys, old_values = old
    if keep > 0 and old_keys is not None and old_values is not None:
        keys[:, :, :keep] = old_keys[:, :, :keep]
        values[:, :, :keep] = old_values[:, :, :keep]
    state['k_cache'], state['v_cache'] = keys, values
    return keys, values
