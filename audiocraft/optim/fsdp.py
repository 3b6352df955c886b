"""Fully sharded data parallel helpers. FSDP needs an initialized process group (e.g. under torchrun);
on a single, non distributed process `is_fsdp_used()` is False and the other helpers are no-ops or raise.
"""
from contextlib import contextmanager
import typing as tp

import dora
import torch
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
from torch.distributed.fsdp import MixedPrecision, ShardingStrategy, StateDictType
from torch import nn


def is_fsdp_used() -> bool:
    """True when running inside a Dora XP whose config asks for FSDP (`fsdp.use`)."""
    if dora.is_xp():
        cfg = dora.get_xp().cfg
        if hasattr(cfg, 'fsdp'):
            return bool(cfg.fsdp.use)
    return False


def is_sharded_tensor(x: tp.Any) -> bool:
    try:
        from torch.distributed._shard.sharded_tensor import ShardedTensor
    except ImportError:  # pragma: no cover - depends on the torch build
        return False
    return isinstance(x, ShardedTensor)


@contextmanager
def switch_to_full_state_dict(models: tp.List[nn.Module]):
    """Within the context, `state_dict()` of the given FSDP models gathers full (unsharded) tensors."""
    fsdp_models = [model for model in models if isinstance(model, FSDP)]
    for model in fsdp_models:
        FSDP.set_state_dict_type(model, StateDictType.FULL_STATE_DICT)
    try:
        yield
    finally:
        for model in fsdp_models:
            FSDP.set_state_dict_type(model, StateDictType.LOCAL_STATE_DICT)


def wrap_with_fsdp(cfg, model: nn.Module, block_classes: tp.Optional[tp.Set[tp.Type]] = None) -> FSDP:
    """Wrap `model` with FSDP according to the `fsdp` config section (param/reduce/buffer dtypes,
    sharding strategy); with `per_block`, each `block_classes` submodule is sharded on its own.
    """
    if not torch.distributed.is_available() or not torch.distributed.is_initialized():
        raise RuntimeError("FSDP needs an initialized torch.distributed process group; "
                           "launch with torchrun/dora or set fsdp.use=false.")
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    sharding_strategy_dict = {
        "no_shard": ShardingStrategy.NO_SHARD,
        "shard_grad_op": ShardingStrategy.SHARD_GRAD_OP,
        "full_shard": ShardingStrategy.FULL_SHARD,
    }
    dtype_dict = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if cfg.sharding_strategy not in sharding_strategy_dict:
        raise ValueError(f"Unknown fsdp.sharding_strategy {cfg.sharding_strategy}; "
                         f"use one of {list(sharding_strategy_dict)}.")
    mixed_precision_config = MixedPrecision(
        param_dtype=dtype_dict[cfg.param_dtype],
        reduce_dtype=dtype_dict[cfg.reduce_dtype],
        buffer_dtype=dtype_dict[cfg.buffer_dtype],
    )
    auto_wrap_policy = None
    if block_classes is not None and cfg.per_block:
        auto_wrap_policy = ModuleWrapPolicy(block_classes)
    device = torch.cuda.current_device() if torch.cuda.is_available() else None
    wrapped = FSDP(model, sharding_strategy=sharding_strategy_dict[cfg.sharding_strategy],
                   mixed_precision=mixed_precision_config, device_id=device, sync_module_states=True,
                   use_orig_params=True, auto_wrap_policy=auto_wrap_policy)
    FSDP.set_state_dict_type(wrapped, StateDictType.LOCAL_STATE_DICT)
    # Let each wrapped module reach its FSDP wrapper (via __dict__, so not in the state dict): generation
    # code calling the inner module directly would otherwise bypass FSDP's parameter gathering.
    for module in FSDP.fsdp_modules(wrapped):
        original = module._fsdp_wrapped_module
        original.__dict__['_fsdp'] = module
    return wrapped


def purge_fsdp(model: FSDP) -> None:
    """Drop the unsharded parameters FSDP may have cached, so that newly loaded shards (best state,
    EMA) are the ones used at the next forward.
    """
    from torch.distributed.fsdp._runtime_utils import _reshard  # private API, stable across 2.x
    for module in FSDP.fsdp_modules(model):
        handle = getattr(module, '_handle', None)
        if handle is None:
            continue
        unsharded_flat_param = handle._get_padded_unsharded_flat_param()
        storage_size: int = unsharded_flat_param._typed_storage()._size()
        if storage_size == 0:
            continue
        _reshard(module, handle, True)
