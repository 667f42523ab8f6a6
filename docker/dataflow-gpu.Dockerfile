# SDK container for Dataflow workers with GPUs (`--sdk_container_image`): the same Beam and Python
# as the launcher (pickled DoFns only load in the same versions), the CUDA build of torch, and
# armdata installed, so no --setup_file is needed. Dataflow installs the NVIDIA driver
# (`worker_accelerator=...;install-nvidia-driver`); the torch wheels bring their CUDA runtime.
#
#   docker build -f docker/dataflow-gpu.Dockerfile -t REGION-docker.pkg.dev/PROJECT/armdata/gpu:TAG .
#   docker push REGION-docker.pkg.dev/PROJECT/armdata/gpu:TAG
#
# Keep PYTHON_VERSION/BEAM_VERSION equal to `python --version` / `pip show apache-beam` where you
# launch, and pick the TORCH_INDEX of a CUDA version the Dataflow driver supports.
ARG PYTHON_VERSION=3.11
ARG BEAM_VERSION=2.77.0
FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION}

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128

WORKDIR /opt/armdata
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"
COPY setup.py pyproject.toml README.md ./
COPY armdata armdata
COPY pipeline pipeline
COPY trainer trainer
COPY exports exports
COPY transforms transforms
COPY schemas schemas
COPY models models
COPY configs configs
COPY prompts prompts
COPY testing testing
# Beam is already in the image at the launcher's version; keep it (and torch) as they are.
RUN pip install --no-cache-dir ".[gcp]" "apache-beam[gcp]==$(pip show apache-beam | sed -n 's/^Version: //p')" \
    && python -c "import apache_beam, torch, armdata.commands.build; print(apache_beam.__version__, torch.__version__)"

# The Beam SDK harness is the entry point Dataflow starts.
ENTRYPOINT ["/opt/apache/beam/boot"]
