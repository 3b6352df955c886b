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
    "clap": ["laion_clap"],
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
    install_requires=REQUIRED,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["audiocraft=audiocraft.__main__:main"]},
)
