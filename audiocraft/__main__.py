"""Command line interface: ``python -m audiocraft generate`` (console script ``audiocraft``).

Stdout carries only the paths of the written files, one per line, so the command composes
with other tools; progress and status messages go to stderr. Mistakes a user can fix
(bad model name, missing file, bad number) end with a one-line message and exit code 2.
"""
import argparse
import os
import re
import sys
import typing as tp
from pathlib import Path

DEFAULT_MODEL = 'facebook/musicgen-small'
FAMILIES = ('musicgen', 'audiogen', 'magnet')
FORMATS = ('wav', 'mp3', 'ogg', 'flac')
STRATEGIES = ('loudness', 'peak', 'rms', 'clip')
DEFAULT_DURATION = 10.0  # seconds, for the autoregressive families
LONG_DURATION = 300.0  # seconds; longer generations ask for confirmation (see models.generation_params)
EXIT_USAGE = 2


class CLIError(Exception):
    """A mistake the user can fix; reported as one line on stderr with exit code 2."""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except None ones (their help says what happens) and those the help already gives."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or '(default' in (action.help or ''):
            return action.help or ''
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``audiocraft`` command (``generate`` sub-command)."""
    parser = argparse.ArgumentParser(
        prog='audiocraft',
        description='AudioCraft-compatible audio generation (MusicGen, AudioGen, MAGNeT).')
    parser.add_argument('--version', action='store_true', help='print the library version and exit')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    gen = sub.add_parser(
        'generate', formatter_class=_HelpFormatter,
        help='generate audio from text prompts, a melody or an audio prompt',
        description='Generate audio with a pretrained model and write one file per sample. '
                    'Without prompts, generates unconditionally.',
        epilog='Offline use: pass a local folder holding state_dict.bin and '
               'compression_state_dict.bin with --model, or use --model debug for a tiny random model.')
    gen.add_argument('prompts', nargs='*', metavar='PROMPT', help='text descriptions, one sample each')
    gen.add_argument('--prompts-file', type=Path, default=None,
                     help='UTF-8 file with one prompt per line (blank lines and lines starting with # are skipped)')
    gen.add_argument('--model', '-m', default=DEFAULT_MODEL,
                     help="Hugging Face repo id, short name (small, medium, large, melody), 'demo' (small "
                          "shipped model, offline; the default's fallback when the hub is unreachable), "
                          "'debug' (tiny random model, offline) or a local folder")
    gen.add_argument('--family', choices=('auto',) + FAMILIES, default='auto',
                     help='model family; auto reads it from the checkpoint or the name')
    gen.add_argument('--device', default='auto', help="'cpu', 'cuda', 'cuda:1', ... or 'auto'")
    gen.add_argument('--duration', type=float, default=None,
                     help=f'seconds to generate (default: {DEFAULT_DURATION:g} for MusicGen/AudioGen; '
                          'MAGNeT models have a fixed length)')
    gen.add_argument('--num-samples', type=int, default=1, help='samples per prompt (or unconditional samples)')
    gen.add_argument('--batch-size', type=int, default=4, help='samples generated together')
    gen.add_argument('--top-k', type=int, default=None, help="top-k sampling (default: the model's)")
    gen.add_argument('--top-p', type=float, default=None, help="nucleus sampling, 0 disables (default: the model's)")
    gen.add_argument('--temperature', type=float, default=None, help="softmax temperature (default: the model's)")
    gen.add_argument('--cfg-coef', type=float, default=None,
                     help="classifier-free guidance coefficient; for MAGNeT the maximum one (default: the model's)")
    gen.add_argument('--min-cfg-coef', type=float, default=None, help="MAGNeT only: final guidance coefficient")
    gen.add_argument('--decoding-steps', default=None,
                     help='MAGNeT only: comma-separated steps per codebook, e.g. 20,10,10,10')
    gen.add_argument('--span-arrangement', choices=('nonoverlap', 'stride1'), default=None,
                     help='MAGNeT only: how masked spans are laid out')
    gen.add_argument('--greedy', action='store_true', help='argmax decoding instead of sampling (deterministic)')
    gen.add_argument('--seed', type=int, default=None, help='random seed for reproducible sampling')
    gen.add_argument('--melody', type=Path, default=None,
                     help='audio file whose melody (chroma) conditions the music; melody models only')
    gen.add_argument('--continuation', type=Path, default=None,
                     help='audio file to continue; the output starts with it')
    gen.add_argument('--output', '-o', type=Path, default=Path('outputs'), help='folder for the written files')
    gen.add_argument('--format', choices=FORMATS, default='wav', help='audio file format')
    gen.add_argument('--strategy', choices=STRATEGIES, default='loudness', help='volume normalisation strategy')
    gen.add_argument('--no-progress', action='store_true', help='hide the progress bar')
    gen.add_argument('--yes', '-y', action='store_true',
                     help=f'generate durations above {LONG_DURATION:g} s without asking for confirmation')
    from .models.hf_interop.cli import add_convert_parser
    add_convert_parser(sub)
    return parser


# ---- model resolution ----

def _looks_like_path(name: str) -> bool:
    """Whether `name` is meant as a local path rather than a hub id or short name."""
    return (name.startswith(('.', '/', '~')) or name.count('/') > 1 or os.sep != '/' and os.sep in name
            or name.endswith(('.bin', '.th', '.pt')))


def _family_from_checkpoint(path: Path) -> tp.Optional[str]:
    """Read the training solver name from a checkpoint's embedded Hydra config."""
    from .utils.safe_load import safe_torch_load
    pkg = safe_torch_load(path, map_location='cpu', mmap=True, what='checkpoint')
    cfg = pkg.get('xp.cfg') if isinstance(pkg, dict) else None
    if cfg is None:
        return None
    if isinstance(cfg, str):
        from omegaconf import OmegaConf
        cfg = OmegaConf.create(cfg)
    solver = str(cfg.get('solver', '')).lower()
    lm_model = str(cfg.get('lm_model', '')).lower()
    if 'magnet' in solver or 'magnet' in lm_model:
        return 'magnet'
    if 'audiogen' in solver:
        return 'audiogen'
    if 'musicgen' in solver:
        return 'musicgen'
    return None


def _family_from_name(name: str) -> str:
    lowered = name.lower()
    if 'magnet' in lowered:
        return 'magnet'
    if 'audiogen' in lowered:
        return 'audiogen'
    return 'musicgen'


def resolve_model(name: str, family: str = 'auto') -> tp.Tuple[str, str]:
    """Check a model argument and pick its family; returns (name for get_pretrained, family)."""
    path = Path(name).expanduser()
    local = path.exists()
    if not local and _looks_like_path(name):
        raise CLIError(f"model folder or file '{name}' does not exist; pass a folder holding state_dict.bin "
                       "and compression_state_dict.bin, a hub id such as facebook/musicgen-small, or 'debug'")
    if local and path.is_dir() and not (path / 'state_dict.bin').exists():
        raise CLIError(f"model folder '{name}' has no state_dict.bin; it must hold state_dict.bin and "
                       "compression_state_dict.bin as saved by AudioCraft")
    if family != 'auto':
        return (str(path) if local else name), family
    if local:
        ckpt = path / 'state_dict.bin' if path.is_dir() else path
        try:
            found = _family_from_checkpoint(ckpt)
        except Exception as exc:  # unreadable file: say so instead of guessing
            raise CLIError(f"could not read checkpoint '{ckpt}': {_one_line(exc)}") from exc
        return str(path), found or _family_from_name(name)
    return name, _family_from_name(name)


def _pick_device(device: str) -> str:
    import torch
    if device == 'auto':
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise CLIError(f"--device {device} was asked for but CUDA is not available; use --device cpu")
    if not re.fullmatch(r'cpu|cuda(:\d+)?|mps', device):
        raise CLIError(f"unknown --device '{device}'; use cpu, cuda, cuda:N or auto")
    return device


def load_model(name: str, family: str, device: str, fallback_to_demo: bool = False) -> tp.Any:
    """Load a pretrained model of the given family, turning load failures into a CLIError.

    With `fallback_to_demo` (the default --model), an unreachable hub loads the shipped 'demo' MusicGen.
    """
    from . import models
    cls = {'musicgen': models.MusicGen, 'audiogen': models.AudioGen, 'magnet': models.MAGNeT}[family]
    try:
        if fallback_to_demo and family == 'musicgen':
            from .models.musicgen import get_pretrained_or_demo
            return get_pretrained_or_demo(name, device=device, announce=lambda line: print(line, file=sys.stderr))
        return cls.get_pretrained(name, device=device)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        message = _one_line(exc)
        if name in message and 'folder' in message:  # the loader already says what to do
            raise CLIError(message) from exc
        raise CLIError(
            f"could not load model '{name}' ({family}): {message}. Check the name, or pass a local "
            "folder holding state_dict.bin and compression_state_dict.bin with --model PATH (the Hugging Face "
            "Hub must be reachable for hub names that are not cached yet; HF_HUB_OFFLINE=1 uses the cache only)"
        ) from exc


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# ---- inputs ----

def read_prompts(args: argparse.Namespace) -> tp.List[tp.Optional[str]]:
    """Prompts from the command line then the prompts file, each repeated `num_samples` times.

    An empty list means unconditional generation (or continuation / melody without text)."""
    prompts = list(args.prompts)
    if args.prompts_file is not None:
        if not args.prompts_file.is_file():
            raise CLIError(f"prompts file '{args.prompts_file}' does not exist")
        try:
            lines = args.prompts_file.read_text(encoding='utf-8').splitlines()
        except UnicodeDecodeError as exc:
            raise CLIError(f"prompts file '{args.prompts_file}' is not UTF-8 text") from exc
        from_file = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith('#')]
        if not from_file:
            raise CLIError(f"prompts file '{args.prompts_file}' holds no prompt (one per line)")
        prompts += from_file
    return [p for p in prompts for _ in range(args.num_samples)]


def _check_numbers(args: argparse.Namespace) -> None:
    from .models.generation_params import validate_generation_params
    if args.num_samples < 1:
        raise CLIError(f"--num-samples must be at least 1, got {args.num_samples}")
    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be at least 1, got {args.batch_size}")
    for key in ('duration', 'top_k', 'top_p', 'temperature', 'cfg_coef', 'min_cfg_coef'):
        try:
            validate_generation_params(**{key: getattr(args, key)})
        except ValueError as exc:
            raise CLIError(f"--{key.replace('_', '-')}: {exc}") from exc
    if args.melody is not None and args.continuation is not None:
        raise CLIError("--melody and --continuation cannot be combined; pick one")
    for flag, value in (('--melody', args.melody), ('--continuation', args.continuation)):
        if value is not None and not value.is_file():
            raise CLIError(f"{flag} file '{value}' does not exist")


def _read_audio(path: Path, flag: str) -> tp.Tuple[tp.Any, int]:
    from .data.audio import audio_read
    try:
        wav, sr = audio_read(path)
    except Exception as exc:  # any decoder failure is a bad input file here
        raise CLIError(f"could not read {flag} file '{path}': {_one_line(exc)}") from exc
    if wav.shape[-1] == 0:
        raise CLIError(f"{flag} file '{path}' holds no audio")
    return wav, sr


def _decoding_steps(text: str) -> tp.List[int]:
    try:
        steps = [int(s) for s in text.split(',')]
    except ValueError as exc:
        raise CLIError(f"--decoding-steps must be comma-separated integers, got '{text}'") from exc
    if not steps or min(steps) < 1:
        raise CLIError(f"--decoding-steps must be positive integers, got '{text}'")
    return steps


def generation_params(args: argparse.Namespace, family: str, model: tp.Any) -> tp.Dict[str, tp.Any]:
    """Keyword arguments for `model.set_generation_params`; only what the user set, plus duration."""
    params: tp.Dict[str, tp.Any] = {}
    if args.greedy:
        params['use_sampling'] = False
    for key in ('top_k', 'top_p', 'temperature'):
        if getattr(args, key) is not None:
            params[key] = getattr(args, key)
    if family == 'magnet':
        fixed = float(getattr(model, 'duration', model.max_duration))
        if args.duration is not None and abs(args.duration - fixed) > 1e-6:
            raise CLIError(f"MAGNeT models generate a fixed length; this one makes {fixed:g} s. "
                           "Omit --duration or pass that value")
        if args.cfg_coef is not None:
            params['max_cfg_coef'] = args.cfg_coef
        if args.min_cfg_coef is not None:
            params['min_cfg_coef'] = args.min_cfg_coef
        if args.decoding_steps is not None:
            params['decoding_steps'] = _decoding_steps(args.decoding_steps)
        if args.span_arrangement is not None:
            params['span_arrangement'] = args.span_arrangement
        return params
    for flag in ('min_cfg_coef', 'decoding_steps', 'span_arrangement'):
        if getattr(args, flag) is not None:
            raise CLIError(f"--{flag.replace('_', '-')} only applies to MAGNeT models, not {family}")
    params['duration'] = args.duration if args.duration is not None else DEFAULT_DURATION
    if args.cfg_coef is not None:
        params['cfg_coef'] = args.cfg_coef
    return params


# ---- output ----

def output_stem(index: int, prompt: tp.Optional[str]) -> str:
    """File stem for one sample: its index then a short slug of its prompt."""
    slug = re.sub(r'[^a-z0-9]+', '_', (prompt or 'unconditional').lower()).strip('_')[:48].rstrip('_')
    return f'{index:02d}_{slug or "empty"}'


class _ProgressBar:
    """Adapter from the models' progress callback to a tqdm bar on stderr."""

    def __init__(self, desc: str, enabled: bool):
        self.desc = desc
        self.enabled = enabled
        self.bar: tp.Any = None

    def __call__(self, generated: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=self.desc, unit='step', file=sys.stderr, leave=False)
        if self.bar.total != total:
            self.bar.total = total
        self.bar.n = min(generated, total)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _run_batch(model: tp.Any, prompts: tp.List[tp.Optional[str]], unconditional: bool,
               melody: tp.Any, continuation: tp.Any) -> tp.Any:
    """Generate one batch with the API matching the inputs; returns waveforms [B, C, T]."""
    if melody is not None:
        wav, sr = melody
        return model.generate_with_chroma(prompts, wav[None].expand(len(prompts), -1, -1), sr, progress=True)
    if continuation is not None:
        wav, sr = continuation
        batch = wav[None].expand(len(prompts), -1, -1)
        return model.generate_continuation(batch, sr, None if unconditional else prompts, progress=True)
    if unconditional:
        return model.generate_unconditional(len(prompts), progress=True)
    return model.generate(prompts, progress=True)


def check_output(output: Path, format: str) -> None:
    """Fail before generating if the results could not be written: `output` is a file, its
    folder cannot be created or written, or `format` has no encoder here."""
    from .data.audio import format_write_problem
    if output.exists() and not output.is_dir():
        raise CLIError(f"--output '{output}' is an existing file; pass a folder (it is created if needed)")
    existing = output
    while not existing.exists():  # the closest existing parent is where folders get created
        existing = existing.parent
    if not existing.is_dir():
        raise CLIError(f"--output '{output}' cannot be created: '{existing}' is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CLIError(f"--output '{output}' is not writable ('{existing}' is read-only); pass another folder")
    problem = format_write_problem(format)
    if problem is not None:
        raise CLIError(f"--format {format}: {problem}")


def confirm_long_generation(duration: float, assume_yes: bool) -> None:
    """Ask before generating more than LONG_DURATION seconds (or require --yes when not interactive)."""
    if duration <= LONG_DURATION or assume_yes:
        return
    question = (f"--duration {duration:g} s is a long generation (above {LONG_DURATION:g} s it can take hours, "
                "and the model re-generates overlapping windows past its training length).")
    if not sys.stdin.isatty():
        raise CLIError(f"{question} Pass --yes to confirm")
    print(f"{question} Continue? [y/N] ", end='', file=sys.stderr, flush=True)
    if sys.stdin.readline().strip().lower() not in ('y', 'yes'):
        raise CLIError("cancelled; pass a shorter --duration")


def run_generate(args: argparse.Namespace) -> tp.List[Path]:
    """The `generate` command; returns the written paths."""
    _check_numbers(args)
    if args.duration is not None:
        confirm_long_generation(args.duration, args.yes)
    check_output(args.output, args.format)
    prompts = read_prompts(args)
    name, family = resolve_model(args.model, args.family)
    device = _pick_device(args.device)
    melody = _read_audio(args.melody, '--melody') if args.melody is not None else None
    continuation = _read_audio(args.continuation, '--continuation') if args.continuation is not None else None
    if melody is not None and family != 'musicgen':
        raise CLIError(f"--melody needs a MusicGen melody model, not a {family} model")

    print(f'Loading {name} ({family}) on {device}...', file=sys.stderr)
    model = load_model(name, family, device, fallback_to_demo=args.model == DEFAULT_MODEL)
    if melody is not None and 'self_wav' not in getattr(model.lm.condition_provider, 'conditioners', {}):
        raise CLIError(f"model '{args.model}' takes no melody; use a melody model such as facebook/musicgen-melody")
    params = generation_params(args, family, model)
    if continuation is not None and 'duration' in params:
        prompt_seconds = continuation[0].shape[-1] / continuation[1]
        if prompt_seconds >= params['duration']:
            raise CLIError(f"--continuation file lasts {prompt_seconds:.2f} s; --duration (the total length, "
                           f"now {params['duration']:g} s) must be longer")
    if 'duration' in params and args.duration is None:
        confirm_long_generation(params['duration'], args.yes)
    try:
        model.set_generation_params(**params)
    except ValueError as exc:
        raise CLIError(_one_line(exc)) from exc
    duration = float(params.get('duration', getattr(model, 'duration', model.max_duration)))
    print(f"Generating {duration:g} s of audio per sample"
          f"{' (the default; set it with --duration)' if args.duration is None else ''}.", file=sys.stderr)

    unconditional = not prompts
    if unconditional:
        prompts = [None] * args.num_samples
    if args.seed is not None:
        import torch
        torch.manual_seed(args.seed)

    from .data.audio import audio_write
    args.output.mkdir(parents=True, exist_ok=True)
    progress = _ProgressBar(desc='generating', enabled=not args.no_progress)
    model.set_custom_progress_callback(progress)
    written: tp.List[Path] = []
    try:
        for start in range(0, len(prompts), args.batch_size):
            chunk = prompts[start:start + args.batch_size]
            try:
                wavs = _run_batch(model, chunk, unconditional, melody, continuation)
            except (ValueError, NotImplementedError) as exc:
                raise CLIError(f"generation failed: {_one_line(exc)}") from exc
            finally:
                progress.close()
            for offset, wav in enumerate(wavs):
                stem = args.output / output_stem(start + offset, chunk[offset])
                path = audio_write(stem, wav.detach().cpu().float(), model.sample_rate, format=args.format,
                                   strategy=args.strategy, loudness_compressor=args.strategy == 'loudness')
                print(path, flush=True)
                written.append(Path(path))
    finally:
        model.set_custom_progress_callback(None)
    return written


def main(argv: tp.Optional[tp.Sequence[str]] = None) -> int:
    """Entry point of ``python -m audiocraft`` and the ``audiocraft`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__
        print(__version__)
        return 0
    if args.command == 'convert':
        from .models.hf_interop.cli import run_convert
        return run_convert(args)
    if args.command != 'generate':
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        run_generate(args)
    except CLIError as exc:
        print(f'audiocraft generate: error: {exc}', file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print('audiocraft generate: interrupted', file=sys.stderr)
        return 130
    return 0


if __name__ == '__main__':
    sys.exit(main())
