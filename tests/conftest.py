"""Test-suite wide set-up: offline hub caches shipped in tests/reference."""
import os
from pathlib import Path

import pytest

REFERENCE = Path(__file__).parent / "reference"
CASES = REFERENCE / "cases"

# The real loading code (transformers, demucs) runs offline against these caches.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_CACHE", str(REFERENCE / "hf_cache"))
os.environ.setdefault("TORCH_HOME", str(REFERENCE / "torch_home"))
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    return REFERENCE


@pytest.fixture(scope="session")
def cases_dir() -> Path:
    return CASES


@pytest.fixture(scope="module")
def single_thread():
    """One torch thread for a module's tests (`pytestmark = pytest.mark.usefixtures('single_thread')`):
    tiny models avoid OpenMP synchronisation costs on a shared, busy CPU."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
