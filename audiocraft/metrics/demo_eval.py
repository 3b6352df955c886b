"""Measure a text-to-music model against the synthetic-music prompts, from its audio alone.

    python -m audiocraft.metrics.demo_eval --model demo --pairs 8 --seed 1 --out eval.json

For each pair it generates a slow and a fast prompt (tempo), a drums and a no-drums prompt
(drums), and one prompt with a random key per clip (key), each `--duration` seconds with
a fresh seed, then scores them with `audiocraft.metrics.adherence`. `--codec` also reports
the codec's reconstruction (SI-SNR, mel distance) on held-out synthetic clips.
"""
import argparse
import json
from pathlib import Path
import time
import typing as tp

import numpy as np
import torch

from . import adherence
from ..data import synth_music


def _prompt(rng: np.random.Generator, tempo: str, drums: bool, key: str) -> str:
    instruments = [str(rng.choice(['piano', 'strings', 'plucked guitar'])), 'bass'] + (['drums'] if drums else [])
    mood = ('happy' if key.endswith('major') else 'sad') + (' energetic' if tempo == 'fast' else ' calm')
    return f"{mood} {tempo} tune with {' and '.join(instruments)} in {key}"


def make_prompts(pairs: int, seed: int) -> tp.List[tp.Dict[str, tp.Any]]:
    """Contrasting prompt pairs: same key and instruments, one factor (tempo or drums) flipped."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(pairs):
        key = f"{synth_music.NOTE_NAMES[int(rng.integers(12))]} {rng.choice(['major', 'minor'])}"
        drums = bool(rng.random() < 0.5)
        for tempo in ('slow', 'fast'):
            out.append({'pair': i, 'factor': 'tempo', 'tempo': tempo, 'drums': drums, 'key': key,
                        'text': _prompt(rng, tempo, drums, key)})
        tempo = str(rng.choice(['slow', 'fast']))
        for has_drums in (True, False):
            out.append({'pair': i, 'factor': 'drums', 'tempo': tempo, 'drums': has_drums, 'key': key,
                        'text': _prompt(rng, tempo, has_drums, key)})
    return out


def score(prompts: tp.List[tp.Dict[str, tp.Any]], wavs: tp.List[np.ndarray], sample_rate: int) -> tp.Dict[str, float]:
    """Pair accuracies for tempo and drums (chance 0.5) and key accuracy (chance 1/24)."""
    described = [adherence.describe(wav, sample_rate) for wav in wavs]
    tempo_right, drums_right = [], []
    for i in range(0, len(prompts), 4):
        slow, fast, drum, no_drum = described[i:i + 4]
        tempo_right.append(float(fast.bpm > slow.bpm))
        drums_right.append(float(drum.percussive_share > no_drum.percussive_share))
    keys = [d.key == p['key'] for p, d in zip(prompts, described)]
    tonics = [d.tonic == p['key'].split()[0] for p, d in zip(prompts, described)]
    classes = [adherence.tempo_class(d.bpm) == p['tempo'] for p, d in zip(prompts, described)]
    return {'tempo_pairs': float(np.mean(tempo_right)), 'drums_pairs': float(np.mean(drums_right)),
            'key': float(np.mean(keys)), 'tonic': float(np.mean(tonics)), 'tempo_class': float(np.mean(classes)),
            'clips': len(wavs)}


def evaluate_model(model: tp.Any, pairs: int, seed: int, duration: float, batch_size: int = 4,
                   cfg_coef: tp.Optional[float] = None) -> tp.Dict[str, tp.Any]:
    """Generate the prompts of `make_prompts(pairs, seed)` with `model` and score them.

    `cfg_coef` overrides the model's classifier-free guidance coefficient (None: its default).
    """
    prompts = make_prompts(pairs, seed)
    if cfg_coef is None:
        model.set_generation_params(duration=duration)
    else:
        model.set_generation_params(duration=duration, cfg_coef=cfg_coef)
    wavs: tp.List[np.ndarray] = []
    start = time.time()
    for offset in range(0, len(prompts), batch_size):
        torch.manual_seed(seed * 1000 + offset)  # a fresh seed per batch, reproducible
        batch = [p['text'] for p in prompts[offset:offset + batch_size]]
        wavs.extend(w[0].numpy() for w in model.generate(batch))
    elapsed = time.time() - start
    result = score(prompts, wavs, model.sample_rate)
    result.update({'seconds_per_clip': elapsed / len(prompts), 'duration': duration, 'seed': seed})
    return result


def render_prompts(prompts: tp.List[tp.Dict[str, tp.Any]], seed: int, duration: float,
                   sample_rate: int = 16000) -> tp.List[np.ndarray]:
    """Procedural clips that match each prompt (tempo class, drums, key, harmony instrument, bass).

    Scored like generated audio, they give the ceiling of the checks: what a model that
    reproduced its training data exactly would get.
    """
    rng = np.random.default_rng(seed)
    instruments = {'piano': 'piano', 'strings': 'strings', 'plucked guitar': 'pluck'}
    wavs = []
    for p in prompts:
        tonic_name, mode = p['key'].split()
        low, high = synth_music.TEMPI[p['tempo']]
        harmony = next(name for word, name in instruments.items() if word in p['text'])
        progressions = synth_music.PROGRESSIONS[mode]
        params = synth_music.ClipParams(
            tonic=synth_music.NOTE_NAMES.index(tonic_name), mode=mode, bpm=int(rng.integers(low, high + 1)),
            tempo=p['tempo'], harmony=harmony, lead=False, bass=True, drums=p['drums'],
            progression=progressions[int(rng.integers(len(progressions)))])
        wavs.append(synth_music.render(params, duration, sample_rate, rng))
    return wavs


def evaluate_ground_truth(compression_model: tp.Any, pairs: int, seed: int,
                          duration: float) -> tp.Dict[str, tp.Dict[str, tp.Any]]:
    """Scores of rendered clips of the prompts, as rendered and after a codec round trip."""
    prompts = make_prompts(pairs, seed)
    sr = compression_model.sample_rate
    wavs = render_prompts(prompts, seed, duration, sr)
    decoded = []
    for wav in wavs:
        with torch.no_grad():
            codes, scale = compression_model.encode(torch.from_numpy(wav)[None, None])
            decoded.append(compression_model.decode(codes, scale)[0, 0, :len(wav)].numpy())
    return {'rendered': score(prompts, wavs, sr), 'codec': score(prompts, decoded, sr)}


def si_snr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Scale-invariant SNR in dB."""
    reference = reference - reference.mean()
    estimate = estimate - estimate.mean()
    projection = (estimate @ reference) / (reference @ reference + 1e-12) * reference
    noise = estimate - projection
    return float(10 * np.log10((projection @ projection + 1e-12) / (noise @ noise + 1e-12)))


def mel_distance(estimate: np.ndarray, reference: np.ndarray, sample_rate: int) -> float:
    """Mean absolute difference of log mel spectrograms (64 bands, natural log)."""
    from ..modules.spectral import MelSpectrogram  # type: ignore
    mel = MelSpectrogram(sample_rate=sample_rate, n_fft=1024, hop_length=256, n_mels=64)
    a = torch.log(mel(torch.from_numpy(estimate)[None]) + 1e-5)
    b = torch.log(mel(torch.from_numpy(reference)[None]) + 1e-5)
    return float((a - b).abs().mean())


def evaluate_codec(compression_model: tp.Any, clips: int, seed: int, duration: float) -> tp.Dict[str, float]:
    """SI-SNR and mel distance of codec round trips on synthetic clips of a held-out seed."""
    snrs, mels = [], []
    sr = compression_model.sample_rate
    for index in range(clips):
        wav, _, _ = synth_music.make_clip(seed, index, duration, sr)
        with torch.no_grad():
            codes, scale = compression_model.encode(torch.from_numpy(wav)[None, None])
            out = compression_model.decode(codes, scale)[0, 0, :len(wav)].numpy()
        snrs.append(si_snr(out, wav))
        mels.append(mel_distance(out, wav, sr))
    return {'si_snr_db': float(np.mean(snrs)), 'mel_distance': float(np.mean(mels)), 'clips': clips}


def main(argv: tp.Optional[tp.List[str]] = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', default='demo')
    parser.add_argument('--pairs', type=int, default=8)
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--duration', type=float, default=8.)
    parser.add_argument('--cfg-coef', type=float, default=None, help="guidance coefficient (default: the model's)")
    parser.add_argument('--codec', type=int, default=0, help="held-out clips for the codec check (0: skip)")
    parser.add_argument('--ground-truth', action='store_true',
                        help="also score rendered clips of the prompts, as is and through the codec (the ceiling)")
    parser.add_argument('--out', type=Path, default=None)
    args = parser.parse_args(argv)
    from ..models import MusicGen
    model = MusicGen.get_pretrained(args.model, device='cpu')
    adherence_result = evaluate_model(model, args.pairs, args.seed, args.duration, cfg_coef=args.cfg_coef)
    result: tp.Dict[str, tp.Any] = {'model': args.model, 'adherence': adherence_result}
    if args.ground_truth:
        result['ground_truth'] = evaluate_ground_truth(model.compression_model, args.pairs, args.seed, args.duration)
    if args.codec:
        result['codec'] = evaluate_codec(model.compression_model, args.codec, seed=10_000 + args.seed,
                                         duration=args.duration)
    print(json.dumps(result, indent=1))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == '__main__':
    main()
