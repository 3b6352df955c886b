"""Latency to the first audio with `generate(..., stream=True)`, against the one-shot `generate()`.

    python -m benchmarks.streaming [--model musicgen-small] [--duration 5] [--chunk 1] [--repeats 2]

On a random checkpoint shaped like the release (benchmarks/checkpoints.py), batch 1, sampling,
CFG 3: best of N of the time to the first chunk and to the last, and of the one-shot call.
"""
import argparse
import json
import time
import typing as tp

import torch

from . import checkpoints


def main(argv: tp.Optional[tp.List[str]] = None) -> tp.Dict[str, tp.Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', default='musicgen-small', help=f"one of {list(checkpoints.SHAPES)}")
    parser.add_argument('--duration', type=float, default=5.0)
    parser.add_argument('--chunk', type=float, default=1.0, help="seconds of audio per chunk")
    parser.add_argument('--repeats', type=int, default=2)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--cache-dir', default=None)
    args = parser.parse_args(argv)
    checkpoints.use_offline_hub()
    torch.set_num_threads(args.threads)
    from audiocraft.models import MusicGen
    model = MusicGen.get_pretrained(str(checkpoints.pretrained_folder(args.model, args.cache_dir)), device='cpu')
    model.set_generation_params(duration=args.duration, top_k=250, cfg_coef=3.0)
    prompt = ['warm lo-fi piano with soft drums']
    model.generate(prompt)  # warm-up
    one_shot, first, last = float('inf'), float('inf'), float('inf')
    chunks = 0
    for _ in range(args.repeats):
        start = time.perf_counter()
        model.generate(prompt)
        one_shot = min(one_shot, time.perf_counter() - start)
        start = time.perf_counter()
        times = [time.perf_counter() - start for _ in model.generate(prompt, stream=True, chunk_seconds=args.chunk)]
        first, last, chunks = min(first, times[0]), min(last, times[-1]), len(times)
    result = {'model': args.model, 'kernel': model.linear_kernel, 'duration_s': args.duration,
              'chunk_s': args.chunk, 'chunks': chunks, 'first_audio_s': round(first, 3),
              'stream_total_s': round(last, 3), 'one_shot_s': round(one_shot, 3), 'threads': args.threads,
              'timing': f'best of {args.repeats}, wall clock'}
    print(json.dumps(result))
    return result


if __name__ == '__main__':
    main()
