"""Residual vector quantizer used by EnCodec."""
import math
import typing as tp

import torch

from .base import BaseQuantizer, QuantizedResult
from .core_vq import ResidualVectorQuantization


class ResidualVectorQuantizer(BaseQuantizer):
    """Residual Vector Quantizer.

    Args:
        dimension: dimension of the latent.
        n_q: number of residual codebooks.
        q_dropout: during training, use a random number of codebooks in [1, n_q] per batch.
        bins: codebook size (cardinality).
        decay: EMA decay of the codebooks.
        kmeans_init: initialise codebooks with k-means on the first batch.
        kmeans_iters: k-means iterations.
        threshold_ema_dead_code: EMA cluster size under which a code is replaced by a batch vector.
        orthogonal_reg_weight, orthogonal_reg_active_codes_only, orthogonal_reg_max_codes:
            orthogonal regularisation of the codebooks (see `VectorQuantization`).
    """

    def __init__(self, dimension: int = 256, n_q: int = 8, q_dropout: bool = False, bins: int = 1024,
                 decay: float = 0.99, kmeans_init: bool = True, kmeans_iters: int = 10,
                 threshold_ema_dead_code: float = 2, orthogonal_reg_weight: float = 0.0,
                 orthogonal_reg_active_codes_only: bool = False,
                 orthogonal_reg_max_codes: tp.Optional[int] = None):
        super().__init__()
        if n_q < 1:
            raise ValueError(f"n_q must be >= 1, got {n_q}")
        self.max_n_q = n_q
        self.n_q = n_q
        self.q_dropout = q_dropout
        self.dimension = dimension
        self.bins = bins
        self.decay = decay
        self.kmeans_init = kmeans_init
        self.kmeans_iters = kmeans_iters
        self.threshold_ema_dead_code = threshold_ema_dead_code
        self.orthogonal_reg_weight = orthogonal_reg_weight
        self.orthogonal_reg_active_codes_only = orthogonal_reg_active_codes_only
        self.orthogonal_reg_max_codes = orthogonal_reg_max_codes
        self.vq = ResidualVectorQuantization(
            dim=self.dimension, codebook_size=self.bins, num_quantizers=self.n_q,
            decay=self.decay, kmeans_init=self.kmeans_init, kmeans_iters=self.kmeans_iters,
            threshold_ema_dead_code=self.threshold_ema_dead_code,
            orthogonal_reg_weight=self.orthogonal_reg_weight,
            orthogonal_reg_active_codes_only=self.orthogonal_reg_active_codes_only,
            orthogonal_reg_max_codes=self.orthogonal_reg_max_codes,
            channels_last=False,
        )

    def _check_latent(self, x: torch.Tensor) -> None:
        if x.dim() != 3 or x.shape[1] != self.dimension:
            raise ValueError(f"ResidualVectorQuantizer expects a [B, {self.dimension}, T] latent, "
                             f"got shape {tuple(x.shape)}.")

    def forward(self, x: torch.Tensor, frame_rate: int) -> QuantizedResult:
        self._check_latent(x)
        n_q = self.n_q
        if self.training and self.q_dropout:
            n_q = int(torch.randint(1, self.n_q + 1, (1,)).item())
        bw_per_q = math.log2(self.bins) * frame_rate / 1000
        quantized, codes, commit_loss = self.vq(x, n_q=n_q)
        codes = codes.transpose(0, 1)
        # codes is [B, K, T], with T frames, K nb of codebooks.
        bw = torch.tensor(n_q * bw_per_q).to(x)
        return QuantizedResult(quantized, codes, bw, penalty=torch.mean(commit_loss))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes [B, K, T] (K = active codebooks) for a latent [B, D, T]."""
        self._check_latent(x)
        codes = self.vq.encode(x, n_q=self.n_q)
        return codes.transpose(0, 1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Latent [B, D, T] for codes [B, K, T]; K may be lower than the number of codebooks."""
        if codes.dim() != 3:
            raise ValueError(f"Expected codes of shape [B, K, T], got {tuple(codes.shape)}.")
        if codes.shape[1] > self.max_n_q:
            raise ValueError(f"Got {codes.shape[1]} codebooks but the quantizer only has {self.max_n_q}.")
        # vq.decode expects [K, B, T].
        return self.vq.decode(codes.transpose(0, 1))

    @property
    def cardinality(self) -> int:
        return self.bins

    @property
    def total_codebooks(self) -> int:
        return self.max_n_q

    @property
    def num_codebooks(self) -> int:
        return self.n_q

    def set_num_codebooks(self, n: int) -> None:
        if not 0 < n <= self.max_n_q:
            raise ValueError(f"Number of codebooks must be in [1, {self.max_n_q}], got {n}.")
        self.n_q = n
