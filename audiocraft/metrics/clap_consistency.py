"""Text consistency of generated audio: cosine similarity of CLAP text and audio embeddings.

Needs a LAION-CLAP checkpoint file (see docs/METRICS.md) and the `roberta-base` tokenizer and
config from the Hugging Face hub; the `laion_clap` package is not needed.
"""
from pathlib import Path
import typing as tp

import torch
from torch import nn

from ..utils.utils import distributed_mean


class TextConsistencyMetric(nn.Module):
    """Interface of metrics scoring how well audio matches its text description."""

    def update(self, audio: torch.Tensor, text: tp.List[str], sizes: torch.Tensor,
               sample_rates: torch.Tensor) -> None:
        raise NotImplementedError("update() must be implemented by a text consistency metric.")

    def compute(self) -> float:
        raise NotImplementedError("compute() must be implemented by a text consistency metric.")


class CLAPTextConsistencyMetric(TextConsistencyMetric):
    """Average cosine similarity between CLAP embeddings of audio and of its description.

    The CLAP model is our plain-torch LAION-CLAP (`audiocraft.modules.clap`): released laion_clap
    checkpoints load unchanged, and the `laion_clap` package is not needed. Audio is resampled to
    48 kHz mono, cut to its `sizes`, then cropped or repeat-padded to 10 s as laion_clap's
    `get_audio_embedding_from_data`; crops of audio longer than 10 s are drawn from a generator
    seeded at construction, so a metric instance gives reproducible numbers.

    Args:
        model_path: path to a LAION-CLAP checkpoint (e.g. `music_audioset_epoch_15_esc_90.14.pt`),
            or `//reference/...`.
        model_arch: CLAP audio encoder architecture ('HTSAT-tiny', 'HTSAT-base', 'HTSAT-large').
        enable_fusion: whether the checkpoint uses feature fusion (not supported: must be False).
        text_model: hub name of the RoBERTa tokenizer and config laion_clap uses.
        seed: seed of the crop positions of audio longer than 10 s.
    """

    def __init__(self, model_path: tp.Union[str, Path], model_arch: str = 'HTSAT-tiny',
                 enable_fusion: bool = False, text_model: str = 'roberta-base', seed: int = 0):
        super().__init__()
        from ..modules.clap import load_clap_module
        self.register_buffer('cosine_sum', torch.tensor(0.), persistent=False)
        self.register_buffer('weight', torch.tensor(0.), persistent=False)
        self.model = load_clap_module(model_path, model_arch=model_arch, enable_fusion=enable_fusion,
                                      text_model=text_model)
        self.model_sample_rate = self.model.sample_rate
        self.rng = torch.Generator()
        self.rng.manual_seed(seed)

    def embed(self, audio: torch.Tensor, text: tp.List[str], sizes: torch.Tensor,
              sample_rates: torch.Tensor) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        """Unit-norm CLAP embeddings [B, D] of audio [B, C, T] (each cut to its size) and of `text`."""
        from ..data.audio_utils import convert_audio

        if audio.size(0) != len(text):
            raise ValueError("Number of audio and text samples should match.")
        if torch.any(sample_rates != sample_rates[0].item()):
            raise ValueError("All items in the batch must share one sample rate.")
        sample_rate = int(sample_rates[0].item())
        wavs = [convert_audio(wav[..., :int(size)], from_rate=sample_rate, to_rate=self.model_sample_rate,
                              to_channels=1)[0] for wav, size in zip(audio, sizes)]
        with torch.no_grad():
            audio_embeddings = self.model.get_audio_embedding_from_data(wavs, generator=self.rng)
            text_embeddings = self.model.get_text_embedding(text)
        return audio_embeddings, text_embeddings

    def reset(self) -> None:
        self.cosine_sum.zero_()
        self.weight.zero_()

    def update(self, audio: torch.Tensor, text: tp.List[str], sizes: torch.Tensor,
               sample_rates: torch.Tensor) -> None:
        """Add a batch of audio [B, C, T] (valid lengths `sizes`) with its `text` descriptions."""
        audio_embeddings, text_embeddings = self.embed(audio, text, sizes, sample_rates)
        cosine_sim = torch.nn.functional.cosine_similarity(audio_embeddings, text_embeddings, dim=1, eps=1e-8)
        self.cosine_sum += cosine_sim.sum(dim=0).to(self.cosine_sum)
        self.weight += cosine_sim.size(0)

    def compute(self) -> float:
        """Average similarity since the last reset (summed across workers when distributed)."""
        return distributed_mean(self.cosine_sum, self.weight, type(self).__name__)
