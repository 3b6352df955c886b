"""Fréchet Audio Distance (FAD) between VGGish embeddings of generated and reference audio.

Unlike AudioCraft, which writes files and runs TensorFlow VGGish in a subprocess, everything runs
in PyTorch: embeddings are summarised on the fly by float64 sufficient statistics (count, sum and
sum of outer products), summed over workers, so memory does not grow with the evaluation set.
"""
from pathlib import Path
import typing as tp

import torch
from torch import nn

from .vggish import EMBEDDING_SIZE, PCA_URL, SAMPLE_RATE, VGGISH_URL, VGGish, load_vggish


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> float:
    """||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2)), in float64.

    tr((s1 s2)^(1/2)) is computed as the sum of the square roots of the eigenvalues of the symmetric
    PSD matrix s1^(1/2) s2 s1^(1/2), which has the same spectrum as s1 s2. Unlike a general matrix
    square root, this stays real and stable for near-singular covariances (few samples, silent audio).
    """
    mu1, mu2 = mu1.double(), mu2.double()
    sigma1, sigma2 = sigma1.double(), sigma2.double()
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"Mismatching statistics: means {tuple(mu1.shape)} vs {tuple(mu2.shape)}, "
                         f"covariances {tuple(sigma1.shape)} vs {tuple(sigma2.shape)}.")
    sym1 = (sigma1 + sigma1.T) / 2
    eigvals, eigvecs = torch.linalg.eigh(sym1)
    sqrt1 = (eigvecs * eigvals.clamp(min=0).sqrt()) @ eigvecs.T
    middle = sqrt1 @ ((sigma2 + sigma2.T) / 2) @ sqrt1
    middle_eigvals = torch.linalg.eigvalsh((middle + middle.T) / 2)
    tr_covmean = middle_eigvals.clamp(min=0).sqrt().sum()
    diff = mu1 - mu2
    return float(diff.dot(diff) + torch.trace(sigma1) + torch.trace(sigma2) - 2 * tr_covmean)


class _EmbeddingStats(nn.Module):
    """Running float64 count, sum and sum of outer products of embeddings (mean and covariance)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer('count', torch.zeros((), dtype=torch.float64), persistent=False)
        self.register_buffer('total', torch.zeros(dim, dtype=torch.float64), persistent=False)
        self.register_buffer('outer', torch.zeros(dim, dim, dtype=torch.float64), persistent=False)

    def reset(self) -> None:
        self.count.zero_()
        self.total.zero_()
        self.outer.zero_()

    def add(self, embeddings: torch.Tensor) -> None:
        emb = embeddings.detach().double().to(self.total.device)
        self.count += emb.shape[0]
        self.total += emb.sum(dim=0)
        self.outer += emb.T @ emb

    def mean_cov(self, what: str) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        """Mean and unbiased covariance (as numpy.cov), summed across workers when distributed."""
        import torch.distributed as dist
        count, total, outer = self.count.clone(), self.total.clone(), self.outer.clone()
        if dist.is_available() and dist.is_initialized():
            for tensor in (count, total, outer):
                dist.all_reduce(tensor)
        if count.item() < 2:
            raise RuntimeError(f"FAD needs at least 2 embeddings of {what} audio, got {int(count.item())}: "
                               f"VGGish embeds each full 0.96 s of audio, so give longer or more samples.")
        mean = total / count
        cov = (outer - count * torch.outer(mean, mean)) / (count - 1)
        return mean, cov


class FrechetAudioDistanceMetric(nn.Module):
    """FAD between VGGish embeddings of generated (`preds`) and reference (`targets`) audio.

    Each item is cropped to its valid size, resampled to 16 kHz mono and cut into 0.96 s patches; every
    patch's embedding is one sample of its set, as in the TensorFlow FAD. Lower is better.

    Args:
        model_path: torchvggish weights (path, `//reference/...` or URL).
        pca_params_path: torchvggish PCA parameters, used when `postprocess`.
        postprocess: apply VGGish's PCA and quantisation to the embeddings (the released VGGish output).
        model: an already built VGGish (tests, or reuse); replaces the paths when given.
    """

    def __init__(self, model_path: tp.Union[str, Path, None] = VGGISH_URL,
                 pca_params_path: tp.Union[str, Path, None] = PCA_URL, postprocess: bool = True,
                 model: tp.Optional[VGGish] = None) -> None:
        super().__init__()
        self.model = model if model is not None else load_vggish(model_path, pca_params_path, postprocess)
        self.model.eval()
        self.preds_stats = _EmbeddingStats(EMBEDDING_SIZE)
        self.targets_stats = _EmbeddingStats(EMBEDDING_SIZE)

    def reset(self) -> None:
        self.preds_stats.reset()
        self.targets_stats.reset()

    @torch.no_grad()
    def embed(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """VGGish embeddings [N, 128] of one item [C, T] at `sample_rate`."""
        from ..data.audio_utils import convert_audio
        device = next(self.model.parameters()).device
        wav = convert_audio(wav.float(), from_rate=sample_rate, to_rate=SAMPLE_RATE, to_channels=1)
        return self.model.embed_waveform(wav[0].to(device))

    def update(self, preds: torch.Tensor, targets: torch.Tensor, sizes: torch.Tensor,
               sample_rates: torch.Tensor, stems: tp.Optional[tp.List[str]] = None) -> None:
        """Add a batch: `preds` and `targets` [B, C, T], valid lengths `sizes` [B] at `sample_rates` [B].

        `stems` (file names) is accepted for AudioCraft compatibility; nothing is written to disk.
        """
        if preds.shape[0] != targets.shape[0] or preds.shape[0] != sizes.shape[0]:
            raise ValueError(f"preds {tuple(preds.shape)}, targets {tuple(targets.shape)} and sizes "
                             f"{tuple(sizes.shape)} must have the same batch size.")
        for i in range(preds.shape[0]):
            size, rate = int(sizes[i].item()), int(sample_rates[i].item())
            self.preds_stats.add(self.embed(preds[i, :, :size], rate))
            self.targets_stats.add(self.embed(targets[i, :, :size], rate))

    def update_embeddings(self, preds: tp.Optional[torch.Tensor] = None,
                          targets: tp.Optional[torch.Tensor] = None) -> None:
        """Add already computed embeddings [N, 128] to either set (the command line uses this)."""
        if preds is not None:
            self.preds_stats.add(preds)
        if targets is not None:
            self.targets_stats.add(targets)

    def compute(self) -> float:
        """FAD of everything added since the last reset (all workers together)."""
        mu_gen, sigma_gen = self.preds_stats.mean_cov('generated')
        mu_ref, sigma_ref = self.targets_stats.mean_cov('reference')
        return frechet_distance(mu_ref, sigma_ref, mu_gen, sigma_gen)
