"""Fixed-shape decoding steps for the autoregressive LM: the same forward, made capturable.

By default, generation streams each step through the transformer's growing key/value cache
(exact, and the fastest eager path on CPU). A `StepRunner` instead puts the transformer in its
static-cache form (`StreamingTransformer.start_static_cache`): fixed capacity, the position
held in a device tensor, keys attended through a window of fixed length. One decoding step
then always has the same shapes and never reads a value back to the host, so it can be

- compiled with `torch.compile` (`DecodeOptions(compile=True)`), on CPU or GPU, and
- captured once in a CUDA graph and replayed at every following step
  (`DecodeOptions(cuda_graph=True)`), which removes the per-step Python and kernel-launch cost
  that dominates small-batch decoding on GPUs.

Keys are attended through windows that grow in multiples of `DecodeOptions.window` steps: one
compiled graph / CUDA graph per window length, so early steps do not pay for attending to the
whole capacity. Everything lives on the runner and the LM instance; nothing is process-wide.
The logits match the default path up to float summation order (the attention reduces over a
padded window); tests/test_static_decoding.py checks tokens and logits against it.
"""
from dataclasses import dataclass
import types
import typing as tp

import torch

from ..modules.optimized import uses_packed_kernel
from ..utils.errors import InvalidArgumentError

if tp.TYPE_CHECKING:
    from .lm import LMModel, ConditionTensors

Step = tp.Callable[[], torch.Tensor]


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
        """Whether generation uses a StepRunner at all."""
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


class StepRunner:
    """Runs the decoding passes of one `LMModel.generate` call on the static cache.

    Create it inside `lm.streaming()`, before the first chunk; call `logits` for every chunk.
    The first chunk (the prompt, or the first step) runs eagerly; the one-step chunks after it go
    through the compiled function and/or the CUDA graph of their key window (warmed up at the
    first step of the window, captured at the second, replayed from then on).

    Args:
        lm: The language model (streaming, in eval mode).
        condition_tensors: Condition tensors of the call (batch 2B with CFG, or empty).
        cfg_coef: Classifier-free guidance coefficient.
        steps: Number of pattern steps the call will feed.
        options: The decode options.
    """

    def __init__(self, lm: 'LMModel', condition_tensors: 'ConditionTensors', cfg_coef: float,
                 steps: int, options: DecodeOptions):
        self.lm = lm
        self.condition_tensors = condition_tensors
        self.cfg_coef = float(cfg_coef)
        # Conditions fused by 'prepend' enter the cache with the first chunk.
        self.prepended = sum(cond.shape[1] for name, (cond, _) in condition_tensors.items()
                             if lm.fuser.cond2fuse.get(name) == 'prepend')
        self.capacity = steps + self.prepended
        self.options = options
        self.device = next(iter(lm.parameters())).device
        self._graphs = CudaGraphs(self.device) if options.cuda_graph else None
        if options.compile and uses_packed_kernel(lm):
            raise InvalidArgumentError("torch.compile does not combine with packed reduced-precision weights: call "
                                       "optimize_for_cpu('fp32') or turn compile off.")
        self.fed = 0  # positions written to the cache so far (known on the host, never read back)
        self._tokens: tp.Optional[torch.Tensor] = None  # static input of the one-step function
        self._replays: tp.Dict[int, Step] = {}
        self._warm_windows: tp.Set[int] = set()
        lm.transformer.start_static_cache(self.capacity, self.device)

    def _window_for(self, end: int) -> int:
        step = self.options.window
        return min(self.capacity, -(-end // step) * step)

    def _one_step(self) -> torch.Tensor:
        assert self._tokens is not None
        return cfg_logits(self.lm, self._tokens, self.condition_tensors, self.cfg_coef)

    def _compiled_step(self) -> tp.Callable[[], torch.Tensor]:
        if not self.options.compile:
            return self._one_step
        compiled = self.lm.__dict__.get('_compiled_cfg_logits')
        if compiled is None:
            # torch.compile caches graphs (and counts recompilations) per code object: a private
            # copy of the function gives each model its own cache, kept on the model.
            own = types.FunctionType(cfg_logits.__code__.replace(), cfg_logits.__globals__, cfg_logits.__name__)
            compiled = torch.compile(own, mode=self.options.compile_mode)
            self.lm.__dict__['_compiled_cfg_logits'] = compiled
        assert self._tokens is not None
        tokens = self._tokens
        return lambda: compiled(self.lm, tokens, self.condition_tensors, self.cfg_coef)

    def logits(self, sequence: torch.Tensor) -> torch.Tensor:
        """Guided logits [B, K, card] for the last step of the new chunk `sequence` [B, K, T]."""
        T = sequence.shape[-1]
        end = self.fed + T + (0 if self.fed else self.prepended)
        if end > self.capacity:
            raise RuntimeError(f"Static cache overflow: {end} positions for a capacity of {self.capacity}.")
        window = self._window_for(end)
        self.lm.transformer.set_static_window(window)
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
