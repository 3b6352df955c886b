"""Audio chunks decoded from tokens while they are generated (`generate(..., stream=True)`).

The released 32 kHz EnCodec is not causal: its convolutions look a few frames ahead and its LSTM
carries state from the start, so the audio of frames [a, b) depends on codes outside them. Each
chunk is therefore decoded from a window that adds `left_context` frames before it and
`right_context` frames after it (held back until generated), and consecutive chunks overlap by
`fade` samples, joined with an equal-gain linear cross-fade. Away from the joins the chunks equal
the one-shot decoding of all tokens to float precision of the context kept (tests check 1e-3),
and the joins themselves have no step (no clicks).
"""
import typing as tp

import torch

from .encodec import CompressionModel


class StreamingDecoder:
    """Turns growing codes [B, K, T] into consecutive audio chunks [B, C, n].

    Args:
        model: The compression model (its `decode` must give `hop` samples per frame).
        chunk_frames: Frames of new audio per chunk (the last chunk may be shorter or longer).
        left_context: Frames decoded before each chunk, for the decoder's left receptive field.
        right_context: Frames after each chunk that must exist before it is decoded.
        fade: Samples of overlap between chunks, cross-faded.
    """

    def __init__(self, model: CompressionModel, chunk_frames: int, left_context: int = 50,
                 right_context: int = 5, fade: int = 640):
        if chunk_frames <= 0:
            raise ValueError(f"chunk_frames must be positive, got {chunk_frames}.")
        self.model = model
        self.hop = int(round(model.sample_rate / model.frame_rate))
        self.chunk_frames = chunk_frames
        self.left_context = left_context
        self.right_context = right_context
        self.fade = min(fade, chunk_frames * self.hop // 2)
        self.emitted = 0  # samples yielded so far
        self._tail: tp.Optional[torch.Tensor] = None  # decoded samples held back for the next cross-fade

    def push(self, codes: tp.Callable[[], torch.Tensor], ready: int, final: bool = False
             ) -> tp.Optional[torch.Tensor]:
        """The next chunk, if `ready` frames (given lazily by `codes()`) complete one; `final`
        flushes everything left. Returns None when there is nothing to yield yet."""
        held = 0 if self._tail is None else self._tail.shape[-1]
        covered = self.emitted + held  # samples decoded already: yielded, or held for the cross-fade
        end_frame = ready if final else ready - self.right_context
        if final:
            if end_frame * self.hop <= covered and not held:
                return None
        elif end_frame * self.hop - covered < self.chunk_frames * self.hop:
            return None
        start_frame = max(0, self.emitted // self.hop - self.left_context)
        with torch.no_grad():
            audio = self.model.decode(codes()[..., start_frame:ready], None)
        offset = start_frame * self.hop
        stop = end_frame * self.hop if final else end_frame * self.hop - self.fade
        new = audio[..., self.emitted - offset:stop - offset]
        if self._tail is not None:
            # Equal-gain linear cross-fade from the previous window's decoding to this one's.
            ramp = torch.linspace(0, 1, held + 2, device=new.device, dtype=new.dtype)[1:-1]
            new = torch.cat([self._tail * (1 - ramp) + new[..., :held] * ramp, new[..., held:]], dim=-1)
        self._tail = None if final else audio[..., stop - offset:end_frame * self.hop - offset]
        self.emitted = stop
        return new
