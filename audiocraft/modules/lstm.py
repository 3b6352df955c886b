"""LSTM over [B, C, T] sequences with an optional skip connection, as in SEANet."""
import typing as tp

import torch
from torch import nn

from .streaming import StreamingModule


class StreamableLSTM(StreamingModule):
    """LSTM taking and returning [B, C, T]; keys `lstm.weight_ih_l0`, ... as in released checkpoints.

    In streaming mode the hidden and cell states (h, c) are carried from one chunk to the
    next, so chunked processing equals processing the whole sequence at once.
    """

    def __init__(self, dimension: int, num_layers: int = 2, skip: bool = True):
        super().__init__()
        self.skip = skip
        self.lstm = nn.LSTM(dimension, dimension, num_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != self.lstm.input_size:
            raise ValueError(f"StreamableLSTM expects [B, {self.lstm.input_size}, T], got {tuple(x.shape)}.")
        x = x.permute(2, 0, 1)
        hidden: tp.Optional[tp.Tuple[torch.Tensor, torch.Tensor]] = None
        if self._is_streaming and 'h' in self._streaming_state:
            hidden = (self._streaming_state['h'], self._streaming_state['c'])
        if x.shape[0] == 0:
            y = x
        else:
            y, (h, c) = self.lstm(x, hidden)
            if self._is_streaming:
                self._streaming_state['h'] = h
                self._streaming_state['c'] = c
            if self.skip:
                y = y + x
        return y.permute(1, 2, 0)
