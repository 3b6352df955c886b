"""Optional torch profiler for the first training updates."""
import logging
import typing as tp

import dora
import torch

logger = logging.getLogger(__name__)


class Profiler:
    """Context manager profiling a few steps with `torch.profiler`, traces written to the XP folder."""
    def __init__(self, module: torch.nn.Module, enabled: bool = False):
        self.profiler: tp.Optional[tp.Any] = None
        if enabled:
            from torch.profiler import profile, ProfilerActivity, schedule
            output_dir = dora.get_xp().folder / 'profiler_traces'
            logger.info("Profiling activated, results will be saved to %s", output_dir)
            self.profiler = profile(
                activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else []),
                on_trace_ready=torch.profiler.tensorboard_trace_handler(str(output_dir), use_gzip=True),
                record_shapes=True, profile_memory=True, with_stack=True,
                schedule=schedule(wait=1, warmup=1, active=5, repeat=1))

    def step(self) -> None:
        if self.profiler is not None:
            self.profiler.step()

    def __enter__(self) -> "Profiler":
        if self.profiler is not None:
            self.profiler.__enter__()
        return self

    def __exit__(self, exc_type: tp.Any, exc_value: tp.Any, exc_tb: tp.Any) -> None:
        if self.profiler is not None:
            self.profiler.__exit__(exc_type, exc_value, exc_tb)
