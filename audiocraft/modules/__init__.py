"""audiocraft.modules"""
# flake8: noqa
from .streaming import StreamingModule, StreamingSequential
from .conv import (
    NormConv1d,
    NormConv2d,
    NormConvTranspose1d,
    NormConvTranspose2d,
    StreamableConv1d,
    StreamableConvTranspose1d,
    pad_for_conv1d,
    pad1d,
    unpad1d,
)
from .lstm import StreamableLSTM
from .seanet import SEANetEncoder, SEANetDecoder
from .transformer import StreamingMultiheadAttention, StreamingTransformer, StreamingTransformerLayer
