"""The memory roofline of autoregressive decoding: machine bandwidth and bytes read per step.

A decoding step multiplies a few rows (batch x CFG) by every weight matrix it uses, so its
speed limit is how fast the weights stream from memory. `stream_bandwidth` measures that rate
(reading a buffer much larger than the caches, as a step does); `bytes_per_step` counts the
weight bytes a step reads, in the precision the model computes from. Then
`share = bytes_per_step * steps_per_s / bandwidth` is how close a run gets to the limit.
"""
import time
import typing as tp

import torch
from torch import nn

CPU_FLAGS = ('avx2', 'fma', 'f16c', 'avx512f', 'avx512bw', 'avx512_vnni', 'avx512_bf16', 'avx512_fp16',
             'amx_tile', 'amx_bf16', 'amx_int8', 'asimd', 'sve')
# Bytes per weight parameter for each way of computing a linear layer.
BYTES_PER_WEIGHT = {'fp32': 4, 'fp16': 2, 'bf16': 2, 'int8': 1}


def cpu_info() -> tp.Dict[str, tp.Any]:
    """CPU model name and the instruction-set flags that decide which kernels are fast."""
    model, flags = '', set()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                key, _, value = line.partition(':')
                key = key.strip()
                if key == 'model name' and not model:
                    model = value.strip()
                elif key in ('flags', 'Features') and not flags:
                    flags = set(value.split())
    except OSError:
        import platform
        model = platform.processor()
    return {'cpu': model, 'cpu_flags': [f for f in CPU_FLAGS if f in flags]}


def stream_bandwidth(threads: int, megabytes: int = 512, repeats: int = 5) -> float:
    """Best read bandwidth (GB/s) of summing a float32 buffer of `megabytes` with `threads` threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        buffer = torch.ones(megabytes * 2 ** 20 // 4)
        buffer.sum()  # fault the pages in
        best = float('inf')
        for _ in range(repeats):
            start = time.perf_counter()
            buffer.sum()
            best = min(best, time.perf_counter() - start)
        return buffer.numel() * 4 / best / 1e9
    finally:
        torch.set_num_threads(previous)


def bytes_per_step(lm: nn.Module, precision: str = 'fp32') -> int:
    """Weight bytes one decoding step reads from the LM when its linears compute in `precision`.

    Every matrix of the transformer and the output heads is read once per step, except what only
    sees the (fixed) conditions, computed once per generation: the conditioners and the
    cross-attention key/value projections. Embeddings (one row read per token), norms and
    biases are negligible and not counted.
    """
    per_weight = BYTES_PER_WEIGHT[precision]
    total = 0
    for name, param in lm.named_parameters():
        if param.dim() != 2 or name.startswith(('emb.', 'condition_provider.')):
            continue
        rows = param.shape[0]
        if 'cross_attention.' in name:
            if name.endswith('kv_proj.weight'):
                continue
            if name.endswith('in_proj_weight'):
                rows = rows // 3  # fused [q; k; v]: only the queries are projected per step
        total += rows * param.shape[1] * per_weight
    return total
