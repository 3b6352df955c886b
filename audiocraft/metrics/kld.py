"""KL divergence between the label distributions an audio tagger gives reference and generated audio.

As AudioCraft: each item is cropped to its valid length, resampled to the tagger's rate in mono and
split into segments of at most `pretrained_length` seconds (too short tails are dropped); the
softmax of each segment's logits is averaged into one distribution per item. `kld_pq` is
KL(targets || preds) (AudioCraft's `kl_divergence(preds, targets)`), `kld_qp` the reverse, and
`kld_both` their sum, which does not change when the two sets are swapped.
"""
from pathlib import Path
import typing as tp

import torch
from torch import nn

from .passt import PasstTagger, load_passt


def kl_divergence(pred_probs: torch.Tensor, target_probs: torch.Tensor, epsilon: float = 1e-6) -> torch.Tensor:
    """Per item KL(target || pred) [B] of probability vectors [B, K], `epsilon` keeping logs finite."""
    kl_div = nn.functional.kl_div((pred_probs + epsilon).log(), target_probs, reduction='none')
    return kl_div.sum(-1)


class KLDivergenceMetric(nn.Module):
    """Average KL divergences between label distributions of `preds` and `targets`.

    Subclasses implement `_get_label_distribution`. `compute()` returns `kld` (= `kld_pq`), `kld_pq`,
    `kld_qp` and `kld_both`, averaged over items (and workers, when torch.distributed is initialized).
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer('kld_pq_sum', torch.tensor(0., dtype=torch.float64), persistent=False)
        self.register_buffer('kld_qp_sum', torch.tensor(0., dtype=torch.float64), persistent=False)
        self.register_buffer('weight', torch.tensor(0., dtype=torch.float64), persistent=False)

    def reset(self) -> None:
        self.kld_pq_sum.zero_()
        self.kld_qp_sum.zero_()
        self.weight.zero_()

    def _get_label_distribution(self, x: torch.Tensor, sizes: torch.Tensor,
                                sample_rates: torch.Tensor) -> tp.List[tp.Optional[torch.Tensor]]:
        """One label distribution [K] per item of `x` [B, C, T], or None for an item too short to tag."""
        raise NotImplementedError("Implement _get_label_distribution in a KLDivergenceMetric subclass.")

    def update(self, preds: torch.Tensor, targets: torch.Tensor, sizes: torch.Tensor,
               sample_rates: torch.Tensor) -> None:
        """Add a batch of generated `preds` and reference `targets` [B, C, T] (valid lengths `sizes`)."""
        if preds.shape[0] != targets.shape[0]:
            raise ValueError(f"preds {tuple(preds.shape)} and targets {tuple(targets.shape)} differ in batch size.")
        preds_probs = self._get_label_distribution(preds, sizes, sample_rates)
        targets_probs = self._get_label_distribution(targets, sizes, sample_rates)
        pairs = [(p, q) for p, q in zip(preds_probs, targets_probs) if p is not None and q is not None]
        if not pairs:
            return
        p = torch.stack([pair[0] for pair in pairs]).double()
        q = torch.stack([pair[1] for pair in pairs]).double()
        self.kld_pq_sum += kl_divergence(p, q).sum().to(self.kld_pq_sum)
        self.kld_qp_sum += kl_divergence(q, p).sum().to(self.kld_qp_sum)
        self.weight += len(pairs)

    def compute(self) -> tp.Dict[str, float]:
        """Average divergences since the last reset."""
        import torch.distributed as dist
        totals = torch.stack([self.kld_pq_sum, self.kld_qp_sum, self.weight])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(totals)
        if totals[2].item() <= 0:
            raise RuntimeError(f"{type(self).__name__}.compute called before any update with audio long enough "
                               f"to tag.")
        kld_pq = (totals[0] / totals[2]).item()
        kld_qp = (totals[1] / totals[2]).item()
        return {'kld': kld_pq, 'kld_pq': kld_pq, 'kld_qp': kld_qp, 'kld_both': kld_pq + kld_qp}


class PasstKLDivergenceMetric(KLDivergenceMetric):
    """KL divergence of PaSST (AudioSet) label distributions, as AudioCraft's `kld` with `model: passt`.

    Args:
        pretrained_length: length in seconds of the released PaSST to use (10, 20 or 30); longer audio
            is split into segments of this length.
        model_path: PaSST checkpoint path or URL (default: the release URL for `pretrained_length`).
        model: an already built tagger (tests, reuse); replaces `model_path` when given.
    """

    def __init__(self, pretrained_length: tp.Optional[int] = 20, model_path: tp.Union[str, Path, None] = None,
                 model: tp.Optional[PasstTagger] = None) -> None:
        super().__init__()
        self.pretrained_length = pretrained_length or 10
        self.model = model if model is not None else load_passt(self.pretrained_length, model_path)
        self.model.eval()
        self.max_len = int(self.pretrained_length * self.model.sample_rate)

    def _segments(self, wav: torch.Tensor, sample_rate: int) -> tp.List[torch.Tensor]:
        from ..data.audio_utils import convert_audio
        wav = convert_audio(wav.float(), from_rate=sample_rate, to_rate=self.model.sample_rate, to_channels=1)[0]
        # Tails shorter than one PaSST patch cannot be tagged: AudioCraft drops them too.
        return [seg for seg in torch.split(wav, self.max_len, dim=-1) if seg.shape[-1] >= self.model.min_samples]

    @torch.no_grad()
    def _get_label_distribution(self, x: torch.Tensor, sizes: torch.Tensor,
                                sample_rates: torch.Tensor) -> tp.List[tp.Optional[torch.Tensor]]:
        device = next(self.model.parameters()).device
        distributions: tp.List[tp.Optional[torch.Tensor]] = []
        for i in range(x.shape[0]):
            segments = self._segments(x[i, :, :int(sizes[i].item())], int(sample_rates[i].item()))
            if not segments:
                distributions.append(None)
                continue
            probs = [torch.softmax(self.model(seg[None].to(device)), dim=-1)[0] for seg in segments]
            distributions.append(torch.stack(probs).mean(dim=0).cpu())
        return distributions
