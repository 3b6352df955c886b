"""Cosine similarity between the chromagrams of generated and reference audio (melody adherence)."""

import torch
from torch import nn

from ..modules.chroma import ChromaExtractor
from ..utils.utils import distributed_mean


class ChromaCosineSimilarityMetric(nn.Module):
    """Average, over valid chroma frames, of the cosine similarity between chromagrams.

    Accumulates with `update(preds, targets, sizes, sample_rates)`; `compute()` returns the average
    (summed across workers when torch.distributed is initialized); `reset()` clears it.

    Args:
        sample_rate: rate at which chroma is extracted (inputs are resampled to it).
        n_chroma: number of pitch classes.
        radix2_exp: chroma window length is 2 ** radix2_exp.
        argmax: one-hot chroma (strongest pitch class only).
        eps: cosine similarity stability term.
    """

    def __init__(self, sample_rate: int, n_chroma: int, radix2_exp: int, argmax: bool, eps: float = 1e-8):
        super().__init__()
        self.chroma_sample_rate = sample_rate
        self.n_chroma = n_chroma
        self.eps = eps
        self.chroma_extractor = ChromaExtractor(sample_rate=self.chroma_sample_rate, n_chroma=self.n_chroma,
                                                radix2_exp=radix2_exp, argmax=argmax)
        self.register_buffer('cosine_sum', torch.tensor(0.), persistent=False)
        self.register_buffer('weight', torch.tensor(0.), persistent=False)

    def reset(self) -> None:
        self.cosine_sum.zero_()
        self.weight.zero_()

    def update(self, preds: torch.Tensor, targets: torch.Tensor,
               sizes: torch.Tensor, sample_rates: torch.Tensor) -> None:
        """Add a batch: `preds` and `targets` [B, C, T] at `sample_rates[0]`, valid lengths `sizes` [B]."""
        from ..data.audio_utils import convert_audio  # the data package imports heavier dependencies

        if preds.size(0) == 0:
            return
        if preds.shape != targets.shape:
            raise ValueError(f"Preds and target shapes mismatch: preds={preds.shape}, targets={targets.shape}")
        if preds.size(0) != sizes.size(0):
            raise ValueError(f"Number of items in preds ({preds.shape}) mismatch with sizes ({sizes.shape})")
        if torch.any(sample_rates != sample_rates[0].item()):
            raise ValueError("All items in the batch must share one sample rate.")
        sample_rate = int(sample_rates[0].item())
        preds = convert_audio(preds, from_rate=sample_rate, to_rate=self.chroma_sample_rate, to_channels=1)
        targets = convert_audio(targets, from_rate=sample_rate, to_rate=self.chroma_sample_rate, to_channels=1)
        gt_chroma = self.chroma_extractor(targets)
        gen_chroma = self.chroma_extractor(preds)
        chroma_sizes = sizes * (self.chroma_sample_rate / sample_rate)  # valid lengths after resampling
        chroma_lens = (chroma_sizes / self.chroma_extractor.winhop).ceil().int()
        for i in range(len(gt_chroma)):
            t = int(chroma_lens[i].item())
            cosine_sim = torch.nn.functional.cosine_similarity(
                gt_chroma[i, :t], gen_chroma[i, :t], dim=1, eps=self.eps)
            self.cosine_sum += cosine_sim.sum(dim=0)
            self.weight += torch.tensor(t, dtype=self.weight.dtype, device=self.weight.device)

    def compute(self) -> float:
        """Average cosine similarity over all frames seen since the last reset."""
        return distributed_mean(self.cosine_sum, self.weight, type(self).__name__)
