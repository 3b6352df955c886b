"""audiocraft.modules.conditioners: conditioning attributes, conditioners, provider, fuser and dropout."""
# flake8: noqa
from .base import (BaseConditioner, CFGConditions, ConditionTensors, ConditionType, ConditioningAttributes,
                   JointEmbedCondition, SegmentWithAttributes, TextCondition, TextConditioner, WavCondition,
                   WaveformConditioner, nullify_condition, nullify_joint_embed, nullify_wav)
from .text import (LUTConditioner, NoopTokenizer, T5Conditioner, Tokenizer, WhiteSpaceTokenizer,
                   hash_trick)
from .chroma_stem import ChromaStemConditioner
from .clap import CLAPEmbeddingConditioner, JointEmbeddingConditioner
from .provider import ConditioningProvider
from .fuser import ConditionFuser
from .dropout import (AttributeDropout, ClassifierFreeGuidanceDropout, DropoutModule,
                      dropout_condition)
