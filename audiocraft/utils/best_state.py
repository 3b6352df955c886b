"""Copies of the best-performing states (model, EMA...) kept for evaluation and export."""
from collections import defaultdict
import logging
import typing as tp

import flashy
import torch

from ..optim import ModuleDictEMA
from .utils import copy_state

logger = logging.getLogger(__name__)


class BestStateDictManager(flashy.state.StateDictSource):
    """Keeps a detached copy of the registered states, refreshed with `update`.

    States are stored on `device`, floating point tensors optionally cast to `dtype`
    (e.g. float16 when training with autocast, which is why released weights are fp16).

    Args:
        device: where the copies live.
        dtype: cast for floating point tensors, None to keep their dtype.
    """
    def __init__(self, device: tp.Union[torch.device, str] = 'cpu', dtype: tp.Optional[torch.dtype] = None):
        self.device = device
        self.states: dict = {}
        self.param_ids: dict = defaultdict(dict)
        self.dtype = dtype

    def _get_parameter_ids(self, state_dict: dict) -> dict:
        return {id(p): name for name, p in state_dict.items() if isinstance(p, torch.Tensor)}

    def _validate_no_parameter_ids_overlap(self, name: str, param_ids: dict) -> None:
        for registered_name, registered_param_ids in self.param_ids.items():
            if registered_name != name:
                overlap = set.intersection(set(registered_param_ids.keys()), set(param_ids.keys()))
                if overlap:
                    names = ' '.join(param_ids[i] for i in overlap)
                    raise ValueError(f"Found {len(overlap)} / {len(param_ids)} overlapping parameters in {name} "
                                     f"and already registered {registered_name}: {names}")

    def update(self, name: str, source: flashy.state.StateDictSource) -> None:
        """Refresh the copy of `name` from its source."""
        if name not in self.states:
            raise ValueError(f"{name} missing from registered states.")
        self.states[name] = copy_state(source.state_dict(), device=self.device, dtype=self.dtype)

    def register(self, name: str, source: flashy.state.StateDictSource) -> None:
        """Track `source` under `name`, initialised with its current state."""
        if name in self.states:
            raise ValueError(f"{name} already present in states.")
        # EMA and regular states must not share tensors, or which one is "best" is ambiguous.
        param_ids = self._get_parameter_ids(source.state_dict())
        if isinstance(source, ModuleDictEMA):
            logger.debug("Registering to best state: ModuleDictEMA '%s' with %d params", name, len(param_ids))
            self._validate_no_parameter_ids_overlap(name, param_ids)
            self.param_ids[name] = param_ids
        else:
            logger.debug("Registering to best state: StateDictSource '%s' with %d params", name, len(param_ids))
            self._validate_no_parameter_ids_overlap('base', param_ids)
            self.param_ids['base'].update(param_ids)
        self.states[name] = copy_state(source.state_dict(), device=self.device, dtype=self.dtype)

    def state_dict(self) -> flashy.state.StateDict:
        return self.states

    def load_state_dict(self, state: flashy.state.StateDict) -> None:
        for name, sub_state in state.items():
            if name not in self.states:
                self.states[name] = copy_state(sub_state, device=self.device, dtype=self.dtype)
                continue
            for k, v in sub_state.items():
                if k in self.states[name] and isinstance(v, torch.Tensor):
                    self.states[name][k].copy_(v)
                else:
                    self.states[name][k] = copy_state(v, device=self.device, dtype=self.dtype)
