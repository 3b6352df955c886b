"""Cluster detection and SLURM parameters for the machine we run on."""
from enum import Enum
import os
import platform
import socket
import typing as tp

import omegaconf


class ClusterType(Enum):
    """Known cluster flavours; DEFAULT covers any other machine."""
    AWS = "aws"
    FAIR = "fair"
    RSC = "rsc"
    LOCAL_DARWIN = "darwin"
    DEFAULT = None  # any other cluster (or a laptop / CI runner).


def _guess_cluster_type() -> ClusterType:
    uname = os.uname()
    fqdn = socket.getfqdn()
    if uname.sysname == "Linux" and (uname.release.endswith("-aws") or ".ec2" in fqdn):
        return ClusterType.AWS
    if fqdn.endswith(".fair"):
        return ClusterType.FAIR
    if fqdn.endswith(".facebook.com"):
        return ClusterType.RSC
    if platform.system() == "Darwin":
        return ClusterType.LOCAL_DARWIN
    return ClusterType.DEFAULT


def get_cluster_type(cluster_type: tp.Optional[ClusterType] = None) -> tp.Optional[ClusterType]:
    """Return `cluster_type` if given, else the type guessed from this machine."""
    if cluster_type is None:
        return _guess_cluster_type()
    return cluster_type


def get_slurm_parameters(cfg: omegaconf.DictConfig,
                         cluster_type: tp.Optional[ClusterType] = None) -> omegaconf.DictConfig:
    """Adapt a SLURM config to the cluster: AWS nodes take neither memory nor constraint requests."""
    from ..environment import AudioCraftEnvironment
    cluster_type = get_cluster_type(cluster_type)
    if cluster_type == ClusterType.AWS:
        cfg["mem_per_gpu"] = None
        cfg["constraint"] = None
        cfg["setup"] = []
    elif cluster_type == ClusterType.RSC:
        cfg["mem_per_gpu"] = None
        cfg["setup"] = []
        cfg["constraint"] = None
        cfg["partition"] = "learn"
    slurm_exclude = AudioCraftEnvironment.get_slurm_exclude()
    if slurm_exclude is not None:
        cfg["exclude"] = slurm_exclude
    return cfg
