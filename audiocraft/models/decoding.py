"""How `LMModel.generate` computes the guided logits of each step: one strategy object per call.

`decode_strategy` picks one of
- `BatchedCFG` (the default): conditional and null conditions in one batch of 2B, mixed with
  the CFG coefficient (or no CFG without conditions), through the eager key/value cache;
- `TwoStepCFG` (AudioCraft's `two_step_cfg`): the two passes run separately, each with its own
  streaming state;
- `FixedShapeCFG` (`DecodeOptions(static=..., compile=..., cuda_graph=...)`): the caches in their
  fixed-shape form (`audiocraft.modules.kv_cache`): capacity known in advance, the position held
  in a device tensor and advanced in place, keys attended through a window of fixed length. One
  step then always has the same shapes and never reads a value back to the host, so it can be
  compiled with `torch.compile` (on CPU or GPU) and captured once in a CUDA graph and replayed at
  every following step, which removes the per-step Python and kernel-launch cost that dominates
  small-batch decoding on GPUs.

Every strategy preallocates the caches to the capacity of the call and projects the
cross-attention keys/values once (`start`), then answers `logits(chunk)` for every chunk. Keys
are attended through windows that grow in multiples of `DecodeOptions.window` steps: one
compiled graph / CUDA graph per window length, so early steps do not pay for attending to the
whole capacity. Everything lives on the strategy and the LM instance; nothing is process-wide.
The fixed-shape logits match the default path up to float summation order (the attention
reduces over a padded window); tests/test_static_decoding.py checks tokens and logits against it.
"""
from dataclasses import dataclass
import typing as tp

import torch

from ..modules.optimized import uses_packed_kernel
from ..utils.errors import InvalidArgumentError

if tp.TYPE_CHECKING:
    from .lm import LMModel, ConditionTensors

Step = tp.Callable[[], torch.Tensor]
# torch.compile keeps its graphs per code object, for every model compiled in the process: one
# per key window and model. Raised (only while our compiled step runs) so that a second model does
# not exhaust the default limit of 8 and silently fall back to eager.
_RECOMPILE_LIMIT = 64


@dataclass(frozen=True)
class DecodeOptions:
    """How `LMModel.generate` runs its one-step decoding passes.

    Args:
        static: Use the static cache even without compile / CUDA graphs (mostly for testing).
        compile: Compile the one-step function with `torch.compile`.
        compile_mode: `torch.compile` mode (e.g. 'max-autotune-no-cudagraphs'); None is the default.
        cuda_graph: Capture the one-step function in a CUDA graph and replay it (CUDA only).
        window: Granularity, in steps, of the attended key window (one graph per window length).
    """
    static: bool = False
    compile: bool = False
    compile_mode: tp.Optional[str] = None
    cuda_graph: bool = False
    window: int = 256

    def __post_init__(self) -> None:
        if self.window <= 0:
            raise InvalidArgumentError(f"DecodeOptions.window must be positive, got {self.window}.")

    @property
    def enabled(self) -> bool:
        """Whether generation uses the fixed-shape strategy (`FixedShapeCFG`)."""
        return self.static or self.compile or self.cuda_graph


def mix_cfg(cond_logits: torch.Tensor, uncond_logits: torch.Tensor, coef: tp.Union[float, torch.Tensor]
            ) -> torch.Tensor:
    """Classifier-free guidance: move from the unconditional logits towards the conditional ones
    by `coef`. The one formula of every decoding path (MusicGen, two-step CFG, MAGNeT)."""
    return uncond_logits + (cond_logits - uncond_logits) * coef


def cfg_logits(lm: 'LMModel', sequence: torch.Tensor, condition_tensors: 'ConditionTensors',
               cfg_coef: float) -> torch.Tensor:
    """Guided logits [B, K, card] of the last step of `sequence` [B, K, T].

    With conditions, the conditional and unconditional halves of `condition_tensors` run as one
    batch of 2B and are mixed with `cfg_coef`. Shared by the eager and the static paths.
    """
    B = sequence.shape[0]
    if condition_tensors:
        sequence = torch.cat([sequence, sequence], dim=0)
    logits = lm(sequence, conditions=[], condition_tensors=condition_tensors)  # [B or 2B, K, T, card]
    if condition_tensors:
        cond_logits, uncond_logits = logits.split(B, dim=0)
        logits = mix_cfg(cond_logits, uncond_logits, cfg_coef)
    return logits[:, :, -1]


class DecodeStrategy:
    """Guided logits of each new chunk for one `generate` call, inside `lm.streaming()`.

    Args:
        lm: The language model (streaming, in eval mode).
        condition_tensors: Condition tensors of the call (batch 2B with CFG, or empty).
        cfg_coef: Classifier-free guidance coefficient.
        steps: Number of pattern steps the call will feed.
    """

    def __init__(self, lm: 'LMModel', condition_tensors: 'ConditionTensors', cfg_coef: float, steps: int):
        self.lm = lm
        self.model = lm if lm._fsdp is None else lm._fsdp
        self.condition_tensors = condition_tensors
        self.cfg_coef = float(cfg_coef)
        # Conditions fused by 'prepend' enter the cache with the first chunk.
        self.prepended = sum(cond.shape[1] for name, (cond, _) in condition_tensors.items()
                             if lm.fuser.cond2fuse.get(name) == 'prepend')
        self.capacity = steps + self.prepended
        self.device = next(iter(lm.parameters())).device

    def _start_state(self, condition_tensors: 'ConditionTensors', fixed_shape: bool = False) -> None:
        """Preallocate the caches of the current streaming state and prefill its cross-attention."""
        self.lm.transformer.start_cache(self.capacity, self.device, fixed_shape=fixed_shape)
        source = self.lm.fuser.cross_attention_source(condition_tensors)
        if source is not None:
            self.lm.transformer.prefill_cross_attention(source)

    def start(self) -> None:
        """Before the first chunk."""
        self._start_state(self.condition_tensors)

    def logits(self, sequence: torch.Tensor) -> torch.Tensor:
        """Guided logits [B, K, card] for the last step of the new chunk `sequence` [B, K, T]."""
        raise NotImplementedError


class BatchedCFG(DecodeStrategy):
    """The default: conditional and null conditions as one batch of 2B (`cfg_logits`)."""

    def logits(self, sequence: torch.Tensor) -> torch.Tensor:
        return cfg_logits(self.model, sequence, self.condition_tensors, self.cfg_coef)


class TwoStepCFG(DecodeStrategy):
    """AudioCraft's two-step CFG: conditional and null passes run one after the other, each with its
    own streaming state; as in AudioCraft, mixed with the model's own coefficient."""

    def __init__(self, lm: 'LMModel', conditions: 'ConditionTensors', null_conditions: 'ConditionTensors',
                 steps: int):
        super().__init__(lm, conditions, lm.cfg_coef, steps)
        self.null_conditions = null_conditions
        self.null_state: tp.Dict[str, tp.Any] = {}

    def start(self) -> None:
        self._start_state(self.null_conditions)
        self.null_state = self.lm.get_streaming_state()
        self.lm.reset_streaming()
        self._start_state(self.condition_tensors)

    def logits(self, sequence: torch.Tensor) -> torch.Tensor:
        cond_logits = self.model(sequence, conditions=[], condition_tensors=self.condition_tensors)
        cond_state = self.lm.get_streaming_state()
        self.lm.set_streaming_state(self.null_state)
        null_logits = self.model(sequence, conditions=[], condition_tensors=self.null_conditions)
        self.null_state = self.lm.get_streaming_state()
        self.lm.set_streaming_state(cond_state)
        return mix_cfg(cond_logits, null_logits, self.cfg_coef)[:, :, -1]


class FixedShapeCFG(BatchedCFG):
    """`BatchedCFG` on the fixed-shape caches, optionally compiled and/or replayed from CUDA graphs.

    The first chunk (the prompt, or the first step) runs eagerly; the one-step chunks after it go
    through the compiled function and/or the CUDA graph of their key window (warmed up at the
    first step of the window, captured at the second, replayed from then on).
    """

    def __init__(self, lm: 'LMModel', condition_tensors: 'ConditionTensors', cfg_coef: float, steps: int,
                 options: DecodeOptions):
        super().__init__(lm, condition_tensors, cfg_coef, steps)
        self.options = options
        self._graphs = CudaGraphs(self.device) if options.cuda_graph else None
        if options.compile and uses_packed_kernel(lm):
            raise InvalidArgumentError("torch.compile does not combine with packed reduced-precision weights: call "
                                       "optimize_for_cpu('fp32') or turn compile off.")
        self.fed = 0  # positions written to the cache so far (known on the host, never read back)
        self._tokens: tp.Optional[torch.Tensor] = None  # static input of the one-step function
        self._replays: tp.Dict[int, Step] = {}
        self._warm_windows: tp.Set[int] = set()

    def start(self) -> None:
        self._start_state(self.condition_tensors, fixed_shape=True)

    def _window_for(self, end: int) -> int:
        step = self.options.window
        return min(self.capacity, -(-end // step) * step)

    def _compiled_step(self) -> Step:
        assert self._tokens is not None
        tokens = self._tokens
        if not self.options.compile:
            return lambda: cfg_logits(self.lm, tokens, self.condition_tensors, self.cfg_coef)
        compiled = self.lm.__dict__.get('_compiled_cfg_logits')
        if compiled is None:  # kept on the model: its graphs are reused by its later calls
            compiled = torch.compile(cfg_logits, mode=self.options.compile_mode)
            self.lm.__dict__['_compiled_cfg_logits'] = compiled
        config = torch._dynamo.config
        limit = 'recompile_limit' if hasattr(config, 'recompile_limit') else 'cache_size_limit'

        def step() -> torch.Tensor:
            with config.patch(**{limit: max(getattr(config, limit), _RECOMPILE_LIMIT)}):
                return compiled(self.lm, tokens, self.condition_tensors, self.cfg_coef)
        return step

    def logits(self, sequence: torch.Tensor) -> torch.Tensor:
        T = sequence.shape[-1]
        end = self.fed + T + (0 if self.fed else self.prepended)
        if end > self.capacity:
            raise RuntimeError(f"Cache overflow: {end} positions for a capacity of {self.capacity}.")
        window = self._window_for(end)
        self.lm.transformer.set_cache_window(window)
        one_step = T == 1 and self.fed > 0
        if not one_step or not (self.options.compile or self.options.cuda_graph):
            out = cfg_logits(self.lm, sequence, self.condition_tensors, self.cfg_coef)
        else:
            if self._tokens is None:
                self._tokens = sequence.clone()
            else:
                self._tokens.copy_(sequence)
            if self.options.cuda_graph:
                out = self._graph_step(window)
            else:
                out = self._compiled_step()()
        self.fed = end
        return out

    def _graph_step(self, window: int) -> torch.Tensor:
        assert self._graphs is not None
        replay = self._replays.get(window)
        if replay is not None:
            return replay()
        step = self._compiled_step()
        if window not in self._warm_windows:
            self._warm_windows.add(window)
            return self._graphs.warm_up(step)
        replay = self._graphs.capture(step)
        self._replays[window] = replay
        return replay()


def decode_strategy(lm: 'LMModel', cfg_conditions: tp.Any, cfg_coef: float, steps: int,
                    options: DecodeOptions) -> DecodeStrategy:
    """The strategy for one call: `cfg_conditions` is a dict (batched CFG, empty without
    conditions) or a (conditional, null) pair (two-step CFG, always eager); `options` the LM's
    decode options."""
    if isinstance(cfg_conditions, tuple):
        # Two passes per step, each with its own state: the model's fixed-shape options (static,
        # compile, cuda_graph) do not apply to them, so such calls run eagerly.
        conditions, null_conditions = cfg_conditions
        return TwoStepCFG(lm, conditions, null_conditions, steps)
    if options.enabled:
        if lm._fsdp is not None:
            raise InvalidArgumentError("Fixed-shape decoding does not run through an FSDP wrapper.")
        return FixedShapeCFG(lm, cfg_conditions, cfg_coef, steps, options)
    return BatchedCFG(lm, cfg_conditions, cfg_coef, steps)


class CudaGraphs:
    """Warm-up, capture and replay of decoding steps in CUDA graphs sharing one memory pool.

    Only the latest captured graph is replayed at any time (one per key window, in order), which
    is what makes sharing the pool safe.
    """

    def __init__(self, device: torch.device):
        if device.type != 'cuda':
            raise InvalidArgumentError(f"CUDA graphs need a model on a CUDA device, this one is on {device}: "
                                       "use DecodeOptions(compile=True) or the default decoding instead.")
        self.device = device
        self.pool = torch.cuda.graph_pool_handle()

    def warm_up(self, step: Step) -> torch.Tensor:
        """Run `step` for real on a side stream, as capture requires (lazy inits, autotuning)."""
        side = torch.cuda.Stream(device=self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            out = step()
        torch.cuda.current_stream(self.device).wait_stream(side)
        return out

    def capture(self, step: Step) -> Step:
        """Record `step` without running it; return a function that replays it (and returns a copy
        of its output). The autocast weight cache must be off while capturing: its tensors would
        be freed under the graph."""
        graph = torch.cuda.CUDAGraph()
        autocast = torch.is_autocast_enabled('cuda')
        dtype = torch.get_autocast_dtype('cuda')
        with torch.autocast('cuda', dtype=dtype, enabled=autocast, cache_enabled=False):
            with torch.cuda.graph(graph, pool=self.pool):
                out = step()

        def replay() -> torch.Tensor:
            graph.replay()
            return out.clone()
        return replay
