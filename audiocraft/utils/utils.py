"""Small helpers used across the library: config conversion, masks, sampling."""
import hashlib
from pathlib import Path
import typing as tp

import omegaconf
import torch


def dict_from_config(cfg: omegaconf.DictConfig) -> dict:
    """Convert an OmegaConf node into a plain, resolved Python dict."""
    container = omegaconf.OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    return container


def length_to_mask(lengths: torch.Tensor, max_len: tp.Optional[int] = None) -> torch.Tensor:
    """Boolean mask [B, T] that is True for positions below each length."""
    assert lengths.dim() == 1, "lengths must be 1-D"
    max_len = int(max_len if max_len is not None else lengths.max().item())
    max_len = max(max_len, 1)
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def collate(tensors: tp.List[torch.Tensor], dim: int = 0) -> tp.Tuple[torch.Tensor, torch.Tensor]:
    """Right-pad tensors along `dim` to a common length and stack them; also return lengths."""
    lengths = torch.LongTensor([t.shape[dim] for t in tensors])
    max_len = int(lengths.max().item()) if len(tensors) else 0
    padded = []
    for t in tensors:
        pad = [0, 0] * (t.dim() - dim - 1) + [0, max_len - t.shape[dim]]
        padded.append(torch.nn.functional.pad(t, pad))
    return torch.stack(padded), lengths


def multinomial(input: torch.Tensor, num_samples: int, replacement: bool = False, *,
                generator: tp.Optional[torch.Generator] = None) -> torch.Tensor:
    """torch.multinomial over the last dimension of a tensor of any rank: [..., C] -> [..., num_samples]."""
    input_ = input.reshape(-1, input.shape[-1])
    output_ = torch.multinomial(input_, num_samples=num_samples, replacement=replacement, generator=generator)
    return output_.reshape(*list(input.shape[:-1]), -1)


def sample_top_k(probs: torch.Tensor, k: int) -> torch.Tensor:
    """Sample one index per row among the `k` most probable ones. `probs` [..., C] is modified in place."""
    # k above the vocabulary (e.g. the default 250 on a tiny test model) means all tokens.
    top_k_value, _ = torch.topk(probs, min(k, probs.shape[-1]), dim=-1)
    min_value_top_k = top_k_value[..., [-1]]
    probs *= (probs >= min_value_top_k).float()
    probs.div_(probs.sum(dim=-1, keepdim=True))
    return multinomial(probs, num_samples=1)


def sample_top_p(probs: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus sampling: one index per row among the smallest set of top tokens with mass above `p`."""
    probs_sort, probs_idx = torch.sort(probs, dim=-1, descending=True)
    probs_sum = torch.cumsum(probs_sort, dim=-1)
    mask = probs_sum - probs_sort > p
    probs_sort *= (~mask).float()
    probs_sort.div_(probs_sort.sum(dim=-1, keepdim=True))
    next_token = multinomial(probs_sort, num_samples=1)
    return torch.gather(probs_idx, -1, next_token)


# ---- training helpers (solvers, datasets) ----

def model_hash(model: torch.nn.Module) -> str:
    """Short hash of all parameter values, to check that two models hold the same weights."""
    import hashlib
    hasher = hashlib.sha1()
    for p in model.parameters():
        hasher.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return hasher.hexdigest()


def copy_state(state: tp.Any, device: tp.Union[torch.device, str] = 'cpu',
               dtype: tp.Optional[torch.dtype] = None) -> tp.Any:
    """Deep copy of a (nested) state dict, moved to `device`; floats cast to `dtype` if given."""
    if isinstance(state, torch.Tensor):
        if dtype is None or not state.is_floating_point():
            dtype = state.dtype
        return state.detach().to(device=device, dtype=dtype, copy=True)
    if isinstance(state, dict):
        return {k: copy_state(v, device, dtype) for k, v in state.items()}
    if isinstance(state, list):
        return [copy_state(v, device, dtype) for v in state]
    return state


def swap_state(model: torch.nn.Module, state: tp.Dict[str, tp.Any], **kwargs: tp.Any):
    """Context manager loading `state` into `model`, restoring the original state on exit."""
    from contextlib import contextmanager

    @contextmanager
    def _swap():
        old_state = copy_state(model.state_dict())
        model.load_state_dict(state, **kwargs)
        try:
            yield
        finally:
            model.load_state_dict(old_state)
    return _swap()


def with_rank_rng(base_seed: int = 1234) -> tp.Callable:
    """Decorator running a function with a torch seed depending on the distributed rank,
    restoring the previous RNG state afterwards."""
    from functools import wraps

    def _decorator(fun: tp.Callable) -> tp.Callable:
        @wraps(fun)
        def _decorated(*args: tp.Any, **kwargs: tp.Any) -> tp.Any:
            import flashy
            state = torch.get_rng_state()
            torch.manual_seed(base_seed ^ flashy.distrib.rank())
            try:
                return fun(*args, **kwargs)
            finally:
                torch.set_rng_state(state)
        return _decorated
    return _decorator


def random_subset(dataset: tp.Any, max_samples: int, seed: int = 42) -> tp.Any:
    """A random subset of at most `max_samples` items (the dataset itself if smaller)."""
    if max_samples >= len(dataset):
        return dataset
    generator = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(dataset), generator=generator)
    return torch.utils.data.Subset(dataset, perm[:max_samples].tolist())


def get_loader(dataset: tp.Any, num_samples: tp.Optional[int], batch_size: int, num_workers: int,
               seed: int, **kwargs: tp.Any) -> torch.utils.data.DataLoader:
    """Distributed-aware DataLoader over an optional random subset of `num_samples` items."""
    import flashy
    if num_samples is not None:
        dataset = random_subset(dataset, num_samples, seed)
    return flashy.distrib.loader(dataset, batch_size=batch_size, num_workers=num_workers, **kwargs)


def get_dataset_from_loader(dataloader: tp.Any) -> tp.Any:
    """The underlying dataset of a loader, looking through Subset wrappers."""
    dataset = dataloader.dataset
    while isinstance(dataset, torch.utils.data.Subset):
        dataset = dataset.dataset
    return dataset


class DummyPoolExecutor:
    """Synchronous stand-in for a pool executor (when num_workers <= 1)."""
    class DummyResult:
        def __init__(self, func: tp.Callable, *args: tp.Any, **kwargs: tp.Any):
            self.func, self.args, self.kwargs = func, args, kwargs

        def result(self) -> tp.Any:
            return self.func(*self.args, **self.kwargs)

    def __init__(self, workers: int, mp_context: tp.Any = None):
        pass

    def submit(self, func: tp.Callable, *args: tp.Any, **kwargs: tp.Any) -> "DummyPoolExecutor.DummyResult":
        return DummyPoolExecutor.DummyResult(func, *args, **kwargs)

    def __enter__(self) -> "DummyPoolExecutor":
        return self

    def __exit__(self, exc_type: tp.Any, exc_value: tp.Any, exc_tb: tp.Any) -> None:
        return


def get_pool_executor(num_workers: int, mp_context: tp.Any = None) -> tp.Any:
    """A process pool with `num_workers` workers, or a synchronous executor when <= 1."""
    from concurrent.futures import ProcessPoolExecutor
    return ProcessPoolExecutor(num_workers, mp_context) if num_workers > 1 else DummyPoolExecutor(1)


def is_jsonable(x: tp.Any) -> bool:
    """True if `x` can be serialized to JSON."""
    import json
    try:
        json.dumps(x)
        return True
    except (TypeError, OverflowError):
        return False


def hash_trick(word: str, vocab_size: int) -> int:
    """Stable bucket index of `word` in [0, vocab_size) (same in every process, unlike `hash`)."""
    return int(hashlib.sha256(word.encode("utf-8")).hexdigest(), 16) % vocab_size


def load_clap_state_dict(clap_model: tp.Any, path: tp.Union[str, Path]) -> None:
    """Load a LAION-CLAP checkpoint into `clap_model.model` (our `audiocraft.modules.clap.CLAPModule`,
    or a `laion_clap.CLAP_Module`: the parameter names are the same), through the safe loader.

    The `module.` prefix and the `position_ids` buffer of older transformers are dropped first.
    """
    from ..modules.clap import clap_state_dict
    from .safe_load import safe_torch_load
    if not Path(path).is_file():
        raise FileNotFoundError(f"CLAP checkpoint not found: {path}. See docs/METRICS.md for where to download it.")
    clap_model.model.load_state_dict(clap_state_dict(safe_torch_load(path, what='CLAP checkpoint')))


def distributed_mean(total: torch.Tensor, weight: torch.Tensor, what: str) -> float:
    """`total / weight`, both summed over workers when torch.distributed is initialized.

    Raises RuntimeError naming `what` when the summed weight is zero (nothing accumulated).
    """
    import torch.distributed as dist
    totals = torch.stack([total, weight])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(totals)
    if totals[1].item() <= 0:
        raise RuntimeError(f"{what}.compute called before any update with data.")
    return (totals[0] / totals[1]).item()
