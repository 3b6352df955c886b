"""Loading the weights of metric models from a local path, a `//reference/` path or a URL."""
from pathlib import Path
import typing as tp

import torch


def load_weights(path_or_url: tp.Union[str, Path], what: str) -> tp.Any:
    """Load a torch-saved object (usually a state dict) for the metric model `what`.

    `path_or_url` is a local file, `//reference/...` (resolved with AudioCraftEnvironment) or an
    http(s) URL, downloaded once into the torch hub cache (`$TORCH_HOME/hub/checkpoints`).
    """
    from ..environment import AudioCraftEnvironment
    text = str(path_or_url)
    if text.startswith(('http://', 'https://')):
        try:
            return torch.hub.load_state_dict_from_url(text, map_location='cpu', progress=True)
        except Exception as exc:  # network errors come in many types
            raise RuntimeError(f"Could not download the {what} weights from {text} ({exc}). Download the file "
                               f"by hand and give its local path instead (see docs/METRICS.md).") from exc
    path = AudioCraftEnvironment.resolve_reference_path(text)
    if not path.is_file():
        raise FileNotFoundError(f"{what} weights not found at {path}. See docs/METRICS.md for where to get them, "
                                f"or give a local path or URL in the metric's config.")
    # The PCA parameters of VGGish are numpy arrays: weights_only would refuse them.
    return torch.load(path, map_location='cpu', weights_only=False)
