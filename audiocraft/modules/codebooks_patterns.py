"""Codebook interleaving patterns: how K parallel code streams become one LM sequence.

A `Pattern` is a layout: for each sequence step `s`, the list of (timestep `t`, codebook `q`)
coordinates predicted at that step. `build_pattern_sequence` maps codes [B, K, T] to the
sequence [B, K, S] (special token where a step holds no value for a codebook), and the
`revert_*` methods map a sequence (or logits) back to [.., K, T].

The layout is turned once into flat coordinate arrays, from which gather indexes are
built with vectorized numpy operations and cached per pattern.
"""
from abc import ABC, abstractmethod
from collections import namedtuple
from dataclasses import dataclass, field
from functools import lru_cache
import typing as tp

import numpy as np
import torch

from ..utils.errors import InvalidArgumentError

LayoutCoord = namedtuple('LayoutCoord', ['t', 'q'])  # (timestep, codebook index)
PatternLayout = tp.List[tp.List[LayoutCoord]]  # Sequence of coordinates
_MAX_CACHED_INDEXES = 64  # per pattern: (index, mask) pairs kept for reuse


@dataclass
class Pattern:
    """A codebook pattern: `layout[s]` lists the coordinates emitted at sequence step `s`.

    Args:
        layout: the sequence of coordinates. `layout[0] == []` means the sequence starts with
            a special token step.
        timesteps: number of timesteps of the codes the pattern was built for.
        n_q: number of codebooks.
    """
    layout: PatternLayout
    timesteps: int
    n_q: int
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.layout) == 0:
            raise InvalidArgumentError("A pattern layout needs at least one step.")
        steps, ts, qs = [], [], []
        for s, coords in enumerate(self.layout):
            for coord in coords:
                steps.append(s)
                ts.append(coord.t)
                qs.append(coord.q)
        self._s = np.asarray(steps, dtype=np.int64)
        self._t = np.asarray(ts, dtype=np.int64)
        self._q = np.asarray(qs, dtype=np.int64)
        self._validate_layout()

    def _validate_layout(self) -> None:
        """Each codebook moves forward in time along the sequence; one entry per codebook per step."""
        s, t, q = self._s, self._t, self._q
        if len(q) == 0:
            return
        if q.min() < 0 or q.max() >= self.n_q:
            raise InvalidArgumentError(f"Pattern codebook indexes must be in [0, {self.n_q}).")
        keys = s * self.n_q + q
        uniq, counts = np.unique(keys, return_counts=True)
        if (counts > 1).any():
            step = int(uniq[counts > 1][0]) // self.n_q
            raise InvalidArgumentError(f"Multiple entries for a same codebook are found at step {step}")
        order = np.lexsort((s, q))  # by codebook, then by step
        so, to, qo = s[order], t[order], q[order]
        first = np.ones(len(qo), dtype=bool)
        first[1:] = qo[1:] != qo[:-1]
        previous = np.where(first, 0, np.concatenate([[0], to[:-1]]))
        bad = to < previous
        if bad.any():
            i = int(np.argmax(bad))
            raise InvalidArgumentError(f"Past timesteps are found in the sequence for codebook = {int(qo[i])} "
                                       f"at step {int(so[i])}")

    @property
    def num_sequence_steps(self) -> int:
        return len(self.layout) - 1

    @property
    def max_delay(self) -> int:
        after_first = self._s >= 1
        max_t_in_seq_coords = int(self._t[after_first].max()) + 1 if after_first.any() else 0
        return max_t_in_seq_coords - self.timesteps

    @property
    def valid_layout(self) -> PatternLayout:
        valid_step = len(self.layout) - self.max_delay
        return self.layout[:valid_step]

    def _ref_length(self, keep_only_valid_steps: bool) -> int:
        return len(self.valid_layout) if keep_only_valid_steps else len(self.layout)

    def starts_with_special_token(self) -> bool:
        return self.layout[0] == []

    def get_sequence_coords_with_timestep(self, t: int, q: tp.Optional[int] = None
                                          ) -> tp.List[tp.Tuple[int, LayoutCoord]]:
        """All (step, coordinate) pairs at timestep `t` (and codebook `q` if given), in sequence order."""
        if t > self.timesteps:
            raise InvalidArgumentError("provided timesteps is greater than the pattern's number of timesteps")
        if q is not None and q > self.n_q:
            raise InvalidArgumentError("provided number of codebooks is greater than the pattern's number of codebooks")
        sel = self._t == t
        if q is not None:
            sel &= self._q == q
        return [(int(s), LayoutCoord(int(tt), int(qq)))
                for s, tt, qq in zip(self._s[sel], self._t[sel], self._q[sel])]

    def get_steps_with_timestep(self, t: int, q: tp.Optional[int] = None) -> tp.List[int]:
        return [step for step, _ in self.get_sequence_coords_with_timestep(t, q)]

    def get_first_step_with_timesteps(self, t: int, q: tp.Optional[int] = None) -> tp.Optional[int]:
        steps = self.get_steps_with_timestep(t, q)
        return steps[0] if len(steps) > 0 else None

    def _cached(self, key: tuple, device: tp.Union[torch.device, str],
                build: tp.Callable[[], tp.Tuple[np.ndarray, np.ndarray]]) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        full_key = key + (str(device),)
        if full_key not in self._cache:
            while len(self._cache) >= _MAX_CACHED_INDEXES:  # bounded, oldest entries go first
                self._cache.pop(next(iter(self._cache)))
            cpu_key = key + ('cpu',)
            if cpu_key not in self._cache:
                indexes, mask = build()
                self._cache[cpu_key] = (torch.from_numpy(indexes), torch.from_numpy(mask))
            indexes_t, mask_t = self._cache[cpu_key]
            self._cache[full_key] = (indexes_t.to(device), mask_t.to(device))
        return self._cache[full_key]

    def _build_pattern_sequence_scatter_indexes(self, timesteps: int, n_q: int, keep_only_valid_steps: bool,
                                                device: tp.Union[torch.device, str] = 'cpu'
                                                ) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        """Gather indexes [K, S] into the flattened codes (+ one special slot) and validity mask [K, S]."""
        if n_q != self.n_q:
            raise InvalidArgumentError(
                f"invalid number of codebooks for the sequence and the pattern: {n_q} != {self.n_q}")
        if timesteps > self.timesteps:
            raise InvalidArgumentError("invalid number of timesteps used to build the sequence from the pattern")

        def build() -> tp.Tuple[np.ndarray, np.ndarray]:
            length = self._ref_length(keep_only_valid_steps)
            # The special token sits right after the flattened codes, at index n_q * timesteps.
            indexes = np.full((n_q, length), n_q * timesteps, dtype=np.int64)
            mask = np.zeros((n_q, length), dtype=bool)
            sel = (self._s < length) & (self._t < timesteps)
            s, t, q = self._s[sel], self._t[sel], self._q[sel]
            indexes[q, s] = t + q * timesteps
            mask[q, s] = True
            return indexes, mask
        return self._cached(('build', timesteps, n_q, keep_only_valid_steps), device, build)

    def build_pattern_sequence(self, z: torch.Tensor, special_token: int, keep_only_valid_steps: bool = False
                               ) -> tp.Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Codes [B, K, T] -> (sequence [B, K, S], indexes [K, S], mask [K, S])."""
        if z.dim() != 3:
            raise InvalidArgumentError(f"Expected codes of shape [B, K, T], got {tuple(z.shape)}.")
        B, K, T = z.shape
        indexes, mask = self._build_pattern_sequence_scatter_indexes(
            T, K, keep_only_valid_steps=keep_only_valid_steps, device=z.device)
        z = z.reshape(B, -1)
        z = torch.cat([z, torch.zeros_like(z[:, :1]) + special_token], dim=1)
        values = z[:, indexes.view(-1)]
        values = values.view(B, K, indexes.shape[-1])
        return values, indexes, mask

    def _build_reverted_sequence_scatter_indexes(self, sequence_steps: int, n_q: int,
                                                 keep_only_valid_steps: bool = False,
                                                 is_model_output: bool = False,
                                                 device: tp.Union[torch.device, str] = 'cpu'
                                                 ) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        """Gather indexes [K, T] into the flattened sequence (+ one special slot) and mask [K, T]."""
        if n_q != self.n_q:
            raise InvalidArgumentError(
                f"invalid number of codebooks for the sequence and the pattern: {n_q} != {self.n_q}")
        ref_length = self._ref_length(keep_only_valid_steps)
        if sequence_steps > ref_length:
            raise InvalidArgumentError(f"sequence to revert is longer than the defined pattern: "
                                       f"{sequence_steps} > {ref_length}")

        def build() -> tp.Tuple[np.ndarray, np.ndarray]:
            timesteps = self.timesteps
            s = self._s
            length = ref_length
            # Model outputs at step s predict the inputs of step s + 1: drop the leading special step.
            if is_model_output and self.starts_with_special_token():
                s = s - 1
                length -= 1
            sel = (s >= 0) & (s < min(sequence_steps, length)) & (self._t < timesteps)
            s, t, q = s[sel], self._t[sel], self._q[sel]
            # When a coordinate appears at several steps, the last one wins.
            last = np.full((n_q, timesteps), -1, dtype=np.int64)
            np.maximum.at(last, (q, t), s)
            mask = last >= 0
            indexes = np.where(mask, last + np.arange(n_q)[:, None] * sequence_steps, n_q * sequence_steps)
            return indexes.astype(np.int64), mask
        key = ('revert', sequence_steps, n_q, keep_only_valid_steps, is_model_output)
        return self._cached(key, device, build)

    def revert_pattern_sequence(self, s: torch.Tensor, special_token: int, keep_only_valid_steps: bool = False
                                ) -> tp.Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sequence [B, K, S] -> (codes [B, K, T], indexes [K, T], mask [K, T])."""
        if s.dim() != 3:
            raise InvalidArgumentError(f"Expected a sequence of shape [B, K, S], got {tuple(s.shape)}.")
        B, K, S = s.shape
        indexes, mask = self._build_reverted_sequence_scatter_indexes(
            S, K, keep_only_valid_steps, is_model_output=False, device=s.device)
        s = s.reshape(B, -1)
        s = torch.cat([s, torch.zeros_like(s[:, :1]) + special_token], dim=1)
        values = s[:, indexes.view(-1)]
        values = values.view(B, K, indexes.shape[-1])
        return values, indexes, mask

    def revert_pattern_logits(self, logits: torch.Tensor, special_token: float, keep_only_valid_steps: bool = False
                              ) -> tp.Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Model logits [B, card, K, S] -> (logits [B, card, K, T], indexes [K, T], mask [K, T]).

        Logits at step s predict the codes of step s + 1, hence the shift when the pattern
        starts with a special token.
        """
        if logits.dim() != 4:
            raise InvalidArgumentError(f"Expected logits of shape [B, card, K, S], got {tuple(logits.shape)}.")
        B, card, K, S = logits.shape
        indexes, mask = self._build_reverted_sequence_scatter_indexes(
            S, K, keep_only_valid_steps, is_model_output=True, device=logits.device)
        logits = logits.reshape(B, card, -1)
        logits = torch.cat([logits, torch.zeros_like(logits[:, :, :1]) + special_token], dim=-1)
        values = logits[:, :, indexes.view(-1)]
        values = values.view(B, card, K, indexes.shape[-1])
        return values, indexes, mask


class CodebooksPatternProvider(ABC):
    """Builds a `Pattern` for a number of timesteps; patterns are cached per provider instance.

    Args:
        n_q: number of codebooks.
        cached: cache the last 100 patterns built by `get_pattern`.
    """

    def __init__(self, n_q: int, cached: bool = True):
        if n_q <= 0:
            raise InvalidArgumentError(f"n_q must be positive, got {n_q}")
        self.n_q = n_q
        if cached:
            self.get_pattern = lru_cache(100)(self.get_pattern)  # type: ignore

    @abstractmethod
    def get_pattern(self, timesteps: int) -> Pattern:
        """Pattern for `timesteps` timesteps."""
        raise NotImplementedError()


class DelayedPatternProvider(CodebooksPatternProvider):
    """Codebook q is delayed by `delays[q]` steps (MusicGen's default: delays = [0, 1, ..., K-1]).

    Args:
        n_q: number of codebooks.
        delays: non-decreasing delay per codebook (default `range(n_q)`).
        flatten_first: flatten (one codebook per step) the first `flatten_first` timesteps.
        empty_initial: prepend that many empty steps; a negative value also drops the initial
            special token step.
    """

    def __init__(self, n_q: int, delays: tp.Optional[tp.List[int]] = None,
                 flatten_first: int = 0, empty_initial: int = 0):
        super().__init__(n_q)
        if delays is None:
            delays = list(range(n_q))
        self.delays = list(delays)
        self.flatten_first = flatten_first
        self.empty_initial = empty_initial
        if len(self.delays) != self.n_q:
            raise InvalidArgumentError(f"Expected {self.n_q} delays, got {len(self.delays)}.")
        if sorted(self.delays) != self.delays:
            raise InvalidArgumentError(f"Delays must be non-decreasing, got {self.delays}.")

    def get_pattern(self, timesteps: int) -> Pattern:
        omit_special_token = self.empty_initial < 0
        out: PatternLayout = [] if omit_special_token else [[]]
        max_delay = max(self.delays)
        if self.empty_initial:
            out += [[] for _ in range(self.empty_initial)]
        if self.flatten_first:
            for t in range(min(timesteps, self.flatten_first)):
                for q in range(self.n_q):
                    out.append([LayoutCoord(t, q)])
        for t in range(self.flatten_first, timesteps + max_delay):
            out.append([LayoutCoord(t - delay, q) for q, delay in enumerate(self.delays)
                        if t - delay >= self.flatten_first])
        return Pattern(out, n_q=self.n_q, timesteps=timesteps)


class ParallelPatternProvider(DelayedPatternProvider):
    """All codebooks of a timestep are predicted at the same step (`empty_initial` as for delays;
    MAGNeT uses -1: no initial special token step, so the sequence is the codes themselves)."""

    def __init__(self, n_q: int, empty_initial: int = 0):
        super().__init__(n_q, [0] * n_q, empty_initial=empty_initial)


class UnrolledPatternProvider(CodebooksPatternProvider):
    """Unrolls codebooks over several inner steps per timestep, with optional delays.

    Args:
        n_q: number of codebooks.
        flattening: inner step of each codebook (non-decreasing; default `range(n_q)`, i.e. fully flat).
        delays: delay of each codebook (non-decreasing; codebooks sharing an inner step share a delay).
    """
    FlattenedCodebook = namedtuple('FlattenedCodebook', ['codebooks', 'delay'])

    def __init__(self, n_q: int, flattening: tp.Optional[tp.List[int]] = None,
                 delays: tp.Optional[tp.List[int]] = None):
        super().__init__(n_q)
        if flattening is None:
            flattening = list(range(n_q))
        if delays is None:
            delays = [0] * n_q
        flattening, delays = list(flattening), list(delays)
        if len(flattening) != n_q or len(delays) != n_q:
            raise InvalidArgumentError(f"flattening and delays need {n_q} entries each.")
        if sorted(flattening) != flattening or sorted(delays) != delays:
            raise InvalidArgumentError("flattening and delays must be non-decreasing.")
        self._flattened_codebooks = self._build_flattened_codebooks(delays, flattening)
        self.max_delay = max(delays)

    def _build_flattened_codebooks(self, delays: tp.List[int], flattening: tp.List[int]) -> dict:
        flattened_codebooks: dict = {}
        for q, (inner_step, delay) in enumerate(zip(flattening, delays)):
            if inner_step not in flattened_codebooks:
                flat_codebook = UnrolledPatternProvider.FlattenedCodebook(codebooks=[q], delay=delay)
            else:
                flat_codebook = flattened_codebooks[inner_step]
                if flat_codebook.delay != delay:
                    raise InvalidArgumentError("Delay and flattening between codebooks is inconsistent: two codebooks "
                                               "flattened to the same position should have the same delay.")
                flat_codebook.codebooks.append(q)
            flattened_codebooks[inner_step] = flat_codebook
        return flattened_codebooks

    @property
    def _num_inner_steps(self) -> int:
        return max(self._flattened_codebooks.keys()) + 1

    def num_virtual_steps(self, timesteps: int) -> int:
        return timesteps * self._num_inner_steps + 1

    def get_pattern(self, timesteps: int) -> Pattern:
        # (sort key, coordinates) pairs, reordered by the delayed position of each inner step.
        indexed_out: list = [(-1, [])]
        max_timesteps = timesteps + self.max_delay
        for t in range(max_timesteps):
            for step in range(self._num_inner_steps):
                if step in self._flattened_codebooks:
                    step_codebooks = self._flattened_codebooks[step]
                    t_for_q = t + step_codebooks.delay
                    coords = [LayoutCoord(t, q) for q in step_codebooks.codebooks]
                    if t_for_q < max_timesteps and t < max_timesteps:
                        indexed_out.append((t_for_q, coords))
                else:
                    indexed_out.append((t, []))
        out = [coords for _, coords in sorted(indexed_out)]
        return Pattern(out, n_q=self.n_q, timesteps=timesteps)


class CoarseFirstPattern(CodebooksPatternProvider):
    """First all timesteps of codebook 0, then the other codebooks (delayed by `delays`) in parallel.

    Args:
        n_q: number of codebooks.
        delays: delays of codebooks 1..n_q-1 (default all 0).
    """

    def __init__(self, n_q: int, delays: tp.Optional[tp.List[int]] = None):
        super().__init__(n_q)
        if delays is None:
            delays = [0] * (n_q - 1)
        self.delays = list(delays)
        if len(self.delays) != self.n_q - 1:
            raise InvalidArgumentError(f"Expected {self.n_q - 1} delays, got {len(self.delays)}.")
        if sorted(self.delays) != self.delays:
            raise InvalidArgumentError(f"Delays must be non-decreasing, got {self.delays}.")

    def get_pattern(self, timesteps: int) -> Pattern:
        out: PatternLayout = [[]]
        for t in range(timesteps):
            out.append([LayoutCoord(t, 0)])
        max_delay = max(self.delays) if self.delays else 0
        for t in range(timesteps + max_delay):
            out.append([LayoutCoord(t - delay, q + 1) for q, delay in enumerate(self.delays) if t - delay >= 0])
        return Pattern(out, n_q=self.n_q, timesteps=timesteps)


class MusicLMPattern(CodebooksPatternProvider):
    """MusicLM-style: groups of `group_by` codebooks, each group flattened over all timesteps in turn."""

    def __init__(self, n_q: int, group_by: int = 2):
        super().__init__(n_q)
        self.group_by = group_by

    def get_pattern(self, timesteps: int) -> Pattern:
        out: PatternLayout = [[]]
        for offset in range(0, self.n_q, self.group_by):
            for t in range(timesteps):
                for q in range(offset, offset + self.group_by):
                    out.append([LayoutCoord(t, q)])
        return Pattern(out, n_q=self.n_q, timesteps=timesteps)
