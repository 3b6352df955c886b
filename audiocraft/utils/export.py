"""Export training checkpoints into the pretrained format read by `get_pretrained`."""
from pathlib import Path
import typing as tp

import omegaconf
import torch

from .checkpoint import atomic_torch_save
from .safe_load import UnsafeCheckpointError, safe_torch_load


def _atomic_save(obj: tp.Any, out_file: tp.Union[Path, str]) -> Path:
    """`torch.save` into place without ever leaving a half-written file."""
    out_file = Path(out_file)
    out_file.parent.mkdir(exist_ok=True, parents=True)
    atomic_torch_save(obj, out_file)
    return out_file


def _cfg_to_yaml(cfg: tp.Any) -> str:
    if isinstance(cfg, str):
        return cfg
    return omegaconf.OmegaConf.to_yaml(omegaconf.OmegaConf.create(cfg))


def _load_training_checkpoint(checkpoint_path: tp.Union[Path, str],
                              allow_unsafe_pickle: tp.Optional[bool] = None) -> dict:
    path = Path(checkpoint_path)
    if not path.is_file():
        raise FileNotFoundError(f"Training checkpoint {str(path)!r} does not exist.")
    try:
        pkg = safe_torch_load(path, map_location='cpu', allow_unsafe_pickle=allow_unsafe_pickle,
                              what='training checkpoint')
    except UnsafeCheckpointError:
        raise
    except Exception as exc:
        raise RuntimeError(f"Training checkpoint {str(path)!r} is corrupt or not a torch checkpoint "
                           f"({type(exc).__name__}: {exc}).") from exc
    if not isinstance(pkg, dict) or 'xp.cfg' not in pkg:
        raise RuntimeError(f"{str(path)!r} is not an AudioCraft training checkpoint (no 'xp.cfg').")
    return pkg


def _model_state(pkg: dict, prefer_ema: bool) -> dict:
    if prefer_ema and pkg.get('ema'):
        ema = pkg['ema']
        state = ema.get('state', ema)
        if 'model' in state:
            return state['model']
    best = pkg.get('fsdp_best_state') or pkg.get('best_state')
    if best:
        return best['model'] if 'model' in best else best
    if 'model' in pkg:
        return pkg['model']
    raise RuntimeError("Training checkpoint holds no model state ('ema', 'best_state' or 'model').")


def _export_model_state(checkpoint_path: tp.Union[Path, str], out_file: tp.Union[Path, str], prefer_ema: bool,
                        allow_unsafe_pickle: tp.Optional[bool] = None) -> Path:
    from .. import __version__
    pkg = _load_training_checkpoint(checkpoint_path, allow_unsafe_pickle)
    new_pkg = {
        'best_state': _model_state(pkg, prefer_ema=prefer_ema),
        'xp.cfg': _cfg_to_yaml(pkg['xp.cfg']),
        'version': __version__,
        'exported': True,
    }
    return _atomic_save(new_pkg, out_file)


def export_encodec(checkpoint_path: tp.Union[Path, str], out_file: tp.Union[Path, str],
                   allow_unsafe_pickle: tp.Optional[bool] = None) -> Path:
    """Export a compression training checkpoint into `compression_state_dict.bin` format.

    The EMA weights are exported when the checkpoint has them, else the best state. The checkpoint
    is read safely (see `audiocraft.utils.safe_load`; `allow_unsafe_pickle=True` for trusted files
    holding other objects).
    """
    return _export_model_state(checkpoint_path, out_file, prefer_ema=True, allow_unsafe_pickle=allow_unsafe_pickle)


def export_pretrained_compression_model(pretrained_encodec: str, out_file: tp.Union[Path, str]) -> Path:
    """Write a pointer `compression_state_dict.bin` naming a pretrained codec (e.g. 'facebook/encodec_32khz')."""
    from .. import __version__
    new_pkg = {
        'pretrained': pretrained_encodec,
        'exported': True,
        'version': __version__,
    }
    return _atomic_save(new_pkg, out_file)


def export_lm(checkpoint_path: tp.Union[Path, str], out_file: tp.Union[Path, str],
              allow_unsafe_pickle: tp.Optional[bool] = None) -> Path:
    """Export an LM training checkpoint (MusicGen, AudioGen, MAGNeT) into `state_dict.bin` format.

    As AudioCraft does, the best state is exported (the FSDP one when training used FSDP). The
    checkpoint is read safely, as for `export_encodec`.
    """
    return _export_model_state(checkpoint_path, out_file, prefer_ema=False, allow_unsafe_pickle=allow_unsafe_pickle)


def export_to_transformers(src: tp.Any, out_folder: tp.Union[Path, str],
                           dtype: tp.Optional[torch.dtype] = None) -> Path:
    """Write a MusicGen as a Hugging Face transformers folder (config.json + model.safetensors, ...).

    `src`: an AudioCraft pretrained folder or hub id, a training checkpoint (checkpoint.th of a
    `solver=musicgen/...` run) or a MusicGen object. The folder loads with
    `transformers.MusicgenForConditionalGeneration.from_pretrained` (Melody class for melody models).
    Models transformers cannot express (MAGNeT, other patterns or layers) raise NotConvertibleError
    saying why. See docs/TRANSFORMERS.md.
    """
    from ..models.hf_interop import export_musicgen_to_transformers
    return export_musicgen_to_transformers(src, out_folder, dtype=dtype)


def export_to_audiocraft(src: str, out_folder: tp.Union[Path, str], embed_text_encoder: bool = True) -> Path:
    """Write a transformers-format MusicGen (folder or hub id) in AudioCraft's pretrained format.

    `state_dict.bin` + `compression_state_dict.bin` (full SEANet EnCodec), loadable by
    `MusicGen.get_pretrained` and by AudioCraft. With `embed_text_encoder` the checkpoint's T5
    weights are stored too (`finetune: true`); else T5 is loaded by name as for released models.
    """
    from ..models.hf_interop import convert_transformers_to_audiocraft
    return convert_transformers_to_audiocraft(src, out_folder, embed_text_encoder=embed_text_encoder)
