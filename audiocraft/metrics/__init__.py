"""Evaluation metrics: FAD (VGGish), KLD (PaSST), CLAP text consistency, chroma cosine similarity,
relative volume mel and ViSQOL. `python -m audiocraft.metrics` computes them on folders of audio files.
"""
# flake8: noqa
from .chroma_cosinesim import ChromaCosineSimilarityMetric
from .clap_consistency import CLAPTextConsistencyMetric, TextConsistencyMetric
from .fad import FrechetAudioDistanceMetric, frechet_distance
from .kld import KLDivergenceMetric, PasstKLDivergenceMetric, kl_divergence
from .rvm import RelativeVolumeMel
from .visqol import ViSQOL
