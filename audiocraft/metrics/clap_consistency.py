"""Text consistency of generated audio: cosine similarity of CLAP text and audio embeddings.

Needs the optional `laion_clap` package (extra `clap`) and a local CLAP checkpoint file.
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

    Args:
        model_path: path to a LAION-CLAP checkpoint (e.g. `music_audioset_epoch_15_esc_90.14.pt`).
        model_arch: CLAP audio encoder architecture.
        enable_fusion: whether the checkpoint uses feature fusion.
    """

    def __init__(self, model_path: tp.Union[str, Path], model_arch: str = 'HTSAT-tiny',
                 enable_fusion: bool = False):
        super().__init__()
        try:
            import laion_clap  # noqa: F401
        except ImportError as exc:
            # laion_clap imports torchvision at import time: name what is actually missing.
            raise ImportError(f"CLAPTextConsistencyMetric needs laion_clap and what it imports (torchvision "
                              f"built for this torch): `pip install audiocraft[clap]`. Import failed with: {exc}"
                              ) from exc
        if not Path(model_path).is_file():
            raise FileNotFoundError(f"CLAP checkpoint not found: {model_path}")
        self.register_buffer('cosine_sum', torch.tensor(0.), persistent=False)
        self.register_buffer('weight', torch.tensor(0.), persistent=False)
        self._initialize_model(Path(model_path), model_arch, enable_fusion)

    def _initialize_model(self, model_path: Path, model_arch: str, enable_fusion: bool) -> None:
        import laion_clap
        from laion_clap.clap_module.factory import load_state_dict as load_clap_state_dict
        from transformers import RobertaTokenizer

        self.tokenize = RobertaTokenizer.from_pretrained('roberta-base')
        self.model = laion_clap.CLAP_Module(enable_fusion=enable_fusion, amodel=model_arch)
        self.model_sample_rate = 48_000
        state = load_clap_state_dict(str(model_path))
        # laion_clap checkpoints may carry keys of a newer transformers; load what matches.
        self.model.model.load_state_dict(state, strict=False)
        self.model.eval()

    def _tokenizer(self, texts: tp.Union[str, tp.List[str]]) -> dict:
        return self.tokenize(texts, padding="max_length", truncation=True, max_length=77, return_tensors="pt")

    def reset(self) -> None:
        self.cosine_sum.zero_()
        self.weight.zero_()

    def update(self, audio: torch.Tensor, text: tp.List[str], sizes: torch.Tensor,
               sample_rates: torch.Tensor) -> None:
        """Add a batch of audio [B, C, T] with its `text` descriptions."""
        from ..data.audio_utils import convert_audio

        if audio.size(0) != len(text):
            raise ValueError("Number of audio and text samples should match.")
        if torch.any(sample_rates != sample_rates[0].item()):
            raise ValueError("All items in the batch must share one sample rate.")
        sample_rate = int(sample_rates[0].item())
        audio = convert_audio(audio, from_rate=sample_rate, to_rate=self.model_sample_rate, to_channels=1)
        audio_embeddings = self.model.get_audio_embedding_from_data(audio.squeeze(1), use_tensor=True)
        text_embeddings = self.model.get_text_embedding(text, tokenizer=self._tokenizer, use_tensor=True)
        cosine_sim = torch.nn.functional.cosine_similarity(audio_embeddings, text_embeddings, dim=1, eps=1e-8)
        self.cosine_sum += cosine_sim.sum(dim=0).to(self.cosine_sum)
        self.weight += cosine_sim.size(0)

    def compute(self) -> float:
        """Average similarity since the last reset (summed across workers when distributed)."""
        return distributed_mean(self.cosine_sum, self.weight, type(self).__name__)
