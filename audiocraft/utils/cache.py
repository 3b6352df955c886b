"""On-disk caches: per-file embeddings (e.g. chroma) and pre-computed training mini-batches."""
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from hashlib import sha1
import logging
from pathlib import Path
import typing as tp
import zipfile

import flashy
import torch

from .checkpoint import atomic_torch_save
from .safe_load import batch_cache_safe_globals, safe_torch_load

logger = logging.getLogger(__name__)


def get_full_embed(full_embed: torch.Tensor, x: tp.Any, idx: int, device: tp.Union[str, torch.device]) -> torch.Tensor:
    """Default extraction: the whole-file embedding itself."""
    return full_embed.to(device)


class EmbeddingCache:
    """Cache of embeddings computed from whole audio files, one file per audio path.

    Args:
        cache_path: folder storing the embeddings.
        device: device of the returned embeddings.
        compute_embed_fn: `(path, x, idx) -> embedding` of the whole file `path`,
            where `x` is the batch and `idx` the item index.
        extract_embed_fn: `(full_embed, x, idx) -> embedding` of the item's segment; defaults
            to the full embedding.
    """
    def __init__(self, cache_path: tp.Union[str, Path], device: tp.Union[str, torch.device],
                 compute_embed_fn: tp.Callable[[Path, tp.Any, int], torch.Tensor],
                 extract_embed_fn: tp.Optional[tp.Callable[[torch.Tensor, tp.Any, int], torch.Tensor]] = None):
        self.cache_path = Path(cache_path)
        self.device = device
        self._compute_embed_fn = compute_embed_fn
        self._extract_embed_fn: tp.Callable[[torch.Tensor, tp.Any, int], torch.Tensor]
        if extract_embed_fn is not None:
            self._extract_embed_fn = extract_embed_fn
        else:
            self._extract_embed_fn = lambda full, x, idx: get_full_embed(full, x, idx, device)
        self.cache_path.mkdir(exist_ok=True, parents=True)
        logger.info("Cache instantiated at: %s", self.cache_path)

    def _get_cache_path(self, path: tp.Union[Path, str]) -> Path:
        return self.cache_path / sha1(str(path).encode()).hexdigest()

    @staticmethod
    def _get_full_embed_from_cache(cache: Path) -> tp.Optional[torch.Tensor]:
        try:
            return safe_torch_load(cache, 'cpu', what='embedding cache file')
        except Exception as exc:
            logger.error("Error loading %s: %r", cache, exc)
            return None

    def get_embed_from_cache(self, paths: tp.List[Path], x: tp.Any) -> torch.Tensor:
        """Embeddings of the batch items, computing and storing the missing ones."""
        embeds = []
        for idx, path in enumerate(paths):
            cache = self._get_cache_path(path)
            full_embed = self._get_full_embed_from_cache(cache) if cache.exists() else None
            if full_embed is None:
                full_embed = self._compute_embed_fn(path, x, idx)
                atomic_torch_save(full_embed.cpu(), cache)
            embeds.append(self._extract_embed_fn(full_embed.to(self.device), x, idx))
        return torch.stack(embeds, dim=0)

    def populate_embed_cache(self, paths: tp.List[Path], x: tp.Any) -> None:
        """Compute and store the embeddings of the files that are not cached yet."""
        for idx, path in enumerate(paths):
            cache = self._get_cache_path(path)
            if cache.exists():
                continue
            full_embed = self._compute_embed_fn(path, x, idx)
            atomic_torch_save(full_embed.cpu(), cache)


class CachedBatchWriter:
    """Writes pre-computed mini-batches (e.g. audio tokens with their infos) to disk.

    Layout: `<cache_folder>/<epoch:05d>/<update:06d>.zip`, one zip entry per batch item
    (items of every distributed worker are gathered by rank 0). A cache written with a
    given batch size can be read with any smaller one. Call `start_epoch` at each epoch.

    Args:
        cache_folder: where the batches are stored.
    """
    def __init__(self, cache_folder: Path):
        self.cache_folder = Path(cache_folder)
        self._current_epoch: tp.Optional[int] = None
        self._current_index = 0

    def start_epoch(self, epoch: int) -> None:
        self._current_epoch = epoch
        self._current_index = 0
        self._zip_path.parent.mkdir(exist_ok=True, parents=True)

    @staticmethod
    def _get_zip_path(cache_folder: Path, epoch: int, index: int) -> Path:
        return Path(cache_folder) / f"{epoch:05d}" / f"{index:06d}.zip"

    @property
    def _zip_path(self) -> Path:
        if self._current_epoch is None:
            raise RuntimeError("CachedBatchWriter.start_epoch must be called before saving.")
        return CachedBatchWriter._get_zip_path(self.cache_folder, self._current_epoch, self._current_index)

    def save(self, *content: tp.Any) -> None:
        """Save one mini-batch; each element of `content` is a per-item sequence."""
        all_contents = []
        for rank in range(flashy.distrib.world_size()):
            all_contents.append(flashy.distrib.broadcast_object(content, src=rank))
        if flashy.distrib.is_rank_zero():
            idx = 0
            zip_path = self._zip_path
            tmp_path = zip_path.with_name(zip_path.name + '.tmp')
            with zipfile.ZipFile(tmp_path, 'w') as zf:
                for one_content in all_contents:
                    for vals in zip(*one_content):
                        with zf.open(f'{idx}', 'w') as f:
                            torch.save(vals, f)
                        idx += 1
            tmp_path.replace(zip_path)
        flashy.distrib.barrier()
        self._current_index += 1


class CachedBatchLoader:
    """Iterates over mini-batches written by `CachedBatchWriter`, like a DataLoader.

    Args:
        cache_folder: folder holding the cached batches.
        batch_size: batch size per worker.
        num_workers: threads loading batches ahead.
        min_length: minimum number of batches per epoch; fewer is an error.
    """
    def __init__(self, cache_folder: Path, batch_size: int, num_workers: int = 10, min_length: int = 1):
        self.cache_folder = Path(cache_folder)
        self.batch_size = batch_size
        self.num_workers = max(1, num_workers)
        self.min_length = min_length
        self._current_epoch: tp.Optional[int] = None
        self.sampler = None  # DataLoader compatibility

    def __len__(self) -> int:
        path = CachedBatchWriter._get_zip_path(self.cache_folder, self._current_epoch or 0, 0).parent
        if not path.exists():
            return 0
        return len([p for p in path.iterdir() if p.suffix == ".zip"])

    def start_epoch(self, epoch: int) -> None:
        self._current_epoch = epoch

    def _zip_path(self, index: int) -> Path:
        if self._current_epoch is None:
            raise RuntimeError("CachedBatchLoader.start_epoch must be called before iterating.")
        return CachedBatchWriter._get_zip_path(self.cache_folder, self._current_epoch, index)

    def _load_one(self, index: int) -> tp.Optional[list]:
        zip_path = self._zip_path(index)
        if not zip_path.exists():
            if index < self.min_length:
                raise RuntimeError(f"Cache should have at least {self.min_length} batches, but {zip_path} "
                                   "does not exist. Write the cache first (cache.write=true).")
            return None
        try:
            with zipfile.ZipFile(zip_path, 'r') as zf:
                rank = flashy.distrib.rank()
                world_size = flashy.distrib.world_size()
                names = sorted(zf.namelist(), key=int)
                total_batch_size = self.batch_size * world_size
                if len(names) < total_batch_size:
                    raise RuntimeError(f"The cache can handle a max batch size of {len(names)}, "
                                       f"but {total_batch_size} is needed.")
                start = rank * self.batch_size
                names = names[start: start + self.batch_size]
                entries = []
                safe_globals = batch_cache_safe_globals()
                for name in names:
                    with zf.open(name, 'r') as f:
                        entries.append(safe_torch_load(f, 'cpu', extra_safe_globals=safe_globals,
                                                       what=f'cached batch {zip_path}:{name}'))
            out = []
            for part in zip(*entries):
                if isinstance(part[0], torch.Tensor):
                    out.append(torch.stack(part))
                else:
                    out.append(list(part))
            return out
        except Exception:
            logger.error("Error when reading zip path %s", zip_path)
            raise

    def __iter__(self) -> tp.Iterator[list]:
        """Yield the batches as lists, in the same structure given to `CachedBatchWriter.save`."""
        pool = ThreadPoolExecutor(self.num_workers)
        next_index = 0
        queue: deque = deque()
        with pool:
            for _ in range(2 * self.num_workers):
                queue.append(pool.submit(self._load_one, next_index))
                next_index += 1
            while queue:
                batch = queue.popleft().result()
                if batch is None:
                    for future in queue:
                        future.cancel()
                    return
                queue.append(pool.submit(self._load_one, next_index))
                next_index += 1
                yield batch
