"""Compression models: the abstract API, EnCodec, the Hugging Face EnCodec wrapper and stereo interleaving."""
from abc import ABC, abstractmethod
import logging
import math
from pathlib import Path
import typing as tp

import torch
from torch import nn

from .. import quantization as qt
from ..modules.streaming import StreamingModule

logger = logging.getLogger(__name__)


def _check_audio(x: torch.Tensor, channels: int, where: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{where} expects a torch.Tensor [B, C, T], got {type(x).__name__}.")
    if x.dim() != 3:
        raise ValueError(f"{where} expects audio of shape [B, C, T] (3 dims), got shape {tuple(x.shape)}; "
                         "add the missing batch/channel dimension, e.g. wav[None] or wav[None, None].")
    if x.shape[1] != channels:
        raise ValueError(f"{where} expects {channels} channel(s), got {x.shape[1]} (shape {tuple(x.shape)}); "
                         f"convert the audio to {channels} channel(s) first, e.g. with "
                         "audiocraft.data.audio_utils.convert_audio.")


def _check_codes(codes: torch.Tensor, max_codebooks: int, where: str) -> None:
    if not isinstance(codes, torch.Tensor) or codes.dim() != 3:
        shape = tuple(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__
        raise ValueError(f"{where} expects codes of shape [B, K, T], got {shape}.")
    if codes.dtype.is_floating_point or codes.dtype == torch.bool:
        raise ValueError(f"{where} expects integer codes, got dtype {codes.dtype}.")
    if codes.shape[1] > max_codebooks:
        raise ValueError(f"{where} got {codes.shape[1]} codebooks but the model has at most {max_codebooks}.")


class CompressionModel(ABC, StreamingModule):
    """Base API for all compression models that aim at being used as audio tokenizers
    with a language model."""

    @abstractmethod
    def forward(self, x: torch.Tensor) -> qt.QuantizedResult:
        ...

    @abstractmethod
    def encode(self, x: torch.Tensor) -> tp.Tuple[torch.Tensor, tp.Optional[torch.Tensor]]:
        """Audio [B, C, T] -> (codes [B, K, T_frames], scale or None)."""
        ...

    @abstractmethod
    def decode(self, codes: torch.Tensor, scale: tp.Optional[torch.Tensor] = None) -> torch.Tensor:
        """Codes [B, K, T_frames] (and scale) -> audio [B, C, T]."""
        ...

    @abstractmethod
    def decode_latent(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [B, K, T_frames] -> continuous latent [B, D, T_frames]."""
        ...

    @property
    @abstractmethod
    def channels(self) -> int:
        ...

    @property
    @abstractmethod
    def frame_rate(self) -> float:
        ...

    @property
    @abstractmethod
    def sample_rate(self) -> int:
        ...

    @property
    @abstractmethod
    def cardinality(self) -> int:
        ...

    @property
    @abstractmethod
    def num_codebooks(self) -> int:
        ...

    @property
    @abstractmethod
    def total_codebooks(self) -> int:
        ...

    @abstractmethod
    def set_num_codebooks(self, n: int) -> None:
        """Set the active number of codebooks used by the quantizer."""
        ...

    @staticmethod
    def get_pretrained(name: str, device: tp.Union[torch.device, str] = 'cpu') -> 'CompressionModel':
        """Instantiate a compression model from a name.

        `name` is one of: 'debug_compression_model' (tiny random model); a local
        `compression_state_dict.bin` file or a folder holding it (AudioCraft format); a local
        folder saved by Hugging Face transformers (`config.json` of an EnCodec model); an
        https:// URL to an AudioCraft checkpoint; or a Hugging Face hub id of a transformers
        EnCodec model, e.g. 'facebook/encodec_32khz' or 'facebook/encodec_24khz'.
        """
        from . import builders, loaders
        name = str(name)
        model: CompressionModel
        if name == 'debug_compression_model':
            logger.info("Getting pretrained compression model for debug")
            model = builders.get_debug_compression_model(device)
        elif Path(name).exists():
            path = Path(name)
            if path.is_dir() and not (path / loaders.COMPRESSION_FILENAME).exists() \
                    and (path / 'config.json').exists():
                model = HFEncodecCompressionModel.from_pretrained(name)
            else:
                model = loaders.load_compression_model(name, device=device)
        elif name.startswith('https://'):
            model = loaders.load_compression_model(name, device=device)
        elif loaders.looks_like_local_path(name):
            raise FileNotFoundError(f"Compression model {name!r} does not exist (no such file or folder).")
        else:
            logger.info("Getting pretrained compression model from HF %s", name)
            model = HFEncodecCompressionModel.from_pretrained(name)
        return model.to(device).eval()


class EncodecModel(CompressionModel):
    """EnCodec: SEANet encoder, residual vector quantizer, SEANet decoder.

    Args:
        encoder: encoder network (audio -> latent).
        decoder: decoder network (latent -> audio).
        quantizer: quantizer network.
        frame_rate: latent frame rate.
        sample_rate: audio sample rate.
        channels: number of audio channels.
        causal: whether the model is causal (then `renormalize` is not supported).
        renormalize: normalise the volume of each input before encoding and return the scale.
    """
    # Class attributes override the abstract properties so that instances can set them.
    frame_rate: float = 0  # type: ignore
    sample_rate: int = 0  # type: ignore
    channels: int = 0  # type: ignore

    def __init__(self, encoder: nn.Module, decoder: nn.Module, quantizer: qt.BaseQuantizer,
                 frame_rate: int, sample_rate: int, channels: int, causal: bool = False,
                 renormalize: bool = False):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.quantizer = quantizer
        self.frame_rate = frame_rate
        self.sample_rate = sample_rate
        self.channels = channels
        self.renormalize = renormalize
        self.causal = causal
        if self.causal and self.renormalize:
            # Renormalisation would need overlapping segments, which a causal model avoids.
            raise ValueError('Causal model does not support renormalize')

    @property
    def total_codebooks(self) -> int:
        return self.quantizer.total_codebooks

    @property
    def num_codebooks(self) -> int:
        return self.quantizer.num_codebooks

    def set_num_codebooks(self, n: int) -> None:
        self.quantizer.set_num_codebooks(n)

    @property
    def cardinality(self) -> int:
        return self.quantizer.bins  # type: ignore

    def preprocess(self, x: torch.Tensor) -> tp.Tuple[torch.Tensor, tp.Optional[torch.Tensor]]:
        scale: tp.Optional[torch.Tensor]
        if self.renormalize:
            mono = x.mean(dim=1, keepdim=True)
            volume = mono.pow(2).mean(dim=2, keepdim=True).sqrt()
            scale = 1e-8 + volume
            x = x / scale
            scale = scale.view(-1, 1)
        else:
            scale = None
        return x, scale

    def postprocess(self, x: torch.Tensor, scale: tp.Optional[torch.Tensor] = None) -> torch.Tensor:
        if scale is not None:
            if not self.renormalize:
                raise ValueError("A scale was given but this model was not trained with renormalize=True.")
            x = x * scale.view(-1, 1, 1)
        return x

    def forward(self, x: torch.Tensor) -> qt.QuantizedResult:
        _check_audio(x, self.channels, "EncodecModel.forward")
        length = x.shape[-1]
        x, scale = self.preprocess(x)
        emb = self.encoder(x)
        q_res = self.quantizer(emb, self.frame_rate)
        out = self.decoder(q_res.x)
        # Remove the extra padding added by the encoder and decoder.
        assert out.shape[-1] >= length, (out.shape[-1], length)
        out = out[..., :length]
        q_res.x = self.postprocess(out, scale)
        return q_res

    def encode(self, x: torch.Tensor) -> tp.Tuple[torch.Tensor, tp.Optional[torch.Tensor]]:
        """Audio [B, C, T] -> (codes [B, K, ceil(T / hop)], scale [B, 1] or None)."""
        _check_audio(x, self.channels, "EncodecModel.encode")
        x, scale = self.preprocess(x)
        emb = self.encoder(x)
        codes = self.quantizer.encode(emb)
        return codes, scale

    def decode(self, codes: torch.Tensor, scale: tp.Optional[torch.Tensor] = None) -> torch.Tensor:
        """Codes [B, K, T] -> audio [B, C, T * hop]; the encoder's padding is not removed."""
        emb = self.decode_latent(codes)
        out = self.decoder(emb)
        return self.postprocess(out, scale)

    def decode_latent(self, codes: torch.Tensor) -> torch.Tensor:
        # A DummyQuantizer's "codes" are the latents themselves ([B, 1, D, T] floats).
        if not isinstance(self.quantizer, qt.DummyQuantizer):
            _check_codes(codes, self.total_codebooks, "EncodecModel.decode")
        return self.quantizer.decode(codes)


class HFEncodecCompressionModel(CompressionModel):
    """Wrapper around a Hugging Face transformers `EncodecModel` (e.g. 'facebook/encodec_32khz')."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        bws = self.model.config.target_bandwidths
        num_codebooks = [bw * 1000 / (self.frame_rate * math.log2(self.cardinality)) for bw in bws]
        deltas = [nc - int(nc) for nc in num_codebooks]
        # Checking we didn't do some bad maths and we indeed have integers!
        assert max(deltas) <= 1e-5, deltas
        self.possible_num_codebooks = [int(nc) for nc in num_codebooks]
        self.set_num_codebooks(max(self.possible_num_codebooks))

    @staticmethod
    def from_pretrained(name: str, cache_dir: tp.Optional[str] = None) -> 'HFEncodecCompressionModel':
        """Load a transformers EnCodec from a hub id or a local folder, with a clear error when unavailable."""
        from transformers import EncodecModel as HFEncodecModel
        from .loaders import get_audiocraft_cache_dir, hub_unavailable_message
        cache_dir = cache_dir or get_audiocraft_cache_dir()
        try:
            hf_model = HFEncodecModel.from_pretrained(name, cache_dir=cache_dir)
        except (OSError, ValueError) as exc:
            raise FileNotFoundError(hub_unavailable_message(
                name, "a Hugging Face EnCodec model (config.json and model weights)", exc)) from exc
        return HFEncodecCompressionModel(hf_model)

    def forward(self, x: torch.Tensor) -> qt.QuantizedResult:
        raise NotImplementedError("Forward and training with HF EncodecModel not supported.")

    def encode(self, x: torch.Tensor) -> tp.Tuple[torch.Tensor, tp.Optional[torch.Tensor]]:
        _check_audio(x, self.channels, "HFEncodecCompressionModel.encode")
        bandwidth_index = self.possible_num_codebooks.index(self.num_codebooks)
        bandwidth = self.model.config.target_bandwidths[bandwidth_index]
        res = self.model.encode(x, padding_mask=None, bandwidth=bandwidth, return_dict=False)
        assert len(res[0]) == 1
        assert len(res[1]) == 1
        return res[0][0], res[1][0]

    def decode(self, codes: torch.Tensor, scale: tp.Optional[torch.Tensor] = None) -> torch.Tensor:
        _check_codes(codes, self.total_codebooks, "HFEncodecCompressionModel.decode")
        res = self.model.decode(codes[None], [scale], return_dict=False)
        return res[0]

    def decode_latent(self, codes: torch.Tensor) -> torch.Tensor:
        _check_codes(codes, self.total_codebooks, "HFEncodecCompressionModel.decode_latent")
        return self.model.quantizer.decode(codes.transpose(0, 1))

    @property
    def channels(self) -> int:
        return self.model.config.audio_channels

    @property
    def frame_rate(self) -> float:
        hop_length = int(math.prod(self.model.config.upsampling_ratios))
        return self.sample_rate / hop_length

    @property
    def sample_rate(self) -> int:
        return self.model.config.sampling_rate

    @property
    def cardinality(self) -> int:
        return self.model.config.codebook_size

    @property
    def num_codebooks(self) -> int:
        return self._num_codebooks

    @property
    def total_codebooks(self) -> int:
        return max(self.possible_num_codebooks)

    def set_num_codebooks(self, n: int) -> None:
        if n not in self.possible_num_codebooks:
            raise ValueError(f"Allowed values for num codebooks: {self.possible_num_codebooks}")
        self._num_codebooks = n


class InterleaveStereoCompressionModel(CompressionModel):
    """Stereo from a mono model: the codes of the left and right channels are interleaved.

    Args:
        model: mono compression model.
        per_timestep: interleave along time ([B, K, 2T], L/R alternate per step) instead of along
            codebooks ([B, 2K, T], codebook k of L then of R).
    """

    def __init__(self, model: CompressionModel, per_timestep: bool = False):
        super().__init__()
        self.model = model
        self.per_timestep = per_timestep
        if self.model.channels != 1:
            raise ValueError("Wrapped model is expected to be for monophonic audio")

    @property
    def total_codebooks(self) -> int:
        return self.model.total_codebooks

    @property
    def num_codebooks(self) -> int:
        """Active number of codebooks, after interleaving."""
        return self.model.num_codebooks if self.per_timestep else self.model.num_codebooks * 2

    def set_num_codebooks(self, n: int) -> None:
        """Set the active number of codebooks of the mono model (before interleaving)."""
        self.model.set_num_codebooks(n)

    @property
    def num_virtual_steps(self) -> float:
        """Number of sequence steps per real timestep."""
        return 2 if self.per_timestep else 1

    @property
    def frame_rate(self) -> float:
        return self.model.frame_rate * self.num_virtual_steps

    @property
    def sample_rate(self) -> int:
        return self.model.sample_rate

    @property
    def channels(self) -> int:
        return 2

    @property
    def cardinality(self) -> int:
        return self.model.cardinality

    def forward(self, x: torch.Tensor) -> qt.QuantizedResult:
        raise NotImplementedError("Not supported, use encode and decode.")

    def encode(self, x: torch.Tensor) -> tp.Tuple[torch.Tensor, tp.Optional[torch.Tensor]]:
        _check_audio(x, self.channels, "InterleaveStereoCompressionModel.encode")
        indices_c0, scales_c0 = self.model.encode(x[:, :1])
        indices_c1, scales_c1 = self.model.encode(x[:, 1:2])
        indices = torch.stack([indices_c0, indices_c1], dim=-1)  # [B, K, T, 2]
        scales: tp.Optional[torch.Tensor] = None
        if scales_c0 is not None and scales_c1 is not None:
            scales = torch.stack([scales_c0, scales_c1], dim=1)
        B, K, T, _ = indices.shape
        if self.per_timestep:
            indices = indices.reshape(B, K, T * 2)
        else:
            indices = indices.transpose(2, 3).reshape(B, K * 2, T)
        return indices, scales

    def get_left_right_codes(self, codes: torch.Tensor) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        """Split interleaved codes into the (left, right) codes of the mono model."""
        B, K, T = codes.shape
        if self.per_timestep:
            split = codes.reshape(B, K, T // 2, 2)
        else:
            split = codes.reshape(B, K // 2, 2, T).transpose(2, 3)
        return split[..., 0], split[..., 1]

    def decode(self, codes: torch.Tensor, scale: tp.Optional[torch.Tensor] = None) -> torch.Tensor:
        _check_codes(codes, 2 * self.total_codebooks, "InterleaveStereoCompressionModel.decode")
        B, K, T = codes.shape
        if T % self.num_virtual_steps != 0:
            raise ValueError("Provided codes' number of timesteps does not match")
        if K != self.num_codebooks:
            raise ValueError(f"Provided codes have {K} codebooks, expected {self.num_codebooks}.")
        scale_c0 = scale_c1 = None
        if scale is not None:
            if scale.size(0) != B or scale.size(1) != 2:
                raise ValueError(f"Scale has unexpected shape: {tuple(scale.shape)}")
            scale_c0, scale_c1 = scale[:, 0], scale[:, 1]
        codes_c0, codes_c1 = self.get_left_right_codes(codes)
        audio_c0 = self.model.decode(codes_c0, scale_c0)
        audio_c1 = self.model.decode(codes_c1, scale_c1)
        return torch.cat([audio_c0, audio_c1], dim=1)

    def decode_latent(self, codes: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("Not supported by interleaved stereo wrapped models.")
