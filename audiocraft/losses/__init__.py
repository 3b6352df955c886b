"""Loss functions for training audio models, and the gradient Balancer."""
# flake8: noqa
from .balancer import Balancer
from .loudnessloss import TFLoudnessRatio, TLoudnessRatio
from .sisnr import SISNR
from .stftloss import (
    LogSTFTMagnitudeLoss,
    MRSTFTLoss,
    SpectralConvergenceLoss,
    STFTLoss,
)
from .specloss import (
    MelSpectrogramL1Loss,
    MultiScaleMelSpectrogramLoss,
)
