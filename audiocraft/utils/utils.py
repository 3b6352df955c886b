"""Small helpers used across the library: config conversion, masks, sampling."""
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
