"""Where experiments, reference files and datasets live for the team and cluster we run on.

The team config is `config/teams/<AUDIOCRAFT_TEAM>.yaml` (default: `default`), holding one
section per cluster type (see `audiocraft.utils.cluster`). Environment variables override it:

- `AUDIOCRAFT_TEAM`: team config name; `AUDIOCRAFT_CONFIG`: explicit path to a team config;
- `AUDIOCRAFT_CLUSTER`: cluster section to use instead of the guessed one;
- `AUDIOCRAFT_DORA_DIR`: Dora output folder (XPs, checkpoints, logs);
- `AUDIOCRAFT_REFERENCE_DIR`: folder that `//reference/...` paths resolve into;
- `AUDIOCRAFT_CACHE_DIR`: download cache for pretrained models.

Nothing is cached between calls: every class method reads the environment again, so
changing a variable (e.g. in tests) takes effect immediately.
"""
import logging
import os
from pathlib import Path
import re
import typing as tp

import omegaconf

from .utils.cluster import _guess_cluster_type

logger = logging.getLogger(__name__)

_CONFIG_ROOT = Path(__file__).parent.parent / "config"


class AudioCraftEnvironment:
    """Team and cluster configuration, read from the environment at construction."""
    DEFAULT_TEAM = "default"

    def __init__(self) -> None:
        self.team: str = os.getenv("AUDIOCRAFT_TEAM", self.DEFAULT_TEAM)
        guessed = _guess_cluster_type().value
        self.cluster: str = os.getenv("AUDIOCRAFT_CLUSTER", guessed or "default")
        config_path = Path(os.getenv("AUDIOCRAFT_CONFIG", _CONFIG_ROOT / "teams" / f"{self.team}.yaml"))
        if not config_path.exists():
            available = sorted(p.stem for p in (_CONFIG_ROOT / "teams").glob("*.yaml"))
            raise FileNotFoundError(
                f"Team config {config_path} not found. Set AUDIOCRAFT_TEAM to one of {available} "
                "or AUDIOCRAFT_CONFIG to the path of a team config file.")
        self.config = omegaconf.OmegaConf.load(config_path)
        self._dataset_mappers: tp.List[tp.Tuple[re.Pattern, str]] = []
        cluster_config = self._get_cluster_config()
        for pattern, repl in (cluster_config.get("dataset_mappers") or {}).items():
            self._dataset_mappers.append((re.compile(pattern), repl))

    def _get_cluster_config(self) -> omegaconf.DictConfig:
        assert isinstance(self.config, omegaconf.DictConfig)
        if self.cluster in self.config:
            return self.config[self.cluster]
        if "default" in self.config:
            return self.config["default"]
        raise KeyError(f"Cluster '{self.cluster}' has no section in the team config '{self.team}' "
                       f"and no 'default' section exists. Sections: {list(self.config.keys())}.")

    @classmethod
    def instance(cls) -> "AudioCraftEnvironment":
        """A fresh environment object (kept for AudioCraft API compatibility; nothing is cached)."""
        return cls()

    @classmethod
    def reset(cls) -> None:
        """No-op: environments are never cached, there is nothing to clear."""

    @classmethod
    def get_team(cls) -> str:
        return cls().team

    @classmethod
    def get_cluster(cls) -> str:
        return cls().cluster

    @classmethod
    def _dir_from_env_or_config(cls, env_var: str, key: str) -> Path:
        env = os.getenv(env_var)
        if env:
            return Path(env)
        return Path(str(cls()._get_cluster_config()[key]))

    @classmethod
    def get_dora_dir(cls) -> Path:
        """Dora output folder: AUDIOCRAFT_DORA_DIR, else the team config's `dora_dir`."""
        return cls._dir_from_env_or_config("AUDIOCRAFT_DORA_DIR", "dora_dir")

    @classmethod
    def get_reference_dir(cls) -> Path:
        """Folder holding reference files (metric models...): AUDIOCRAFT_REFERENCE_DIR or config."""
        return cls._dir_from_env_or_config("AUDIOCRAFT_REFERENCE_DIR", "reference_dir")

    @classmethod
    def get_cache_dir(cls) -> tp.Optional[Path]:
        """Download cache for pretrained models (AUDIOCRAFT_CACHE_DIR), None for the hub default."""
        env = os.getenv("AUDIOCRAFT_CACHE_DIR")
        return Path(env) if env else None

    @classmethod
    def get_slurm_exclude(cls) -> tp.Optional[str]:
        return cls()._get_cluster_config().get("slurm_exclude")

    @classmethod
    def get_slurm_partitions(cls, partition_types: tp.Optional[tp.List[str]] = None) -> str:
        """Comma separated SLURM partitions for the given partition types (default: global, team)."""
        partition_types = partition_types or ["global", "team"]
        partitions = cls()._get_cluster_config()["partitions"]
        missing = [t for t in partition_types if t not in partitions]
        if missing:
            raise KeyError(f"Unknown partition types {missing}; known: {list(partitions.keys())}.")
        return ",".join(str(partitions[t]) for t in partition_types)

    @classmethod
    def resolve_reference_path(cls, path: tp.Union[str, Path]) -> Path:
        """Turn `//reference/x` into `<reference_dir>/x`; other paths are returned unchanged."""
        path = str(path)
        if path.startswith("//reference"):
            reference_dir = cls.get_reference_dir()
            path = str(reference_dir) + path[len("//reference"):]
        return Path(path)

    @classmethod
    def apply_dataset_mappers(cls, path: str) -> str:
        """Rewrite a dataset path with the cluster's `dataset_mappers` regexes."""
        for pattern, repl in cls()._dataset_mappers:
            path = pattern.sub(repl, path)
        return path
