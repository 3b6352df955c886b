"""Benchmark suite: generation speed, load time and codec speed on random release-shaped checkpoints.

    python -m benchmarks.run --out benchmarks/results.json             # full run (~15 min on 2 cores)
    python -m benchmarks.run --quick                                    # tiny shapes, < 30 s
    python -m benchmarks.run --sections generate --models musicgen-small --precisions fp32,fp16
    python -m benchmarks.run --device cuda --sections generate,codec --precisions fp32,fp16,bf16 \
        --decode eager,cudagraph                                        # GPU paths

Checkpoints are written once into `benchmarks/.cache` in the released format (see
benchmarks/checkpoints.py) and loaded with `get_pretrained(folder)`: no hub access. Every
timing is the best of `--repeats` runs (the machine may be shared: best-of-N is the least noisy
estimate of what the code costs). Generation timings cover the whole `generate()` call (text
conditioning, autoregressive steps and codec decoding). RTF is wall time / audio duration
(below 1: faster than real time). musicgen-medium (1.8B parameters, 7.4 GB in float32) is only
loaded, never run, unless named in `--models`.
"""
import argparse
import datetime
import gc
import json
import platform
import sys
import time
import typing as tp

import torch

from . import checkpoints, roofline

Row = tp.Dict[str, tp.Any]


def best_time(fn: tp.Callable[[], tp.Any], repeats: int) -> tp.Tuple[float, tp.Any]:
    """Best wall time of `repeats` calls of `fn` (after none: callers warm up explicitly) and the last result."""
    best, result = float('inf'), None
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def ar_steps(lm: tp.Any, gen_len: int) -> int:
    """Number of autoregressive steps `lm.generate` runs for `gen_len` frames without prompt."""
    pattern = lm.pattern_provider.get_pattern(gen_len)
    return len(pattern.layout) - pattern.get_first_step_with_timesteps(0)


def _synchronized(fn: tp.Callable[[], tp.Any], device: str) -> tp.Callable[[], tp.Any]:
    """`fn` followed by a device synchronisation, so wall time covers the queued GPU work."""
    if device != 'cuda':
        return fn

    def run() -> tp.Any:
        result = fn()
        torch.cuda.synchronize()
        return result
    return run


def _configure(model: tp.Any, precision: str, decode: str, device: str) -> None:
    """Apply a precision and a decoding mode (eager, compile, cudagraph) to a MusicGen model."""
    if device == 'cuda':
        model.optimize_for_gpu(precision, cuda_graph=(decode == 'cudagraph'), compile=(decode == 'compile'))
    else:
        model.optimize_for_cpu(precision, compile=(decode == 'compile'))


def bench_generate(shape: str, args: argparse.Namespace) -> tp.List[Row]:
    """AR steps/s and RTF of `MusicGen.generate` for each precision, decoding path, batch size and mode."""
    from audiocraft.models import MusicGen
    rows: tp.List[Row] = []
    reference: tp.Dict[int, torch.Tensor] = {}
    model: tp.Any = None
    for precision in args.precisions:
        # A fresh model per precision: on GPUs optimize_for_gpu converts weights one way.
        model = None  # the previous one is freed before the next loads
        gc.collect()
        model = MusicGen.get_pretrained(str(checkpoints.pretrained_folder(shape, args.cache_dir)),
                                        device=args.device)
        gen_len = int(args.duration * model.frame_rate)
        steps = ar_steps(model.lm, gen_len)
        for decode in args.decode:
            if decode == 'compile' and precision not in ('fp32', 'auto') and args.device == 'cpu':
                continue  # packed CPU precisions are eager only
            _configure(model, precision, decode, args.device)
            for batch in args.batches:
                descriptions = [f'warm lo-fi piano with soft drums, take {i}' for i in range(batch)]
                for mode in args.modes:
                    model.set_generation_params(use_sampling=(mode == 'sampling'), top_k=250,
                                                duration=args.duration, cfg_coef=3.0)
                    torch.manual_seed(0)
                    # Warm-up: allocations, oneDNN primitive caches, compilation, CUDA graph capture.
                    warmup, _ = best_time(_synchronized(lambda: model.generate(descriptions), args.device), 1)
                    seconds, (_, tokens) = best_time(_synchronized(
                        lambda: model.generate(descriptions, return_tokens=True), args.device), args.repeats)
                    lm_seconds = _lm_decode_seconds(model, descriptions, args)
                    row: Row = {
                        'section': 'generate', 'model': shape, 'device': args.device, 'precision': precision,
                        'variant': decode, 'batch': batch, 'mode': mode, 'duration_s': args.duration,
                        'ar_steps': steps, 'seconds': seconds, 'first_call_s': warmup,
                        'steps_per_s': steps / seconds, 'rtf': seconds / args.duration,
                        'lm_steps_per_s': steps / lm_seconds}
                    if args.device == 'cpu':
                        row['kernel'] = model.linear_kernel
                        row['kernel_timings_ms'] = dict(model.linear_kernel_timings)
                        weights = 'fp32' if model.linear_kernel in ('onednn', 'f_linear') else model.linear_kernel
                        _add_roofline(row, model.lm, weights, args.bandwidth)
                    if mode == 'greedy':
                        if precision == 'fp32' and decode == 'eager':
                            reference[batch] = tokens.cpu()
                        elif batch in reference:
                            agreement = (tokens.cpu() == reference[batch]).float().mean().item()
                            row['token_agreement_vs_fp32'] = agreement
                    rows.append(row)
                    report(row)
    return rows


def _lm_decode_seconds(model: tp.Any, descriptions: tp.List[str], args: argparse.Namespace) -> float:
    """Best time of the LM's token loop alone (conditions prepared, no codec decoding): the part
    that streams the weights once per step, which the roofline share is computed from."""
    attributes, _ = model._prepare_tokens_and_attributes(descriptions, None)
    gen_len = int(args.duration * model.frame_rate)

    def run() -> tp.Any:
        with model.autocast:
            return model.lm.generate(None, attributes, max_gen_len=gen_len, **model.generation_params)
    seconds, _ = best_time(_synchronized(run, args.device), args.repeats)
    return seconds


def _add_roofline(row: Row, lm: tp.Any, precision: str, bandwidth: float) -> None:
    """Bytes of weights read per step and the share of the machine's bandwidth the LM loop reaches."""
    read = roofline.bytes_per_step(lm, precision)
    row['bytes_per_step'] = read
    row['bandwidth_gb_s'] = bandwidth
    row['bandwidth_share'] = read * row['lm_steps_per_s'] / (bandwidth * 1e9)


def bench_magnet(shape: str, args: argparse.Namespace) -> tp.List[Row]:
    """Wall time of `MAGNeT.generate` (batch 1, greedy; one warm-up, best of --repeats) with few decoding steps."""
    from audiocraft.models import MAGNeT
    model = MAGNeT.get_pretrained(str(checkpoints.pretrained_folder(shape, args.cache_dir)), device=args.device)
    rows = []
    # Each pass runs the whole sequence (compute bound, tens of seconds at full size): fp32 and fp16 only.
    for precision in [p for p in args.precisions if p in ('fp32', 'fp16')]:
        _configure(model, precision, 'eager', args.device)
        model.set_generation_params(use_sampling=False, decoding_steps=args.magnet_steps)
        generate = _synchronized(lambda: model.generate(['warm lo-fi piano']), args.device)
        generate()  # warm-up: allocations and oneDNN primitive caches, as for the other sections
        seconds, _ = best_time(generate, args.repeats)
        passes = sum(args.magnet_steps)
        row = {'section': 'magnet', 'model': shape, 'device': args.device, 'precision': precision, 'batch': 1,
               'mode': 'greedy',
               'duration_s': model.duration, 'decoding_steps': list(args.magnet_steps), 'seconds': seconds,
               'steps_per_s': passes / seconds, 'rtf': seconds / model.duration}
        rows.append(row)
        report(row)
    return rows


def naive_load(folder: str) -> tp.Any:
    """AudioCraft-style loading, the 'before' of load time: build with random init, then copy weights."""
    from omegaconf import OmegaConf
    from audiocraft.models import builders
    pkg = torch.load(f'{folder}/state_dict.bin', map_location='cpu', weights_only=True)
    cfg = OmegaConf.create(pkg['xp.cfg'])
    cfg.device, cfg.dtype = 'cpu', 'float32'
    lm = builders.get_lm_model(cfg)
    lm.load_state_dict(pkg['best_state'])
    return lm.eval()


def bench_load(shape: str, args: argparse.Namespace) -> tp.List[Row]:
    """`MusicGen.get_pretrained(folder)` wall time (LM, T5 conditioner and codec), optionally vs naive."""
    from audiocraft.models import MusicGen
    folder = str(checkpoints.pretrained_folder(shape, args.cache_dir))
    rows = []
    variants: tp.List[tp.Tuple[str, tp.Callable[[], tp.Any]]] = [
        ('get_pretrained', lambda: MusicGen.get_pretrained(folder, device='cpu'))]
    if args.load_baseline:
        variants.append(('naive_build_then_load_lm_only', lambda: naive_load(folder)))
    for name, fn in variants:
        best = float('inf')
        for _ in range(max(1, args.repeats - 1)):
            gc.collect()
            start = time.perf_counter()
            model = fn()
            best = min(best, time.perf_counter() - start)
            del model
        row = {'section': 'load', 'model': shape, 'variant': name, 'seconds': best}
        rows.append(row)
        report(row)
        gc.collect()
    return rows


def bench_codec(shape: str, args: argparse.Namespace) -> tp.List[Row]:
    """EnCodec encode and decode real-time factors (batch 1) on `--codec-seconds` of audio."""
    from audiocraft.models import CompressionModel
    folder = checkpoints.pretrained_folder(args.models_for_codec, args.cache_dir)
    model = CompressionModel.get_pretrained(str(folder), device=args.device)
    rows = []
    for seconds_audio in args.codec_seconds:
        wav = torch.randn(1, model.channels, int(seconds_audio * model.sample_rate), device=args.device) * 0.1
        with torch.no_grad():
            codes, scale = model.encode(wav)
            model.decode(codes, scale)
            enc, _ = best_time(_synchronized(lambda: model.encode(wav), args.device), args.repeats)
            dec, _ = best_time(_synchronized(lambda: model.decode(codes, scale), args.device), args.repeats)
        for op, sec in [('encode', enc), ('decode', dec)]:
            row = {'section': 'codec', 'model': shape, 'device': args.device, 'op': op,
                   'duration_s': seconds_audio, 'seconds': sec, 'rtf': sec / seconds_audio}
            rows.append(row)
            report(row)
    return rows


def report(row: Row) -> None:
    """One progress line per measurement."""
    keys = ['section', 'model', 'precision', 'kernel', 'variant', 'op', 'batch', 'mode']
    label = ' '.join(str(row[k]) for k in keys if k in row)
    extra = f" {row['steps_per_s']:.2f} steps/s" if 'steps_per_s' in row else ''
    extra += f" RTF {row['rtf']:.3f}" if 'rtf' in row else ''
    extra += f" tokens={row['token_agreement_vs_fp32']:.3f}" if 'token_agreement_vs_fp32' in row else ''
    if 'bandwidth_share' in row:
        extra += (f" | LM loop {row['lm_steps_per_s']:.2f} steps/s x {row['bytes_per_step'] / 1e9:.3f} GB/step"
                  f" = {100 * row['bandwidth_share']:.0f}% of {row['bandwidth_gb_s']:.1f} GB/s")
    print(f"  {label}: {row['seconds']:.3f} s{extra}", flush=True)


def table(rows: tp.List[Row]) -> str:
    """A plain-text summary table of all rows."""
    header = ['section', 'model', 'what', 'batch', 'seconds', 'steps/s', 'RTF', 'tok=fp32', 'LM steps/s',
              'GB/step', 'bw share']
    lines = []
    for r in rows:
        what = '/'.join(str(r[k]) for k in ('precision', 'kernel', 'mode', 'variant', 'op') if k in r)
        if r['section'] == 'codec':
            what += f" {r['duration_s']:g}s"
        lines.append([r['section'], r['model'], what, str(r.get('batch', '')), f"{r['seconds']:.3f}",
                      f"{r['steps_per_s']:.2f}" if 'steps_per_s' in r else '',
                      f"{r['rtf']:.3f}" if 'rtf' in r else '',
                      f"{r['token_agreement_vs_fp32']:.3f}" if 'token_agreement_vs_fp32' in r else '',
                      f"{r['lm_steps_per_s']:.2f}" if 'lm_steps_per_s' in r else '',
                      f"{r['bytes_per_step'] / 1e9:.3f}" if 'bytes_per_step' in r else '',
                      f"{100 * r['bandwidth_share']:.0f}%" if 'bandwidth_share' in r else ''])
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)]

    def fmt(cells: tp.List[str]) -> str:
        return '| ' + ' | '.join(c.ljust(w) for c, w in zip(cells, widths)) + ' |'
    return '\n'.join([fmt(header), '|' + '|'.join('-' * (w + 2) for w in widths) + '|'] + [fmt(x) for x in lines])


def parse_args(argv: tp.Optional[tp.List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default=None, help="Write the results as JSON to this file.")
    parser.add_argument('--quick', action='store_true',
                        help="Tiny shapes, one repeat, batch 1: a smoke test of the whole suite (< 30 s).")
    parser.add_argument('--sections', default='generate,magnet,load,codec',
                        help="Comma separated subset of: generate, magnet, load, codec.")
    parser.add_argument('--models', default=None,
                        help="LM shapes for 'generate' (default musicgen-small; quick: musicgen-tiny). "
                             f"Known: {', '.join(checkpoints.SHAPES)}.")
    parser.add_argument('--load-models', default=None,
                        help="Shapes for 'load' (default musicgen-small,musicgen-medium; quick: musicgen-tiny).")
    parser.add_argument('--load-baseline', action='store_true',
                        help="Also time naive loading (random init + load_state_dict), the 'before'.")
    parser.add_argument('--precisions', default=None,
                        help="Comma separated: auto (the CPU default path), fp32, fp16, bf16, int8 "
                             "(optimize_for_cpu); on cuda fp32, fp16, bf16 (optimize_for_gpu). Default: all.")
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'], help="Device for generate and codec.")
    parser.add_argument('--decode', default=None,
                        help="Comma separated decoding paths: eager, compile (torch.compile of the step), "
                             "cudagraph (cuda only). Default: eager on cpu, eager,cudagraph on cuda.")
    parser.add_argument('--batches', default='1,4', help="Comma separated batch sizes.")
    parser.add_argument('--modes', default='greedy,sampling', help="Comma separated: greedy, sampling.")
    parser.add_argument('--duration', type=float, default=1.0, help="Seconds of audio per generation.")
    parser.add_argument('--magnet-steps', default='2,1,1,1', help="MAGNeT decoding steps per codebook.")
    parser.add_argument('--codec-seconds', default='1,10', help="Audio durations for the codec benchmark.")
    parser.add_argument('--threads', type=int, default=2, help="torch.set_num_threads value.")
    parser.add_argument('--repeats', type=int, default=3, help="Timed runs per measurement (best is kept).")
    parser.add_argument('--cache-dir', default=None, help="Where random checkpoints are written (benchmarks/.cache).")
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(',') if s.strip()]
    unknown = set(sections) - {'generate', 'magnet', 'load', 'codec'}
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}")
    args.sections = sections
    if args.quick:
        args.models = args.models or 'musicgen-tiny'
        args.load_models = args.load_models or 'musicgen-tiny'
        args.repeats = 1
        args.batches = '1'
        args.codec_seconds = '1'
    args.models = [m for m in (args.models or 'musicgen-small').split(',') if m]
    args.load_models = [m for m in (args.load_models or 'musicgen-small,musicgen-medium').split(',') if m]
    for shape in args.models + args.load_models:
        if shape not in checkpoints.SHAPES or shape.startswith('magnet'):
            parser.error(f"unknown MusicGen shape {shape!r}; known: "
                         f"{[s for s in checkpoints.SHAPES if s.startswith('musicgen')]}")
    args.magnet_model = 'magnet-tiny' if args.quick else 'magnet-small'
    args.models_for_codec = 'musicgen-tiny' if args.quick else 'musicgen-small'
    # 'auto' is the CPU default path (the fastest exact kernel for the weights, see optimize_for_cpu).
    known_precisions = (['auto'] if args.device == 'cpu' else []) + ['fp32', 'fp16', 'bf16'] + \
        (['int8'] if args.device == 'cpu' else [])
    args.precisions = [p for p in (args.precisions or ','.join(known_precisions)).split(',') if p]
    if set(args.precisions) - set(known_precisions):
        parser.error(f"--precisions on {args.device} takes {known_precisions}")
    if 'fp32' not in args.precisions:
        args.precisions.insert(0, 'fp32')
    args.decode = [d for d in (args.decode or ('eager,cudagraph' if args.device == 'cuda' else 'eager')).split(',')
                   if d]
    if set(args.decode) - {'eager', 'compile', 'cudagraph'} or ('cudagraph' in args.decode and args.device != 'cuda'):
        parser.error("--decode takes eager, compile and (on cuda) cudagraph")
    if 'eager' not in args.decode:
        args.decode.insert(0, 'eager')
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    args.batches = [int(b) for b in args.batches.split(',') if b]
    args.modes = [m for m in args.modes.split(',') if m]
    if set(args.modes) - {'greedy', 'sampling'}:
        parser.error("--modes takes greedy and/or sampling")
    args.magnet_steps = [int(s) for s in args.magnet_steps.split(',')]
    args.codec_seconds = [float(s) for s in args.codec_seconds.split(',')]
    return args


def environment(args: argparse.Namespace) -> tp.Dict[str, tp.Any]:
    return {'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
            'torch': torch.__version__, 'python': platform.python_version(), **roofline.cpu_info(),
            'stream_bandwidth_gb_s': args.bandwidth,
            'threads': torch.get_num_threads(), 'repeats': args.repeats, 'quick': args.quick,
            'device': args.device,
            'gpu': torch.cuda.get_device_name() if args.device == 'cuda' else None,
            'timing': 'best of repeats, wall clock; whole generate() call'}


def main(argv: tp.Optional[tp.List[str]] = None) -> tp.Dict[str, tp.Any]:
    args = parse_args(argv)
    checkpoints.use_offline_hub()
    torch.set_num_threads(args.threads)
    rows: tp.List[Row] = []
    info = roofline.cpu_info()
    args.bandwidth = roofline.stream_bandwidth(args.threads, megabytes=64 if args.quick else 512)
    print(f"{info['cpu']} ({' '.join(info['cpu_flags'])}): streams {args.bandwidth:.1f} GB/s "
          f"(read, {args.threads} threads, best of 5)", flush=True)
    print(f"Benchmarks on {args.threads} threads, best of {args.repeats}:", flush=True)
    if 'generate' in args.sections:
        for shape in args.models:
            rows += bench_generate(shape, args)
    if 'magnet' in args.sections:
        rows += bench_magnet(args.magnet_model, args)
    if 'codec' in args.sections:
        rows += bench_codec('encodec-tiny' if args.quick else 'encodec-32khz', args)
    if 'load' in args.sections:
        for shape in args.load_models:
            rows += bench_load(shape, args)
    results = {'environment': environment(args), 'results': rows}
    print(table(rows))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=2)
        print(f"Wrote {args.out}")
    return results


if __name__ == '__main__':
    main(sys.argv[1:])
