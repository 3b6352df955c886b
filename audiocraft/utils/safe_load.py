"""The one way AudioCraft reads torch files a user points at: `safe_torch_load`.

`torch.load(weights_only=True)` never runs code from the file, but refuses any object that is
not a tensor or a plain container. AudioCraft formats hold a few more types, allowed here and
nothing else:

- training checkpoints (`checkpoint.th`): the run's Hydra config, an omegaconf `DictConfig`
  (with its `ListConfig`, `AnyNode` and metadata objects);
- pre-computed training batches (`cache.write=true`): the segment infos of each item
  (`MusicInfo`, `SoundInfo`, `AudioInfo`, `AudioMeta`, `WavCondition`...).

Pretrained packages (`state_dict.bin`, `compression_state_dict.bin`) hold only tensors, strings
and plain containers.

Full unpickling can run arbitrary code from the file. It only happens when asked for
explicitly: `allow_unsafe_pickle=True`, or the environment variable
`AUDIOCRAFT_UNSAFE_FULL_UNPICKLE=1`. Use it only for files from a source you trust.
"""
import collections
import logging
import os
from pathlib import Path
import pickle
import threading
import typing as tp
import zipfile

import torch

logger = logging.getLogger(__name__)

UNSAFE_ENV_VAR = 'AUDIOCRAFT_UNSAFE_FULL_UNPICKLE'
_TRUE = ('1', 'true', 'yes', 'on')
# torch's allow-list is process-wide and its `safe_globals` context adds then removes entries;
# two loads overlapping in threads would remove each other's entries mid-load. Loads holding
# the allow-list therefore take turns. (A lock, not data: nothing is remembered between calls.)
_ALLOW_LIST_LOCK = threading.Lock()

FileLike = tp.Union[str, Path, tp.BinaryIO]


class UnsafeCheckpointError(RuntimeError):
    """A file holds objects that safe loading refuses: unpickling it could run code from it."""


def unsafe_pickle_allowed(allow_unsafe_pickle: tp.Optional[bool] = None) -> bool:
    """Whether full (code-running) unpickling was opted in to, by argument or by `AUDIOCRAFT_UNSAFE_FULL_UNPICKLE`."""
    if allow_unsafe_pickle is not None:
        return bool(allow_unsafe_pickle)
    return os.environ.get(UNSAFE_ENV_VAR, '').strip().lower() in _TRUE


def _plain_defaultdict(default_factory: tp.Any = None, *args: tp.Any) -> dict:
    # omegaconf keeps a `defaultdict(dict)` resolver cache in each config's metadata. torch's
    # safe unpickler only fills plain dicts, so it is read as one, and turned back into a
    # defaultdict by `_restore_resolver_caches`. The factory itself was checked as a safe global.
    return dict(*args)


def checkpoint_safe_globals() -> tp.List[tp.Any]:
    """The non-tensor types of AudioCraft training checkpoints: omegaconf configs (`xp.cfg`)."""
    from omegaconf import DictConfig, ListConfig
    from omegaconf.base import ContainerMetadata, Metadata
    from omegaconf.nodes import AnyNode
    # dict, list and int appear as the configs' object and key types (classes, never called to build code).
    return [DictConfig, ListConfig, ContainerMetadata, Metadata, AnyNode, tp.Any, dict, list, int,
            (_plain_defaultdict, 'collections.defaultdict')]


def batch_cache_safe_globals() -> tp.List[tp.Any]:
    """The non-tensor types of cached training batches (`audiocraft.utils.cache.CachedBatchWriter`)."""
    from ..data.audio_dataset import AudioMeta, SegmentInfo
    from ..data.info_audio_dataset import AudioInfo
    from ..data.music_dataset import MusicInfo
    from ..data.sound_dataset import SoundInfo
    from ..data.zip import PathInZip
    from ..modules.conditioners.base import JointEmbedCondition, WavCondition
    return [AudioMeta, SegmentInfo, AudioInfo, MusicInfo, SoundInfo, PathInZip, WavCondition, JointEmbedCondition]


def _restore_resolver_caches(obj: tp.Any, seen: tp.Optional[set] = None) -> None:
    """Give every omegaconf container found in `obj` its `defaultdict(dict)` resolver cache back."""
    from omegaconf import Container
    if seen is None:
        seen = set()
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, Container):
        metadata = obj.__dict__.get('_metadata')
        cache = getattr(metadata, 'resolver_cache', None)
        if isinstance(cache, dict) and not isinstance(cache, collections.defaultdict):
            metadata.resolver_cache = collections.defaultdict(dict, cache)
        content = obj.__dict__.get('_content')
        children = content.values() if isinstance(content, dict) else content if isinstance(content, list) else []
        for child in children:
            _restore_resolver_caches(child, seen)
    elif isinstance(obj, dict):
        for value in obj.values():
            _restore_resolver_caches(value, seen)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _restore_resolver_caches(value, seen)


def _describe(f: FileLike) -> str:
    return repr(str(f)) if isinstance(f, (str, Path)) else getattr(f, 'name', 'stream')


def safe_torch_load(f: FileLike, map_location: tp.Any = 'cpu', *, mmap: bool = False,
                    extra_safe_globals: tp.Sequence[tp.Any] = (), allow_unsafe_pickle: tp.Optional[bool] = None,
                    what: str = 'checkpoint') -> tp.Any:
    """`torch.load` that never runs code from the file unless full unpickling is opted in to.

    Loads with `weights_only=True`, allowing the omegaconf types of training checkpoints and
    `extra_safe_globals` (e.g. `batch_cache_safe_globals()`). A file holding anything else
    raises `UnsafeCheckpointError` naming the refused object, unless `allow_unsafe_pickle=True`
    or `AUDIOCRAFT_UNSAFE_FULL_UNPICKLE=1`, which fully unpickle it (trusted files only).
    Other load errors propagate unchanged, for callers to word. `mmap` memory-maps zip-format
    files loaded to CPU.
    """
    use_mmap = mmap and str(map_location) == 'cpu' and isinstance(f, (str, Path)) and zipfile.is_zipfile(f)
    allowed = checkpoint_safe_globals() + list(extra_safe_globals)
    try:
        with _ALLOW_LIST_LOCK, torch.serialization.safe_globals(allowed):
            obj = torch.load(f, map_location=map_location, weights_only=True, mmap=use_mmap)
    except pickle.UnpicklingError as exc:
        refused = _refused_object(str(exc))
        if refused is None:  # damaged or not a torch file: the caller words that
            raise
        if not unsafe_pickle_allowed(allow_unsafe_pickle):
            raise UnsafeCheckpointError(
                f"Refusing to load {what} {_describe(f)}: it holds {refused}, which safe loading does not allow "
                f"because unpickling it could run code from the file. AudioCraft files only need tensors, plain "
                f"containers and omegaconf configs. If you trust the file's source, opt in to full unpickling with "
                f"{UNSAFE_ENV_VAR}=1 (or allow_unsafe_pickle=True where offered).") from None
        logger.warning("Fully unpickling %s %s (%s; opted in with allow_unsafe_pickle or %s): this can run "
                       "code from the file.", what, _describe(f), refused, UNSAFE_ENV_VAR)
        if not isinstance(f, (str, Path)):
            f.seek(0)
        return torch.load(f, map_location=map_location, weights_only=False)
    _restore_resolver_caches(obj)
    return obj


# How torch's restricted unpickler words a refusal of an object (other errors mean a damaged file).
_REFUSALS = ('Unsupported global', 'Trying to load unsupported GLOBAL', 'Trying to call reduce', 'Can only')


def _refused_object(message: str) -> tp.Optional[str]:
    """The object torch's safe unpickler refused, from its error message; None if it refused none."""
    if 'WeightsUnpickler error:' not in message:
        return None
    detail = message.split('WeightsUnpickler error:', 1)[1].strip().split('\n\n')[0].strip()
    if not detail.startswith(_REFUSALS):
        return None
    if detail.startswith('Unsupported global: GLOBAL '):
        return 'the object ' + detail[len('Unsupported global: GLOBAL '):].split(' ', 1)[0]
    return f'an object it cannot build safely ({detail.split(". ")[0]})'
