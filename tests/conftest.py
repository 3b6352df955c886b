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
