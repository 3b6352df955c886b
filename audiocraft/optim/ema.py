"""Exponential moving average of the parameters and buffers of a dict of modules."""
from collections import defaultdict
import typing as tp

import torch
from torch import nn


def _get_all_non_persistent_buffers_set(module: nn.Module, root: str = "") -> set:
    names: set = set()
    for name, sub_module in module.named_modules():
        prefix = f"{root}.{name}" if root and name else (name or root)
        for buff_name in sub_module._non_persistent_buffers_set:
            names.add(f"{prefix}.{buff_name}" if prefix else buff_name)
    return names


def _get_named_tensors(module: nn.Module) -> tp.List[tp.Tuple[str, torch.Tensor]]:
    non_persistent = _get_all_non_persistent_buffers_set(module)
    named_buffers = [(name, buffer) for name, buffer in module.named_buffers() if name not in non_persistent]
    return list(module.named_parameters()) + named_buffers


class ModuleDictEMA:
    """EMA of every floating point parameter and persistent buffer of the modules in `module_dict`.

    Args:
        module_dict: modules to track, by name.
        decay: EMA decay.
        unbias: use the bias corrected average (weight 1 / sum of decay powers) rather than `1 - decay`.
        device: where the averages are kept (None: alongside each tensor).
    """

    def __init__(self, module_dict: nn.ModuleDict, decay: float = 0.999, unbias: bool = True,
                 device: tp.Optional[tp.Union[torch.device, str]] = 'cpu'):
        self.decay = decay
        self.module_dict = module_dict
        self.state: dict = defaultdict(dict)
        self.count: float = 0
        self.device = device
        self.unbias = unbias
        self._init()

    def _init(self) -> None:
        for module_name, module in self.module_dict.items():
            for key, val in _get_named_tensors(module):
                if not val.is_floating_point():
                    continue
                device = self.device or val.device
                if key not in self.state[module_name]:
                    self.state[module_name][key] = val.detach().to(device, copy=True)

    def step(self) -> None:
        """Fold the current values of the tracked tensors into the averages."""
        if self.unbias:
            self.count = self.count * self.decay + 1
            w = 1 / self.count
        else:
            w = 1 - self.decay
        for module_name, module in self.module_dict.items():
            for key, val in _get_named_tensors(module):
                if not val.is_floating_point():
                    continue
                device = self.device or val.device
                self.state[module_name][key].mul_(1 - w)
                self.state[module_name][key].add_(val.detach().to(device), alpha=w)

    def state_dict(self) -> dict:
        return {'state': self.state, 'count': self.count}

    def load_state_dict(self, state: dict) -> None:
        self.count = state['count']
        for module_name, module in state['state'].items():
            for key, val in module.items():
                self.state[module_name][key].copy_(val)
