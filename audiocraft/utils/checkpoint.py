"""Training checkpoints: naming, atomic saving, resolution of `//sig/` references, cleanup.

Every write goes to a temporary file in the same folder, is flushed to disk, then renamed
over the destination with `os.replace`. A crash (even SIGKILL) at any point therefore leaves
either the previous complete checkpoint or the new complete one, never a partial file.
"""
from enum import Enum
import logging
import os
from pathlib import Path
import re
import typing as tp

import flashy
import torch

from ..environment import AudioCraftEnvironment
from .safe_load import UnsafeCheckpointError, safe_torch_load

logger = logging.getLogger(__name__)

_SIG_PREFIX = '//sig/'


class CheckpointSource(Enum):
    CURRENT_XP = "current_xp"
    PRETRAINED = "pretrained"
    OTHER = "other"


def checkpoint_name(name: tp.Optional[str] = None, rank: tp.Optional[int] = None, use_fsdp: bool = False) -> str:
    """Checkpoint file name: `checkpoint[_NAME].th`, with a `.RANK` suffix for FSDP shards of rank > 0."""
    suffix = ''
    if rank is None:
        rank = flashy.distrib.rank()
    if rank > 0 and use_fsdp:
        suffix = '.' + str(rank)
    name_part = ''
    if name is not None:
        name_part = f'_{name}'
    return f'checkpoint{name_part}.th{suffix}'


def is_sharded_checkpoint(path: Path) -> bool:
    """True for an FSDP shard (`checkpoint.th.N`)."""
    return re.search(r'\.th\.\d+$', path.name) is not None


def _xps_root() -> Path:
    return AudioCraftEnvironment.get_dora_dir() / 'xps'


def resolve_checkpoint_path(sig_or_path: tp.Union[Path, str], name: tp.Optional[str] = None,
                            use_fsdp: bool = False) -> tp.Optional[Path]:
    """Resolve `//sig/SIG`, `//reference/...`, an XP folder or a file to a checkpoint path.

    Returns None when no such checkpoint exists.
    """
    sig_or_path = str(sig_or_path)
    if sig_or_path.startswith(_SIG_PREFIX):
        sig = sig_or_path[len(_SIG_PREFIX):]
        path = _xps_root() / sig
    else:
        path = AudioCraftEnvironment.resolve_reference_path(sig_or_path)
    if path.is_dir():
        path = path / checkpoint_name(name, use_fsdp=use_fsdp)
    if path.exists():
        return path
    return None


def load_checkpoint(checkpoint_path: Path, is_sharded: bool = False,
                    allow_unsafe_pickle: tp.Optional[bool] = None) -> tp.Any:
    """Load a checkpoint on CPU (finishing an interrupted sharded save first if needed).

    Loading is safe (`audiocraft.utils.safe_load`): objects beyond tensors, plain containers and
    omegaconf configs are refused unless `allow_unsafe_pickle=True` or `AUDIOCRAFT_UNSAFE_FULL_UNPICKLE=1`.
    """
    checkpoint_path = Path(checkpoint_path)
    if is_sharded:
        rank0_checkpoint_path = checkpoint_path.parent / checkpoint_name(use_fsdp=False)
        if rank0_checkpoint_path.exists():
            check_sharded_checkpoint(checkpoint_path, rank0_checkpoint_path)
    if not checkpoint_path.exists():
        raise FileNotFoundError(f"Checkpoint {checkpoint_path} does not exist.")
    try:
        state = safe_torch_load(checkpoint_path, 'cpu', allow_unsafe_pickle=allow_unsafe_pickle,
                                what='training checkpoint')
    except UnsafeCheckpointError:
        raise
    except Exception as exc:
        raise RuntimeError(f"Checkpoint {checkpoint_path} could not be loaded ({exc!r}). It may come "
                           "from an incompatible version; delete it to restart this XP.") from exc
    logger.info("Checkpoint loaded from %s", checkpoint_path)
    return state


def save_checkpoint(state: tp.Any, checkpoint_path: Path, is_sharded: bool = False) -> None:
    """Atomically save `state` to `checkpoint_path`; on failure (e.g. a full disk) the previous
    checkpoint stays complete and loadable, and the OSError says so."""
    try:
        _safe_save_checkpoint(state, Path(checkpoint_path), is_sharded)
    except OSError as exc:
        raise OSError(exc.errno, f"Could not save checkpoint {checkpoint_path} ({exc.strerror or exc}). The "
                                 "previous checkpoint, if any, is unchanged: free disk space (or fix the folder's "
                                 "permissions) and resume training.") from exc
    logger.info("Checkpoint saved to %s", checkpoint_path)


def atomic_torch_save(obj: tp.Any, path: tp.Union[str, Path]) -> None:
    """`torch.save` that never leaves a partially written `path` behind.

    The data is written to `<path>.tmp`, flushed and fsynced, then renamed onto `path`.
    If anything fails before the rename, the temporary file is removed and `path` is untouched.
    """
    path = Path(path)
    tmp_path = path.with_name(path.name + '.tmp')
    try:
        with open(tmp_path, 'wb') as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not supported on every platform / filesystem.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def flush_stale_checkpoints(checkpoint_path: Path, keep_last: tp.Optional[int] = None) -> None:
    """Remove epoch checkpoints (`checkpoint_N.th`) beyond the `keep_last` most recent ones,
    along with temporary files left behind by interrupted saves."""
    checkpoint_dir = Path(checkpoint_path).parent
    suffix = ''
    if flashy.distrib.rank() > 0:
        suffix = f'.{flashy.distrib.rank()}'
    for tmp in checkpoint_dir.glob(f'checkpoint*.th{suffix}.tmp'):
        if tmp.exists() and not Path(str(tmp)[:-len('.tmp')] + '.tmp.done').exists():
            tmp.unlink(missing_ok=True)
    if keep_last is None or keep_last <= 0:
        return
    checkpoint_files_with_epoch = []
    for path in checkpoint_dir.glob(f'checkpoint_*.th{suffix}'):
        epoch_part = path.name.split('.', 1)[0].split('_', 1)[1]
        if epoch_part.isdigit():
            checkpoint_files_with_epoch.append((path, int(epoch_part)))
    checkpoint_files = [path for path, _ in sorted(checkpoint_files_with_epoch, key=lambda t: t[1])]
    total_to_flush = max(0, len(checkpoint_files) - keep_last)
    for path in checkpoint_files[:total_to_flush]:
        logger.debug("Removing checkpoint: %s", str(path))
        path.unlink(missing_ok=True)


def check_sharded_checkpoint(checkpoint_path: Path, rank0_checkpoint_path: Path) -> None:
    """Complete a sharded save interrupted after every shard was written (see `_safe_save_checkpoint`)."""
    old_path = Path(str(checkpoint_path) + '.old')
    if old_path.exists():
        raise RuntimeError(f"Old checkpoint {old_path} from a previous version of this code exists, "
                           "cannot safely proceed. Remove it after checking it is not needed.")
    token = Path(str(rank0_checkpoint_path) + '.tmp.done')
    tmp_path = Path(str(checkpoint_path) + '.tmp')
    if token.exists() and tmp_path.exists():
        os.replace(tmp_path, checkpoint_path)
    flashy.distrib.barrier()
    if flashy.distrib.is_rank_zero() and token.exists():
        token.unlink()


def _safe_save_checkpoint(state: tp.Any, checkpoint_path: Path, is_sharded: bool = False) -> None:
    """Atomic save; for FSDP shards, a token marks that every shard's temporary file is complete,
    so that an interrupted set of renames can be finished on the next load."""
    if not is_sharded:
        atomic_torch_save(state, checkpoint_path)
        return
    token = Path(str(checkpoint_path) + '.tmp.done')
    if flashy.distrib.is_rank_zero() and token.exists():
        token.unlink()
    flashy.distrib.barrier()
    tmp_path = Path(str(checkpoint_path) + '.tmp')
    with open(tmp_path, 'wb') as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    flashy.distrib.barrier()
    if flashy.distrib.is_rank_zero():
        token.touch()
    flashy.distrib.barrier()
    os.replace(tmp_path, checkpoint_path)
    flashy.distrib.barrier()
    if flashy.distrib.is_rank_zero():
        token.unlink()
