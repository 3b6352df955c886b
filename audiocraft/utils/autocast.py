"""Autocast context that is a no-op when disabled."""
import typing as tp

import torch


class TorchAutocast:
    """`torch.autocast` that does nothing when `enabled=False`.

    Args:
        enabled: whether to autocast.
        *args, **kwargs: forwarded to `torch.autocast` (device_type, dtype...).
    """
    def __init__(self, enabled: bool, *args: tp.Any, **kwargs: tp.Any):
        self.autocast = torch.autocast(*args, **kwargs) if enabled else None

    def __enter__(self) -> None:
        if self.autocast is None:
            return
        try:
            self.autocast.__enter__()
        except RuntimeError as exc:
            device = self.autocast.device
            dtype = self.autocast.fast_dtype
            raise RuntimeError(f"Autocast is not supported with device {device} and dtype {dtype}: "
                               "set autocast=false or choose another autocast_dtype.") from exc

    def __exit__(self, *args: tp.Any, **kwargs: tp.Any) -> None:
        if self.autocast is None:
            return
        self.autocast.__exit__(*args, **kwargs)
