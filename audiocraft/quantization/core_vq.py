"""Core vector quantization: EMA codebooks, k-means init, dead-code expiry, residual VQ.

Buffer names (`inited`, `cluster_size`, `embed`, `embed_avg`) and the distance formula
match AudioCraft so that released codebooks give the same codes.
"""
import typing as tp

import torch
from torch import nn
from torch.nn import functional as F
import torch.distributed as dist


def exists(val: tp.Optional[tp.Any]) -> bool:
    return val is not None


def default(val: tp.Any, d: tp.Any) -> tp.Any:
    return val if exists(val) else d


def l2norm(t: torch.Tensor) -> torch.Tensor:
    return F.normalize(t, p=2, dim=-1)


def ema_inplace(moving_avg: torch.Tensor, new: torch.Tensor, decay: float) -> None:
    moving_avg.data.mul_(decay).add_(new, alpha=(1 - decay))


def laplace_smoothing(x: torch.Tensor, n_categories: int, epsilon: float = 1e-5) -> torch.Tensor:
    return (x + epsilon) / (x.sum() + n_categories * epsilon)


def uniform_init(*shape: int) -> torch.Tensor:
    t = torch.empty(shape)
    nn.init.kaiming_uniform_(t)
    return t


def sample_vectors(samples: torch.Tensor, num: int) -> torch.Tensor:
    """Pick `num` rows of `samples`, without replacement when there are enough of them."""
    num_samples, device = samples.shape[0], samples.device
    if num_samples >= num:
        indices = torch.randperm(num_samples, device=device)[:num]
    else:
        indices = torch.randint(0, num_samples, (num,), device=device)
    return samples[indices]


def _nearest(samples: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    # Expanded squared distance (as in `EuclideanCodebook.quantize`): much faster and lighter
    # than materialising the [N, C, D] difference tensor, same nearest mean up to rounding.
    dists = -(samples.pow(2).sum(1, keepdim=True) - 2 * samples @ means.t() + means.pow(2).sum(1)[None, :])
    return dists.max(dim=-1).indices


def kmeans(samples: torch.Tensor, num_clusters: int, num_iters: int = 10) -> tp.Tuple[torch.Tensor, torch.Tensor]:
    """Plain k-means on [N, D] samples; returns (means [C, D], bin counts [C])."""
    dim, dtype = samples.shape[-1], samples.dtype
    means = sample_vectors(samples, num_clusters)
    bins = torch.zeros(num_clusters, dtype=torch.long, device=samples.device)
    for _ in range(num_iters):
        buckets = _nearest(samples, means)
        bins = torch.bincount(buckets, minlength=num_clusters)
        zero_mask = bins == 0
        bins_min_clamped = bins.masked_fill(zero_mask, 1)
        new_means = buckets.new_zeros(num_clusters, dim, dtype=dtype)
        new_means.scatter_add_(0, buckets[:, None].expand(-1, dim), samples)
        new_means = new_means / bins_min_clamped[..., None]
        means = torch.where(zero_mask[..., None], means, new_means)
    return means, bins


def orthogonal_loss_fn(t: torch.Tensor) -> torch.Tensor:
    """Orthogonality penalty on codebook vectors (eq. 2 of https://arxiv.org/abs/2112.00384)."""
    n = t.shape[0]
    normed_codes = l2norm(t)
    identity = torch.eye(n, device=t.device)
    cosine_sim = normed_codes @ normed_codes.t()
    return ((cosine_sim - identity) ** 2).sum() / (n ** 2)


def _broadcast_buffers(module: nn.Module) -> None:
    # Keeps codebooks identical across workers after data-dependent updates (k-means, expiry).
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=0)


class EuclideanCodebook(nn.Module):
    """Codebook with Euclidean distance, EMA updates, optional k-means init and dead-code expiry.

    Args:
        dim: dimension of the codes.
        codebook_size: number of codes.
        kmeans_init: initialise the codebook with k-means on the first batch instead of randomly.
        kmeans_iters: k-means iterations.
        decay: EMA decay of the codebook.
        epsilon: Laplace smoothing epsilon.
        threshold_ema_dead_code: codes whose EMA cluster size falls below this are replaced by
            random vectors of the current batch (0 disables expiry).
    """

    def __init__(self, dim: int, codebook_size: int, kmeans_init: bool = False, kmeans_iters: int = 10,
                 decay: float = 0.8, epsilon: float = 1e-5, threshold_ema_dead_code: float = 2):
        super().__init__()
        self.decay = decay
        init_fn: tp.Callable[..., torch.Tensor] = uniform_init if not kmeans_init else torch.zeros
        embed = init_fn(codebook_size, dim)
        self.codebook_size = codebook_size
        self.kmeans_iters = kmeans_iters
        self.epsilon = epsilon
        self.threshold_ema_dead_code = threshold_ema_dead_code
        self.register_buffer("inited", torch.tensor([float(not kmeans_init)]))
        self.register_buffer("cluster_size", torch.zeros(codebook_size))
        self.register_buffer("embed", embed)
        self.register_buffer("embed_avg", embed.clone())

    @torch.jit.ignore
    def init_embed_(self, data: torch.Tensor) -> None:
        if self.inited:
            return
        embed, cluster_size = kmeans(data, self.codebook_size, self.kmeans_iters)
        self.embed.data.copy_(embed)
        self.embed_avg.data.copy_(embed.clone())
        self.cluster_size.data.copy_(cluster_size)
        self.inited.data.copy_(torch.tensor([1.0]))
        _broadcast_buffers(self)

    def replace_(self, samples: torch.Tensor, mask: torch.Tensor) -> None:
        modified_codebook = torch.where(mask[..., None], sample_vectors(samples, self.codebook_size), self.embed)
        self.embed.data.copy_(modified_codebook)

    def expire_codes_(self, batch_samples: torch.Tensor) -> None:
        if self.threshold_ema_dead_code == 0:
            return
        expired_codes = self.cluster_size < self.threshold_ema_dead_code
        if not torch.any(expired_codes):
            return
        batch_samples = batch_samples.reshape(-1, batch_samples.shape[-1])
        self.replace_(batch_samples, mask=expired_codes)
        _broadcast_buffers(self)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, x.shape[-1])

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        # Exactly AudioCraft's expression and arg-max, so that ties resolve to the same code.
        embed = self.embed.t()
        distance = -(
            x.pow(2).sum(1, keepdim=True)
            - 2 * x @ embed
            + embed.pow(2).sum(0, keepdim=True)
        )
        return distance.max(dim=-1).indices

    def postprocess_emb(self, embed_ind: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        return embed_ind.view(*shape[:-1])

    def dequantize(self, embed_ind: torch.Tensor) -> torch.Tensor:
        return F.embedding(embed_ind, self.embed)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = self.preprocess(x)
        embed_ind = self.quantize(x)
        return self.postprocess_emb(embed_ind, shape)

    def decode(self, embed_ind: torch.Tensor) -> torch.Tensor:
        return self.dequantize(embed_ind)

    def forward(self, x: torch.Tensor) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        shape, dtype = x.shape, x.dtype
        x = self.preprocess(x)
        self.init_embed_(x)

        embed_ind = self.quantize(x)
        embed_onehot = F.one_hot(embed_ind, self.codebook_size).type(dtype)
        embed_ind = self.postprocess_emb(embed_ind, shape)
        quantize = self.dequantize(embed_ind)

        if self.training:
            # Expiry happens here because buffers are in sync: all workers take the same decision.
            self.expire_codes_(x)
            ema_inplace(self.cluster_size, embed_onehot.sum(0), self.decay)
            embed_sum = x.t() @ embed_onehot
            ema_inplace(self.embed_avg, embed_sum.t(), self.decay)
            cluster_size = (
                laplace_smoothing(self.cluster_size, self.codebook_size, self.epsilon)
                * self.cluster_size.sum()
            )
            embed_normalized = self.embed_avg / cluster_size.unsqueeze(1)
            self.embed.data.copy_(embed_normalized)

        return quantize, embed_ind


class VectorQuantization(nn.Module):
    """Vector quantization with optional projection, straight-through gradient and commitment loss.

    Args:
        dim: dimension of the input.
        codebook_size: number of codes.
        codebook_dim: dimension of the codes; a linear projection is added when it differs from `dim`.
        decay, epsilon, kmeans_init, kmeans_iters, threshold_ema_dead_code: see `EuclideanCodebook`.
        channels_last: inputs are [B, T, D] instead of [B, D, T].
        commitment_weight: weight of the commitment loss.
        orthogonal_reg_weight: weight of the orthogonal regularisation (0 disables it).
        orthogonal_reg_active_codes_only: only regularise the codes used in the batch.
        orthogonal_reg_max_codes: regularise at most that many random codes.
    """

    def __init__(self, dim: int, codebook_size: int, codebook_dim: tp.Optional[int] = None,
                 decay: float = 0.8, epsilon: float = 1e-5, kmeans_init: bool = False, kmeans_iters: int = 10,
                 threshold_ema_dead_code: float = 2, channels_last: bool = False, commitment_weight: float = 1.,
                 orthogonal_reg_weight: float = 0.0, orthogonal_reg_active_codes_only: bool = False,
                 orthogonal_reg_max_codes: tp.Optional[int] = None):
        super().__init__()
        _codebook_dim: int = default(codebook_dim, dim)
        requires_projection = _codebook_dim != dim
        self.project_in = nn.Linear(dim, _codebook_dim) if requires_projection else nn.Identity()
        self.project_out = nn.Linear(_codebook_dim, dim) if requires_projection else nn.Identity()

        self.epsilon = epsilon
        self.commitment_weight = commitment_weight
        self.orthogonal_reg_weight = orthogonal_reg_weight
        self.orthogonal_reg_active_codes_only = orthogonal_reg_active_codes_only
        self.orthogonal_reg_max_codes = orthogonal_reg_max_codes

        self._codebook = EuclideanCodebook(dim=_codebook_dim, codebook_size=codebook_size,
                                           kmeans_init=kmeans_init, kmeans_iters=kmeans_iters,
                                           decay=decay, epsilon=epsilon,
                                           threshold_ema_dead_code=threshold_ema_dead_code)
        self.codebook_size = codebook_size
        self.channels_last = channels_last

    @property
    def codebook(self) -> torch.Tensor:
        return self._codebook.embed

    @property
    def inited(self) -> torch.Tensor:
        return self._codebook.inited

    def _preprocess(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.channels_last else x.transpose(1, 2)

    def _postprocess(self, quantize: torch.Tensor) -> torch.Tensor:
        return quantize if self.channels_last else quantize.transpose(1, 2)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        x = self._preprocess(x)
        x = self.project_in(x)
        return self._codebook.encode(x)

    def decode(self, embed_ind: torch.Tensor) -> torch.Tensor:
        quantize = self._codebook.decode(embed_ind)
        quantize = self.project_out(quantize)
        return self._postprocess(quantize)

    def forward(self, x: torch.Tensor) -> tp.Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        device = x.device
        x = self._preprocess(x)
        x = self.project_in(x)
        quantize, embed_ind = self._codebook(x)

        if self.training:
            quantize = x + (quantize - x).detach()

        loss = torch.tensor([0.0], device=device, requires_grad=self.training)

        if self.training:
            if self.commitment_weight > 0:
                commit_loss = F.mse_loss(quantize.detach(), x)
                loss = loss + commit_loss * self.commitment_weight

            if self.orthogonal_reg_weight > 0:
                codebook = self.codebook
                if self.orthogonal_reg_active_codes_only:
                    unique_code_ids = torch.unique(embed_ind)
                    codebook = codebook[unique_code_ids]
                num_codes = codebook.shape[0]
                if exists(self.orthogonal_reg_max_codes) and num_codes > self.orthogonal_reg_max_codes:
                    rand_ids = torch.randperm(num_codes, device=device)[:self.orthogonal_reg_max_codes]
                    codebook = codebook[rand_ids]
                orthogonal_reg_loss = orthogonal_loss_fn(codebook)
                loss = loss + orthogonal_reg_loss * self.orthogonal_reg_weight

        quantize = self.project_out(quantize)
        quantize = self._postprocess(quantize)
        return quantize, embed_ind, loss


class ResidualVectorQuantization(nn.Module):
    """Residual VQ: each layer quantizes what the previous ones left (https://arxiv.org/abs/2107.03312)."""

    def __init__(self, *, num_quantizers: int, **kwargs: tp.Any):
        super().__init__()
        self.layers = nn.ModuleList([VectorQuantization(**kwargs) for _ in range(num_quantizers)])

    def forward(self, x: torch.Tensor, n_q: tp.Optional[int] = None
                ) -> tp.Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        quantized_out: tp.Union[float, torch.Tensor] = 0.0
        residual = x
        all_losses = []
        all_indices = []
        n_q = n_q or len(self.layers)
        for layer in self.layers[:n_q]:
            quantized, indices, loss = layer(residual)
            quantized = quantized.detach()
            residual = residual - quantized
            quantized_out = quantized_out + quantized
            all_indices.append(indices)
            all_losses.append(loss)

        assert isinstance(quantized_out, torch.Tensor)
        if self.training:
            # Straight-through on the sum, see https://github.com/facebookresearch/encodec/issues/25
            quantized_out = x + (quantized_out - x).detach()

        out_losses, out_indices = map(torch.stack, (all_losses, all_indices))
        return quantized_out, out_indices, out_losses

    def encode(self, x: torch.Tensor, n_q: tp.Optional[int] = None) -> torch.Tensor:
        """Codes [K, B, T] for a latent [B, D, T]."""
        residual = x
        all_indices = []
        n_q = n_q or len(self.layers)
        for layer in self.layers[:n_q]:
            indices = layer.encode(residual)
            quantized = layer.decode(indices)
            residual = residual - quantized
            all_indices.append(indices)
        return torch.stack(all_indices)

    def decode(self, q_indices: torch.Tensor) -> torch.Tensor:
        """Latent [B, D, T] for codes [K, B, T]."""
        quantized_out = torch.tensor(0.0, device=q_indices.device)
        for i, indices in enumerate(q_indices):
            quantized_out = quantized_out + self.layers[i].decode(indices)
        return quantized_out
