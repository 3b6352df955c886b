"""Installable package for the audiocraft library."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def _version() -> str:
    for line in (HERE / "audiocraft" / "__init__.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=")[1].strip().strip("'\"")
    raise RuntimeError("__version__ not found")


REQUIRED = [line.strip() for line in (HERE / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]

EXTRAS = {
    "demo": ["gradio"],
    # Kept for `pip install audiocraft[clap]` commands: CLAP is implemented here, laion_clap is not needed.
    "clap": [],
    # FAD and KLD need no extra package (VGGish and PaSST are implemented here); visqol-python is the
    # ViSQOL backend (numba makes it usable), scipy and torchvggish's numpy features are test references.
    "metrics": ["visqol-python[accel]>=3.8", "scipy>=1.10", "torchvggish>=0.2"],
    "wandb": ["wandb"],
    "dev": ["pytest", "pytest-timeout", "flake8", "nbclient", "nbformat", "ipykernel", "playwright", "tensorboard"],
}

setup(
    name="audiocraft",
    version=_version(),
    description="Audio generation research library: EnCodec, MusicGen, AudioGen and MAGNeT, "
                "compatible with AudioCraft checkpoints.",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    packages=find_packages(exclude=("tests", "tests.*", "benchmarks", "benchmarks.*")),
    include_package_data=True,
    # The offline `demo` MusicGen (model_cards/DEMO_MODEL_CARD.md) ships inside the package.
    package_data={"audiocraft": ["pretrained/demo/*.bin"]},
    install_requires=REQUIRED,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["audiocraft=audiocraft.__main__:main"]},
)
