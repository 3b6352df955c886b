"""`python -m audiocraft.metrics METRIC REF_DIR GEN_DIR`: one metric over two folders of audio files.

FAD compares the two sets as wholes; KLD, ViSQOL and chroma compare files paired by their path
relative to each folder; CLAP scores each generated file against its description, read from
`<stem>.txt` or the `description` of `<stem>.json` (as written by the solvers) beside it.
"""
import argparse
import json
from pathlib import Path
import sys
import typing as tp

import torch
from tqdm import tqdm

AUDIO_SUFFIXES = ('.wav', '.mp3', '.flac', '.ogg', '.m4a')
METRICS = ('fad', 'kld', 'clap', 'visqol', 'chroma')


def list_audio(folder: Path) -> tp.Dict[str, Path]:
    """Audio files under `folder`, keyed by their relative path without suffix."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of audio files.")
    files = {str(p.relative_to(folder).with_suffix('')): p for p in sorted(folder.rglob('*'))
             if p.suffix.lower() in AUDIO_SUFFIXES}
    if not files:
        raise FileNotFoundError(f"No audio files ({', '.join(AUDIO_SUFFIXES)}) under {folder}.")
    return files


def paired(ref_dir: Path, gen_dir: Path) -> tp.List[tp.Tuple[Path, Path]]:
    refs, gens = list_audio(ref_dir), list_audio(gen_dir)
    common = sorted(set(refs) & set(gens))
    if not common:
        raise FileNotFoundError(f"No file of {gen_dir} has a counterpart with the same relative name in {ref_dir}.")
    missing = len(set(gens) - set(refs))
    if missing:
        print(f"warning: {missing} generated files have no reference and are skipped.", file=sys.stderr)
    return [(refs[key], gens[key]) for key in common]


def _read(path: Path) -> tp.Tuple[torch.Tensor, int]:
    from ..data.audio import audio_read
    return audio_read(path)


def _read_pair(ref_path: Path, gen_path: Path) -> tp.Tuple[torch.Tensor, torch.Tensor, int]:
    """Both files at the reference's rate and channels, cropped to the shorter one."""
    from ..data.audio_utils import convert_audio
    ref, rate = _read(ref_path)
    gen, gen_rate = _read(gen_path)
    gen = convert_audio(gen, gen_rate, rate, ref.shape[0])
    length = min(ref.shape[-1], gen.shape[-1])
    return ref[..., :length], gen[..., :length], rate


def _description(path: Path) -> str:
    txt, meta = path.with_suffix('.txt'), path.with_suffix('.json')
    if txt.is_file():
        return txt.read_text().strip()
    if meta.is_file():
        data = json.loads(meta.read_text())
        text = data.get('description') or data.get('conditioning', {}).get('description')
        if text:
            return str(text)
    raise FileNotFoundError(f"No description for {path}: write it in {txt.name} (or 'description' in {meta.name}).")


def run_metric(args: argparse.Namespace) -> tp.Dict[str, float]:
    """Compute `args.metric`; the first key of the result is the metric's main number."""
    from . import (ChromaCosineSimilarityMetric, CLAPTextConsistencyMetric, FrechetAudioDistanceMetric,
                   PasstKLDivergenceMetric, ViSQOL)
    ref_dir, gen_dir = Path(args.ref_dir), Path(args.gen_dir)
    one = torch.tensor([1])
    if args.metric == 'fad':
        fad = FrechetAudioDistanceMetric(args.vggish, args.vggish_pca, postprocess=not args.no_pca).to(args.device)
        for which, folder in (('targets', ref_dir), ('preds', gen_dir)):
            for path in tqdm(list(list_audio(folder).values()), desc=f'fad {which}', file=sys.stderr):
                wav, rate = _read(path)
                fad.update_embeddings(**{which: fad.embed(wav, rate)})
        return {'fad': fad.compute()}
    pairs = paired(ref_dir, gen_dir)
    progress = tqdm(pairs, desc=args.metric, file=sys.stderr)
    if args.metric == 'kld':
        kld = PasstKLDivergenceMetric(args.passt_length, args.passt).to(args.device)
        for ref_path, gen_path in progress:
            ref, gen, rate = _read_pair(ref_path, gen_path)
            kld.update(gen[None], ref[None], torch.tensor([ref.shape[-1]]), one * rate)
        return kld.compute()
    if args.metric == 'visqol':
        visqol = ViSQOL(bin=args.visqol_bin, mode=args.visqol_mode, model=args.visqol_model)
        scores = []
        for ref_path, gen_path in progress:
            ref, gen, rate = _read_pair(ref_path, gen_path)
            scores.append(visqol(ref[None], gen[None], rate))
        return {'visqol': sum(scores) / len(scores)}
    if args.metric == 'chroma':
        chroma = ChromaCosineSimilarityMetric(sample_rate=args.chroma_rate, n_chroma=12, radix2_exp=args.radix2_exp,
                                              argmax=True)
        for ref_path, gen_path in progress:
            ref, gen, rate = _read_pair(ref_path, gen_path)
            chroma.update(gen[None], ref[None], torch.tensor([ref.shape[-1]]), one * rate)
        return {'chroma_cosine': chroma.compute()}
    assert args.metric == 'clap'
    if args.clap is None:
        raise ValueError("clap needs --clap PATH: a LAION-CLAP checkpoint (see docs/METRICS.md).")
    clap = CLAPTextConsistencyMetric(args.clap, model_arch=args.clap_arch).to(args.device)
    for _, gen_path in progress:
        wav, rate = _read(gen_path)
        clap.update(wav[None], [_description(gen_path)], torch.tensor([wav.shape[-1]]), one * rate)
    return {'text_consistency': clap.compute()}


def build_parser() -> argparse.ArgumentParser:
    from .passt import PASST_VARIANTS
    from .vggish import PCA_URL, VGGISH_URL
    parser = argparse.ArgumentParser(prog='python -m audiocraft.metrics', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('metric', choices=METRICS)
    parser.add_argument('ref_dir', help="folder of reference audio files")
    parser.add_argument('gen_dir', help="folder of generated audio files")
    parser.add_argument('--json', action='store_true', help="print a JSON object with every value")
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--vggish', default=VGGISH_URL, help="torchvggish weights, path or URL (fad)")
    parser.add_argument('--vggish-pca', default=PCA_URL, help="torchvggish PCA parameters, path or URL (fad)")
    parser.add_argument('--no-pca', action='store_true', help="raw VGGish embeddings, no PCA (fad)")
    parser.add_argument('--passt', default=None, help="PaSST checkpoint, path or URL (kld; default: release)")
    parser.add_argument('--passt-length', type=int, default=10, choices=sorted(PASST_VARIANTS),
                        help="seconds of the PaSST model and of the segments (kld)")
    parser.add_argument('--clap', default=None, help="LAION-CLAP checkpoint path (clap)")
    parser.add_argument('--clap-arch', default='HTSAT-base',
                        help="CLAP audio encoder: HTSAT-tiny, HTSAT-base or HTSAT-large (clap)")
    parser.add_argument('--visqol-bin', default=None, help="bazel-built ViSQOL folder (visqol; default: visqol-python)")
    parser.add_argument('--visqol-mode', default='audio', choices=['audio', 'speech'])
    parser.add_argument('--visqol-model', default='libsvm_nu_svr_model.txt')
    parser.add_argument('--chroma-rate', type=int, default=32000, help="chroma extraction rate (chroma)")
    parser.add_argument('--radix2-exp', type=int, default=14, help="chroma window 2**radix2_exp (chroma)")
    return parser


def main(argv: tp.Optional[tp.List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with torch.no_grad():
            values = run_metric(args)
    except (OSError, ImportError, ValueError, RuntimeError) as exc:  # OSError: also hub files (CLAP's roberta-base)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(values))
    else:
        key = next(iter(values))
        print(f"{key}: {values[key]:.6g}")
    return 0
