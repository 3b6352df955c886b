"""Loading pretrained checkpoints (`state_dict.bin`, `compression_state_dict.bin`) by file, folder, URL or hub id.

Resolution order for `file_or_url_or_id`: an existing file; else a folder holding `filename`;
else an https:// URL; else a Hugging Face hub repo id (cache dir from the argument, else
`AUDIOCRAFT_CACHE_DIR`, else the hub's default). Every failure names the model and the file.
"""
import logging
import os
from pathlib import Path
import typing as tp

import torch
from torch import nn
from omegaconf import OmegaConf

from ..utils.safe_load import UnsafeCheckpointError, safe_torch_load

logger = logging.getLogger(__name__)

COMPRESSION_FILENAME = 'compression_state_dict.bin'
LM_FILENAME = 'state_dict.bin'


def get_audiocraft_cache_dir() -> tp.Optional[str]:
    """Cache folder for downloaded checkpoints, from the `AUDIOCRAFT_CACHE_DIR` environment variable."""
    return os.environ.get('AUDIOCRAFT_CACHE_DIR') or None


def hub_unavailable_message(name: str, what: str, exc: tp.Optional[BaseException] = None) -> str:
    """Explain that `name` is neither local nor obtainable from the hub, and how to fix it."""
    offline = os.environ.get('HF_HUB_OFFLINE', '').lower() in ('1', 'true', 'yes', 'on')
    reason = "the Hugging Face hub is in offline mode (HF_HUB_OFFLINE=1) and the files are not in the cache" \
        if offline else "the Hugging Face hub could not provide it (no network access, or no such repo/file)"
    detail = f" Underlying error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}" \
        if exc is not None else ""
    return (f"Could not load model {name!r}: no such file or folder ({os.path.abspath(name)!r}), and as a hub "
            f"repo id, {reason}. Expected {what}. To use it offline, download the files on a machine with network "
            f"access (e.g. `hf download {name} --local-dir <folder>`; for AudioCraft checkpoints "
            f"download {LM_FILENAME} and {COMPRESSION_FILENAME} into a folder) and pass that folder's "
            f"path instead of {name!r}.{detail}")


def demo_model_dir() -> Path:
    """Folder of the `demo` MusicGen shipped as package data (state_dict.bin, compression_state_dict.bin)."""
    folder = Path(__file__).parent.parent / 'pretrained' / 'demo'
    if not (folder / 'state_dict.bin').exists() or not (folder / 'compression_state_dict.bin').exists():
        raise FileNotFoundError(f"The demo model files are missing from {folder}: reinstall audiocraft, or "
                                "re-export them (docs/DEMO_MODEL.md).")
    return folder


def looks_like_local_path(name: str) -> bool:
    """True for names that cannot be hub repo ids ('./x', '/x', '~/x', 'a/b/c', ...)."""
    return name.startswith(('.', '/', '~')) or name.count('/') > 1 or name.endswith(('.bin', '.th', '.pt'))


def _torch_load(path: tp.Union[str, Path], device: tp.Union[torch.device, str], name: str,
                local: bool = True, mmap: bool = False) -> tp.Any:
    """Safe `torch.load` (see `audiocraft.utils.safe_load`) with clear errors for missing, truncated
    or non-torch files.

    Files holding objects beyond tensors, plain containers and omegaconf configs are refused
    (`UnsafeCheckpointError`) unless `AUDIOCRAFT_UNSAFE_FULL_UNPICKLE=1`; downloaded files
    (`local=False`) are never fully unpickled. With `mmap`, zip-format files loaded to CPU are
    memory-mapped: only for callers that copy every tensor out before returning (see build_meta_and_load).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint file {str(path)!r} for model {name!r} does not exist.")
    if path.stat().st_size == 0:
        raise RuntimeError(f"Checkpoint file {str(path)!r} for model {name!r} is empty; download it again.")
    try:
        return safe_torch_load(path, map_location=device, mmap=mmap, what=f'checkpoint of model {name!r}',
                               allow_unsafe_pickle=None if local else False)
    except UnsafeCheckpointError:
        raise
    except Exception as exc:  # torch raises many types on damaged files (RuntimeError, EOFError, IndexError...)
        raise RuntimeError(f"Checkpoint file {str(path)!r} for model {name!r} is corrupt or truncated, or not "
                           f"a torch checkpoint ({type(exc).__name__}: {exc}); download it again.") from exc


def _download_url(url: str) -> Path:
    """Download `url` into torch hub's checkpoint folder once (as torch.hub.load_state_dict_from_url,
    whose own loading unpickles fully) and return the local file."""
    from urllib.parse import urlparse
    folder = Path(torch.hub.get_dir()) / 'checkpoints'
    folder.mkdir(parents=True, exist_ok=True)
    filename = os.path.basename(urlparse(url).path)
    cached = folder / filename
    if not cached.exists():
        match = torch.hub.HASH_REGEX.search(filename)
        torch.hub.download_url_to_file(url, str(cached), match.group(1) if match else None, progress=True)
    return cached


def _get_state_dict(file_or_url_or_id: tp.Union[Path, str], filename: tp.Optional[str] = None,
                    device: tp.Union[torch.device, str] = 'cpu', cache_dir: tp.Optional[str] = None,
                    mmap: bool = False) -> tp.Any:
    """Load a torch checkpoint given a file, a folder holding `filename`, an https:// URL or a hub repo id."""
    if cache_dir is None:
        cache_dir = get_audiocraft_cache_dir()
    name = str(file_or_url_or_id)
    if os.path.isfile(name):
        return _torch_load(name, device, name, mmap=mmap)
    if os.path.isdir(name):
        if filename is None:
            raise ValueError(f"{name!r} is a folder: a filename to look for inside it is needed.")
        file = Path(name) / filename
        if not file.is_file():
            raise FileNotFoundError(f"Folder {name!r} does not contain {filename!r}. A pretrained folder holds "
                                    f"{LM_FILENAME} and/or {COMPRESSION_FILENAME}.")
        return _torch_load(file, device, name, mmap=mmap)
    if name.startswith('https://'):
        try:
            file = _download_url(name)
        except Exception as exc:
            raise FileNotFoundError(f"Could not download checkpoint {name!r} ({type(exc).__name__}: {exc}). "
                                    "Download it manually and pass the local file path.") from exc
        return _torch_load(file, device, name, local=False, mmap=mmap)
    if filename is None:
        raise ValueError("filename needs to be defined if using HF checkpoints")
    if looks_like_local_path(name):
        raise FileNotFoundError(f"Checkpoint {name!r} does not exist (no such file or folder).")
    from huggingface_hub import hf_hub_download
    from .. import __version__
    try:
        file = hf_hub_download(repo_id=name, filename=filename, cache_dir=cache_dir,
                               library_name="audiocraft", library_version=__version__)
    except Exception as exc:  # offline, unreachable, unknown repo or file, invalid repo id
        raise FileNotFoundError(hub_unavailable_message(name, f"a hub repo holding {filename}", exc)) from exc
    return _torch_load(file, device, name, local=False, mmap=mmap)


def load_compression_model_ckpt(file_or_url_or_id: tp.Union[Path, str],
                                cache_dir: tp.Optional[str] = None, mmap: bool = False) -> dict:
    """The raw `compression_state_dict.bin` package (full form or `{'pretrained': NAME}` pointer).

    `mmap=True` memory-maps local files: the tensors then read from the file lazily (copy them
    before the file may change).
    """
    pkg = _get_state_dict(file_or_url_or_id, filename=COMPRESSION_FILENAME, cache_dir=cache_dir, mmap=mmap)
    _check_package(pkg, str(file_or_url_or_id), allow_pointer=True)
    return pkg


def _check_package(pkg: tp.Any, name: str, allow_pointer: bool = False) -> None:
    if not isinstance(pkg, dict):
        raise RuntimeError(f"Checkpoint {name!r} is not an AudioCraft pretrained package (got a "
                           f"{type(pkg).__name__}, expected a dict with 'best_state' and 'xp.cfg').")
    if allow_pointer and 'pretrained' in pkg:
        return
    missing = [key for key in ('best_state', 'xp.cfg') if key not in pkg]
    if missing:
        raise RuntimeError(f"Checkpoint {name!r} is not an exported AudioCraft model: missing {missing} "
                           "(export training checkpoints with audiocraft.utils.export first).")


def package_config(pkg: dict, device: tp.Union[torch.device, str]) -> tp.Any:
    """The `xp.cfg` of a package as an OmegaConf config, with `device` set."""
    cfg = pkg['xp.cfg']
    cfg = OmegaConf.create(cfg if isinstance(cfg, str) else OmegaConf.to_container(OmegaConf.create(cfg)))
    cfg.device = str(device)
    return cfg


def build_meta_and_load(build: tp.Callable[[], nn.Module], state_dict: tp.Dict[str, torch.Tensor],
                        device: tp.Union[torch.device, str] = 'cpu', name: str = 'model') -> nn.Module:
    """Build a module on the meta device (no random init spent) and assign `state_dict` to it.

    Each tensor is converted to the dtype the freshly built module has for that entry (as a
    normal `load_state_dict` copy would) and moved to `device`. Missing or unexpected keys,
    or entries left on meta, raise a RuntimeError naming the model.
    """
    with torch.device('meta'):
        model = build()
    targets = model.state_dict(keep_vars=True)
    missing = [k for k in targets if k not in state_dict]
    unexpected = [k for k in state_dict if k not in targets]
    if missing or unexpected:
        raise RuntimeError(f"Checkpoint of {name!r} does not match the model built from its config: "
                           f"missing keys {missing[:10]}, unexpected keys {unexpected[:10]}.")
    converted = {}
    for key, target in targets.items():
        value = state_dict[key]
        if tuple(value.shape) != tuple(target.shape):
            raise RuntimeError(f"Checkpoint of {name!r}: {key} has shape {tuple(value.shape)}, "
                               f"the model expects {tuple(target.shape)}.")
        tensor = value.to(device=device, dtype=target.dtype)
        if tensor.untyped_storage().data_ptr() == value.untyped_storage().data_ptr():
            # Never keep the loaded storage itself: it may be a memory map of the file.
            tensor = tensor.clone()
        converted[key] = tensor
    model.load_state_dict(converted, strict=True, assign=True)
    leftover = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if leftover:
        raise RuntimeError(f"{name!r}: tensors not set by the checkpoint: {leftover[:10]}")
    model.to(device)
    _refresh_weight_norm(model)
    return model


def _refresh_weight_norm(model: nn.Module) -> None:
    # Old-style weight norm keeps the effective weight as a plain attribute computed on the
    # meta device at build time; recompute it now so it is valid before the first forward.
    from torch.nn.utils.weight_norm import WeightNorm
    for module in model.modules():
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, WeightNorm):
                with torch.no_grad():
                    setattr(module, hook.name, hook.compute_weight(module))


def load_compression_model(file_or_url_or_id: tp.Union[Path, str], device: tp.Union[torch.device, str] = 'cpu',
                           cache_dir: tp.Optional[str] = None) -> nn.Module:
    """Load a compression model from an AudioCraft `compression_state_dict.bin` (file, folder, URL, hub id).

    A pointer package `{'pretrained': NAME}` resolves through `CompressionModel.get_pretrained(NAME)`.
    """
    from . import builders
    from .encodec import CompressionModel
    pkg = load_compression_model_ckpt(file_or_url_or_id, cache_dir=cache_dir, mmap=True)
    if 'pretrained' in pkg:
        return CompressionModel.get_pretrained(pkg['pretrained'], device=device)
    cfg = package_config(pkg, device)
    build_cfg = cfg.copy()
    build_cfg.device = 'meta'
    model = build_meta_and_load(lambda: builders.get_compression_model(build_cfg), pkg['best_state'],
                                device=device, name=str(file_or_url_or_id))
    model.eval()
    return model


def load_lm_model_ckpt(file_or_url_or_id: tp.Union[Path, str], cache_dir: tp.Optional[str] = None,
                       mmap: bool = False) -> dict:
    """The raw LM package (`state_dict.bin`): {'best_state', 'xp.cfg', 'version', 'exported'}.

    `mmap=True` memory-maps local files (see load_compression_model_ckpt).
    """
    pkg = _get_state_dict(file_or_url_or_id, filename=LM_FILENAME, cache_dir=cache_dir, mmap=mmap)
    _check_package(pkg, str(file_or_url_or_id))
    return pkg


def _delete_param(cfg: tp.Any, full_name: str) -> None:
    """Remove a (possibly nested, dot separated) key from a config if present (old configs)."""
    parts = full_name.split('.')
    for part in parts[:-1]:
        if part not in cfg:
            return
        cfg = cfg[part]
    OmegaConf.set_struct(cfg, False)
    if parts[-1] in cfg:
        del cfg[parts[-1]]
    OmegaConf.set_struct(cfg, True)


def _load_lm(file_or_url_or_id: tp.Union[Path, str], device: tp.Union[torch.device, str],
             cache_dir: tp.Optional[str], adapt_cfg: tp.Callable[[tp.Any], None] = lambda cfg: None) -> nn.Module:
    """Shared LM loading: read the package, adapt its config, build on meta and assign the weights."""
    from . import builders
    pkg = load_lm_model_ckpt(file_or_url_or_id, cache_dir=cache_dir, mmap=True)
    cfg = package_config(pkg, device)
    adapt_cfg(cfg)
    cfg.dtype = 'float32' if cfg.device == 'cpu' else 'float16'
    _delete_param(cfg, 'conditioners.self_wav.chroma_stem.cache_path')
    _delete_param(cfg, 'conditioners.args.merge_text_conditions_p')
    _delete_param(cfg, 'conditioners.args.drop_desc_p')
    model = build_meta_and_load(lambda: builders.get_lm_model(cfg), pkg['best_state'],
                                device=device, name=str(file_or_url_or_id))
    model.eval()
    model.cfg = cfg
    return model


def load_lm_model(file_or_url_or_id: tp.Union[Path, str], device: tp.Union[torch.device, str] = 'cpu',
                  cache_dir: tp.Optional[str] = None) -> nn.Module:
    """Load an LM (MusicGen, AudioGen or MAGNeT) from an AudioCraft `state_dict.bin`.

    The model is built from the checkpoint's `xp.cfg` on the meta device, then the weights are
    assigned: float32 on CPU, float16 (transformer) on other devices, as AudioCraft does.
    The config is kept as `model.cfg`.
    """
    return _load_lm(file_or_url_or_id, device, cache_dir)


def load_lm_model_magnet(file_or_url_or_id: tp.Union[Path, str], compression_model_frame_rate: int,
                         device: tp.Union[torch.device, str] = 'cpu', cache_dir: tp.Optional[str] = None
                         ) -> nn.Module:
    """Load a MAGNeT LM from an AudioCraft `state_dict.bin` (file, folder, URL or hub id).

    As AudioCraft, the attention masks are sized from the codec's frame rate and the training
    `dataset.segment_duration`, and spans from `masking.span_len`. No attention backend is
    switched (AudioCraft forces xformers process-wide here; SDPA applies the masks itself).
    """
    def adapt_cfg(cfg: tp.Any) -> None:
        if cfg.get('lm_model') != 'transformer_lm_magnet':
            raise ValueError(f"Checkpoint {str(file_or_url_or_id)!r} is not a MAGNeT model (lm_model="
                             f"{cfg.get('lm_model')!r}); load it with MusicGen/AudioGen.get_pretrained instead.")
        from .lm_magnet import apply_magnet_config_patch
        apply_magnet_config_patch(cfg, compression_model_frame_rate)

    return _load_lm(file_or_url_or_id, device, cache_dir, adapt_cfg)
