"""The one streaming mechanism shared by convolutions, LSTMs and the transformer KV cache.

A `StreamingModule` keeps per-module state in `self._streaming_state` while the
`streaming()` context is active. Entering the context on the root module switches
every `StreamingModule` below it into streaming mode; leaving it clears all state.
"""
from contextlib import contextmanager
import typing as tp

import torch
from torch import nn

State = tp.Dict[str, torch.Tensor]


class StreamingModule(nn.Module):
    """Base class for modules that can process a sequence chunk by chunk.

    Subclasses read and write `self._streaming_state` (a dict of tensors) only when
    `self._is_streaming` is True. State is owned by each module, never by a global.
    """

    def __init__(self) -> None:
        super().__init__()
        self._streaming_state: State = {}
        self._is_streaming = False

    def _apply_named_streaming(self, fn: tp.Callable[[str, "StreamingModule"], None]) -> None:
        for name, module in self.named_modules():
            if isinstance(module, StreamingModule):
                fn(name, module)

    def _set_streaming(self, streaming: bool) -> None:
        def _set(name: str, module: "StreamingModule") -> None:
            module._is_streaming = streaming
        self._apply_named_streaming(_set)

    @contextmanager
    def streaming(self) -> tp.Iterator[None]:
        """Context in which this module and its children keep state between calls."""
        self._set_streaming(True)
        try:
            yield
        finally:
            self._set_streaming(False)
            self.reset_streaming()

    def reset_streaming(self) -> None:
        """Drop the streaming state of this module and all its children."""
        def _reset(name: str, module: "StreamingModule") -> None:
            module._streaming_state.clear()
        self._apply_named_streaming(_reset)

    def get_streaming_state(self) -> State:
        """Return a flat copy of the streaming state, keyed by module path."""
        state: State = {}

        def _add(name: str, module: "StreamingModule") -> None:
            prefix = name + "." if name else ""
            for key, value in module._streaming_state.items():
                state[prefix + key] = value
        self._apply_named_streaming(_add)
        return state

    def set_streaming_state(self, state: State) -> None:
        """Restore a state previously returned by `get_streaming_state`."""
        state = dict(state)

        def _set(name: str, module: "StreamingModule") -> None:
            prefix = name + "." if name else ""
            module._streaming_state.clear()
            for key in list(state.keys()):
                if key.startswith(prefix):
                    local = key[len(prefix):]
                    if "." not in local:
                        module._streaming_state[local] = state.pop(key)
        self._apply_named_streaming(_set)
        if state:
            raise RuntimeError(f"Some streaming state keys were not consumed: {sorted(state)}")

    def flush(self, x: tp.Optional[torch.Tensor] = None) -> tp.Optional[torch.Tensor]:
        """Flush pending state. Modules that buffer input override this; the default forwards `x`."""
        if x is None:
            return None
        return self(x)


class StreamingSequential(StreamingModule, nn.Sequential):
    """A sequential container whose `flush` flushes each child in turn."""

    def __init__(self, *args: tp.Any) -> None:
        # StreamingModule.__init__ takes no modules: build the Sequential, then the streaming fields.
        nn.Sequential.__init__(self, *args)
        self._streaming_state = {}
        self._is_streaming = False

    def flush(self, x: tp.Optional[torch.Tensor] = None) -> tp.Optional[torch.Tensor]:
        for module in self:
            if isinstance(module, StreamingModule):
                x = module.flush(x)
            elif x is not None:
                x = module(x)
        return x
