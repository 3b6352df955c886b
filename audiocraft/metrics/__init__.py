"""Evaluation metrics: chroma cosine similarity, relative volume mel, CLAP text consistency.

FAD, KLD (PaSST) and ViSQOL are not provided: they need external models or binaries that cannot be
obtained offline.
"""
# flake8: noqa
from .chroma_cosinesim import ChromaCosineSimilarityMetric
from .clap_consistency import CLAPTextConsistencyMetric, TextConsistencyMetric
from .rvm import RelativeVolumeMel
