"""Random checkpoints shaped like the released models, written in the exact pretrained format.

No hub access is needed: the configs are composed from this repository's config tree (the
same `xp.cfg` a release carries, with the tiny random `t5-base` of tests/reference/hf_cache,
which has T5-base's real hidden size 768) and the weights are random. The LM `best_state` is
stored in float16 like the released `state_dict.bin`; the codec is stored in float32 like
`compression_state_dict.bin`. A folder holding both loads with `MusicGen.get_pretrained(folder)`.
"""
import math
import os
from pathlib import Path
import typing as tp
import warnings

import torch
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / 'config'
HF_CACHE = REPO / 'tests' / 'reference' / 'hf_cache'
DEFAULT_CACHE = Path(__file__).resolve().parent / '.cache'
FORMAT_VERSION = 1  # bump to regenerate cached checkpoints after a format change

# name -> (solver, model scale, extra config overrides)
SHAPES: tp.Dict[str, tp.Tuple[str, tp.Optional[str], tp.List[str]]] = {
    'musicgen-small': ('musicgen/musicgen_base_32khz', 'small', []),
    'musicgen-medium': ('musicgen/musicgen_base_32khz', 'medium', []),
    'magnet-small': ('magnet/magnet_32khz', 'small', ['dataset.segment_duration=10']),
    # A tiny model with the same structure, for tests and `--quick` runs.
    'musicgen-tiny': ('musicgen/musicgen_base_32khz', 'small', [
        'transformer_lm.dim=64', 'transformer_lm.num_heads=4', 'transformer_lm.num_layers=2']),
    'magnet-tiny': ('magnet/magnet_32khz', 'small', [
        'dataset.segment_duration=10', 'transformer_lm.dim=64', 'transformer_lm.num_heads=4',
        'transformer_lm.num_layers=2']),
}
CODEC_SHAPES: tp.Dict[str, tp.List[str]] = {
    'encodec-32khz': [],
    'encodec-tiny': ['seanet.dimension=16', 'seanet.n_filters=4', 'seanet.lstm=1'],
}


def use_offline_hub() -> None:
    """Point the Hugging Face hub at the shipped offline cache (tiny random T5s), unless set already."""
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
    os.environ.setdefault('HF_HUB_CACHE', str(HF_CACHE))


def compose(solver: str, overrides: tp.Sequence[str] = ()) -> tp.Any:
    """The full config for `solver` from the repository's config tree, as a training run sees it."""
    from hydra import compose as hydra_compose, initialize_config_dir
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # Hydra's version_base migration notice
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base='1.1'):
            return hydra_compose(config_name='config', overrides=[f'solver={solver}', *overrides])


def lm_config(shape: str) -> tp.Any:
    """Composed `xp.cfg` of the LM of a known shape (see SHAPES), with the `t5-base` conditioner."""
    if shape not in SHAPES:
        raise ValueError(f"Unknown LM shape {shape!r}, expected one of {sorted(SHAPES)}.")
    solver, scale, extra = SHAPES[shape]
    overrides = ['device=cpu', 'dtype=float32']
    if scale is not None:
        overrides.append(f'model/lm/model_scale={scale}')
    return compose(solver, overrides + list(extra))


def codec_config(shape: str = 'encodec-32khz') -> tp.Any:
    """Composed `xp.cfg` of the 32 kHz EnCodec (optionally with tiny widths)."""
    if shape not in CODEC_SHAPES:
        raise ValueError(f"Unknown codec shape {shape!r}, expected one of {sorted(CODEC_SHAPES)}.")
    return compose('compression/encodec_musicgen_32khz', ['device=cpu', *CODEC_SHAPES[shape]])


def _random_like(name: str, shape: tp.Sequence[int], generator: torch.Generator) -> torch.Tensor:
    """A plausible random value: LayerNorm-like vectors at 1, biases at 0, matrices ~ N(0, 1/fan_in)."""
    if len(shape) == 1:
        if name.endswith('bias'):
            return torch.zeros(shape)
        return torch.ones(shape)
    fan_in = math.prod(shape[1:])
    return torch.randn(*shape, generator=generator) / math.sqrt(fan_in)


def _lm_state_shapes(cfg: tp.Any) -> tp.Dict[str, tp.Tuple[torch.Size, torch.dtype]]:
    from audiocraft.models import builders
    use_offline_hub()
    with torch.device('meta'):
        lm = builders.get_lm_model(cfg)
    return {k: (v.shape, v.dtype) for k, v in lm.state_dict().items()}


def write_lm_checkpoint(path: tp.Union[str, Path], shape: str, seed: int = 0) -> Path:
    """Write a random `state_dict.bin` (fp16 `best_state`, as released) for an LM shape."""
    cfg = lm_config(shape)
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, (size, dtype) in _lm_state_shapes(cfg).items():
        value = _random_like(name, size, gen)
        state[name] = value.half() if dtype.is_floating_point else value.to(dtype)
    pkg = {'best_state': state, 'xp.cfg': OmegaConf.to_yaml(cfg), 'version': '1.4.0a2', 'exported': True}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(pkg, path)
    return path


def write_codec_checkpoint(path: tp.Union[str, Path], shape: str = 'encodec-32khz', seed: int = 0) -> Path:
    """Write a `compression_state_dict.bin` of a randomly initialised 32 kHz EnCodec (float32)."""
    from audiocraft.models import builders
    cfg = codec_config(shape)
    torch.manual_seed(seed)
    model = builders.get_compression_model(cfg).eval()
    state = model.state_dict()
    for name in state:
        if name.endswith('inited'):
            state[name] = torch.ones_like(state[name])  # no k-means initialisation at first use
    pkg = {'best_state': state, 'xp.cfg': OmegaConf.to_yaml(cfg), 'version': '1.4.0a2', 'exported': True}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(pkg, path)
    return path


def pretrained_folder(shape: str, cache_dir: tp.Union[str, Path, None] = None, codec: tp.Optional[str] = None,
                      seed: int = 0) -> Path:
    """A folder holding `state_dict.bin` and `compression_state_dict.bin` for `shape`, written once."""
    if codec is None:
        codec = 'encodec-tiny' if shape.endswith('-tiny') else 'encodec-32khz'
    root = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE
    folder = root / f'{shape}-v{FORMAT_VERSION}-seed{seed}'
    lm_file, codec_file = folder / 'state_dict.bin', folder / 'compression_state_dict.bin'
    if not lm_file.exists():
        write_lm_checkpoint(str(lm_file) + '.tmp', shape, seed)
        os.replace(str(lm_file) + '.tmp', lm_file)
    if not codec_file.exists():
        write_codec_checkpoint(str(codec_file) + '.tmp', codec, seed)
        os.replace(str(codec_file) + '.tmp', codec_file)
    return folder
