"""Time `MusicGen.generate_with_chroma` (demucs stems + chroma + generation) on the golden melody case.

`python -m benchmarks.melody [--repeats 3] [--rate 32000] [--threads 2]` prints the best of N
wall-clock times and checks the golden tokens (at the case's own 32 kHz rate). Needs the tiny
htdemucs of the reference folder: TORCH_HOME and HF_HUB_CACHE default to ../shared/reference.
"""
import argparse
import json
import os
from pathlib import Path
import time

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--rate', type=int, default=32000, help="sample rate the melody is given at")
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--reference', default=str(ROOT.parent / 'shared' / 'reference'))
    args = parser.parse_args()
    os.environ.setdefault('TORCH_HOME', str(Path(args.reference) / 'torch_home'))
    os.environ.setdefault('HF_HUB_CACHE', str(Path(args.reference) / 'hf_cache'))
    import torch
    from audiocraft.data.audio_utils import convert_audio
    from audiocraft.models import MusicGen
    torch.set_num_threads(args.threads)
    case = ROOT / 'tests' / 'reference' / 'cases' / 'musicgen_melody_tiny'
    io = torch.load(case / 'io.pt', weights_only=False)
    gen = io['generations']['chroma']
    model = MusicGen.get_pretrained(str(case), device='cpu')
    model.set_generation_params(**gen['params'])
    melody = io['chroma.melody']
    if args.rate != model.sample_rate:
        melody = convert_audio(melody, model.sample_rate, args.rate, melody.shape[1])
    times = []
    tokens = None
    for _ in range(args.repeats):
        start = time.perf_counter()
        _, tokens = model.generate_with_chroma(gen['call']['descriptions'], melody, args.rate, return_tokens=True)
        times.append(time.perf_counter() - start)
    result = {'best_s': round(min(times), 3), 'times_s': [round(t, 3) for t in times], 'rate': args.rate}
    if args.rate == model.sample_rate:
        result['tokens_equal'] = bool(torch.equal(tokens, gen['tokens']))
    print(json.dumps(result))


if __name__ == '__main__':
    main()
