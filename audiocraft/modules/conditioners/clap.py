"""Joint text/audio embedding conditioners (CLAP), on our plain-torch LAION-CLAP (`audiocraft.modules.clap`)."""
import logging
import typing as tp

import torch

from .base import BaseConditioner, ConditionType, JointEmbedCondition, autocast_dtype_for

logger = logging.getLogger(__name__)


class JointEmbeddingConditioner(BaseConditioner):
    """A single embedding [B, 1, output_dim] from a shared text/audio latent space.

    Optionally discretised by a residual vector quantizer (`quantize`, `n_q`, `bins`,
    extra kwargs go to the quantizer). Subclasses implement `_get_embed`, which returns
    the [B, dim] (or [B, 1, dim]) embedding and the indices of empty samples (masked out).
    """

    def __init__(self, dim: int, output_dim: int, device: tp.Union[torch.device, str], attribute: str,
                 autocast_dtype: tp.Optional[str] = 'float32', quantize: bool = True, n_q: int = 12,
                 bins: int = 1024, **kwargs: tp.Any):
        super().__init__(dim=dim, output_dim=output_dim)
        self.device = device
        self.attribute = attribute
        self.autocast_dtype = autocast_dtype_for(autocast_dtype, device)
        self.quantizer: tp.Optional[torch.nn.Module] = None
        if quantize:
            from ...quantization import ResidualVectorQuantizer  # type: ignore
            self.quantizer = ResidualVectorQuantizer(dim, n_q=n_q, bins=bins, **kwargs)

    def _get_embed(self, x: JointEmbedCondition) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError()

    def forward(self, x: JointEmbedCondition) -> ConditionType:
        device_type = torch.device(self.device).type
        with torch.autocast(device_type=device_type, dtype=self.autocast_dtype or torch.float32,
                            enabled=self.autocast_dtype is not None):
            embed, empty_idx = self._get_embed(x)
            if self.quantizer is not None:
                q_res = self.quantizer(embed.reshape(-1, self.dim, 1), frame_rate=1)
                out_embed = q_res.x.reshape(-1, self.dim)
            else:
                out_embed = embed.reshape(-1, self.dim)
            out_embed = self.output_proj(out_embed).view(-1, 1, self.output_dim)
            mask = torch.ones(*out_embed.shape[:2], device=out_embed.device)
            mask[empty_idx.to(out_embed.device), :] = 0
            return out_embed * mask.unsqueeze(-1), mask

    def tokenize(self, x: JointEmbedCondition) -> JointEmbedCondition:
        return x


class CLAPEmbeddingConditioner(JointEmbeddingConditioner):
    """LAION-CLAP embedding of the text (at inference) or of the audio (in training).

    Args:
        dim: CLAP embedding size (512).
        output_dim: model dimension.
        device: device of the CLAP model.
        attribute: name of the joint attribute.
        quantize, n_q, bins: residual quantization of the embedding.
        checkpoint: laion_clap checkpoint file (path or `//reference/...`); laion_clap itself is not needed.
        model_arch: CLAP audio encoder ('HTSAT-base', ...).
        enable_fusion: CLAP feature fusion.
        sample_rate: sample rate CLAP expects (48000).
        max_audio_length: window length in seconds fed to CLAP.
        audio_stride: stride in seconds between windows of longer audio.
        normalize: L2-normalise embeddings.
        text_p: probability of using the text embedding in training.
        batch_size: CLAP audio batch size.
        autocast_dtype: autocast dtype on accelerators.
        cache_path: unsupported here (must be None).
    """

    def __init__(self, dim: int, output_dim: int, device: tp.Union[torch.device, str], attribute: str,
                 quantize: bool, n_q: int, bins: int, checkpoint: str, model_arch: str, enable_fusion: bool,
                 sample_rate: int, max_audio_length: int, audio_stride: int, normalize: bool, text_p: float,
                 batch_size: tp.Optional[int] = None, autocast_dtype: tp.Optional[str] = 'float32',
                 cache_path: tp.Optional[str] = None, **kwargs: tp.Any):
        from ..clap import load_clap_module
        if cache_path is not None:
            raise ValueError("CLAPEmbeddingConditioner: embedding caches are not supported, set cache_path to null.")
        clap_model = load_clap_module(checkpoint, model_arch=model_arch, enable_fusion=enable_fusion, device=device)
        if clap_model.sample_rate != sample_rate:
            raise ValueError(f"CLAPEmbeddingConditioner: sample_rate={sample_rate} but the CLAP model takes "
                             f"{clap_model.sample_rate} Hz audio: set sample_rate to {clap_model.sample_rate}.")
        super().__init__(dim=dim, output_dim=output_dim, device=device, attribute=attribute,
                         autocast_dtype=autocast_dtype, quantize=quantize, n_q=n_q, bins=bins, **kwargs)
        # Outside the module tree: CLAP weights are not part of LM checkpoints.
        self.__dict__['clap'] = clap_model
        self.__dict__['clap_tokenize'] = clap_model.tokenizer  # AudioCraft's attribute name
        self.batch_size = batch_size or 1
        self.normalize = normalize
        self.sample_rate = sample_rate
        self.max_audio_length = max_audio_length
        self.audio_stride = audio_stride
        self.text_p = text_p
        self.rng = torch.Generator()
        self.rng.manual_seed(1234)

    def _tokenizer(self, texts: tp.Union[str, tp.List[str]]) -> dict:
        """RoBERTa tokens padded to 77, as laion_clap (AudioCraft's method)."""
        return self.clap.tokenize([texts] if isinstance(texts, str) else texts)

    @torch.no_grad()
    def _compute_text_embedding(self, text: tp.List[str]) -> torch.Tensor:
        embed = self.clap.get_text_embedding(text, tokenizer=self._tokenizer, use_tensor=True)
        return embed.view(embed.size(0), 1, embed.size(-1))

    def _get_text_embedding(self, x: JointEmbedCondition) -> torch.Tensor:
        no_nullified = [xi if xi is not None else "" for xi in x.text]
        return self._compute_text_embedding(no_nullified)

    @torch.no_grad()
    def _compute_wav_embedding(self, wav: torch.Tensor, sample_rates: tp.List[int]) -> torch.Tensor:
        """Mean CLAP embedding [B, 1, dim] over `max_audio_length` windows of `wav` [B, C, T]."""
        from ...data.audio_utils import convert_audio
        if any(sr != sample_rates[0] for sr in sample_rates):
            raise ValueError(f"All sample rates in a batch must be equal, got {sample_rates}.")
        wav = convert_audio(wav, sample_rates[0], self.sample_rate, to_channels=1).mean(dim=1)
        batch, length = wav.shape
        window = int(self.max_audio_length * self.sample_rate)
        if length >= window:
            wav = wav.unfold(-1, window, int(self.audio_stride * self.sample_rate))
        else:
            wav = wav.view(-1, 1, length)
        n_windows = wav.shape[1]
        wav = wav.reshape(batch * n_windows, -1)
        embeds = [self.clap.get_audio_embedding_from_data(wav[i:i + self.batch_size], use_tensor=True)
                  for i in range(0, wav.shape[0], self.batch_size)]
        embed = torch.cat(embeds, dim=0).view(batch, n_windows, -1)
        return embed.mean(dim=1, keepdim=True)

    def _get_embed(self, x: JointEmbedCondition) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        use_text = torch.rand(1, generator=self.rng).item() < self.text_p
        if self.training and not use_text:
            embed = self._compute_wav_embedding(x.wav, x.sample_rate)
            empty_idx = torch.LongTensor([])  # the audio is always there in training
        else:
            embed = self._get_text_embedding(x)
            empty_idx = torch.LongTensor([i for i, xi in enumerate(x.text) if xi is None or xi == ""])
        if self.normalize:
            embed = torch.nn.functional.normalize(embed, p=2.0, dim=-1)
        return embed, empty_idx
