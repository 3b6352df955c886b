"""Band-limited resampling with windowed-sinc filters, built fast and cached per rate pair.

The filters are those of julius' `ResampleFrac` (Hann-windowed sinc with `zeros` zero crossings,
cut-off at `rolloff` x the lower Nyquist rate), applied the same way (one strided convolution,
one output channel per phase), so results match it to float precision. What differs is the
cost of building them: julius loops once per output phase (441 times for 32 -> 44.1 kHz, i.e.
320 -> 441 after the gcd) and `julius.resample_frac` rebuilds them at every call. Here they are
built in one vectorised expression, and a `ResamplerCache` keeps them per (from, to) pair for
the object that owns it (a model, a conditioner).
"""
import math
import typing as tp

import torch
import torch.nn.functional as F


class Resampler:
    """Resample the last dimension of a tensor from `from_rate` to `to_rate` (integers, in Hz).

    Output length is `floor(T * to_rate / from_rate)`, as julius' default.
    """

    def __init__(self, from_rate: int, to_rate: int, zeros: int = 24, rolloff: float = 0.945):
        if int(from_rate) != from_rate or int(to_rate) != to_rate or from_rate <= 0 or to_rate <= 0:
            raise ValueError(f"Sample rates must be positive integers, got {from_rate} and {to_rate}.")
        gcd = math.gcd(int(from_rate), int(to_rate))
        self.old = int(from_rate) // gcd
        self.new = int(to_rate) // gcd
        self.width = 0
        self.kernel = torch.ones(1, 1, 1)
        if self.old == self.new:
            return
        cutoff = min(self.old, self.new) * rolloff
        self.width = math.ceil(zeros * self.old / cutoff)
        # Filter of phase i over the input positions idx: all phases at once, julius' formula.
        idx = torch.arange(-self.width, self.width + self.old, dtype=torch.float32)
        phases = torch.arange(self.new, dtype=torch.float32)[:, None]
        t = ((-phases / self.new + idx / self.old) * cutoff).clamp_(-zeros, zeros) * math.pi
        sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t)
        kernel = sinc * torch.cos(t / zeros / 2) ** 2
        kernel = kernel / kernel.sum(dim=1, keepdim=True)  # a constant signal stays constant
        self.kernel = kernel[:, None]  # [new, 1, taps]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.old == self.new:
            return x
        shape = x.shape
        length = shape[-1]
        flat = F.pad(x.reshape(-1, 1, length), (self.width, self.width + self.old), mode='replicate')
        kernel = self.kernel.to(device=x.device, dtype=x.dtype)
        y = F.conv1d(flat, kernel, stride=self.old).transpose(1, 2).reshape(*shape[:-1], -1)
        # julius computes the length in float32 (441050.99 rounds up to 441051): same here, so
        # that lengths match it exactly.
        out_length = int(torch.floor(torch.as_tensor(self.new * length / self.old)).item())
        return y[..., :out_length]


class ResamplerCache:
    """Resamplers kept per (from, to) rate pair, owned by one object (a model, a conditioner)."""

    def __init__(self) -> None:
        self._resamplers: tp.Dict[tp.Tuple[int, int], Resampler] = {}

    def get(self, from_rate: int, to_rate: int) -> Resampler:
        """The resampler for this pair, built on first use."""
        key = (int(from_rate), int(to_rate))
        if key not in self._resamplers:
            self._resamplers[key] = Resampler(*key)
        return self._resamplers[key]

    def __call__(self, wav: torch.Tensor, from_rate: int, to_rate: int) -> torch.Tensor:
        return self.get(from_rate, to_rate)(wav)
