# The image that `bootstrap-repro run --runtime.name docker` trains in (build args: docker/README.md).
# BASE_IMAGE must provide `python` (>= 3.10) with pip; a PyTorch base keeps its own CUDA torch.
ARG BASE_IMAGE=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
FROM ${BASE_IMAGE}

# PIP_ARGS: extra pip arguments (another index; `--no-index --find-links URL` for offline builds).
# EXTRAS: the optional dependency groups of pyproject.toml to install.
ARG PIP_ARGS=""
ARG EXTRAS="examples postgres"
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# The run record reads the code repo with git.
RUN command -v git >/dev/null 2>&1 || { apt-get update && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*; }

WORKDIR /opt/bootstrap-repro
# Dependencies first: this layer stays cached while only the package's code changes.
COPY pyproject.toml docker/install_deps.py ./
RUN python install_deps.py --extras "${EXTRAS}" -- ${PIP_ARGS}

COPY README.md setup.py ./
COPY bootstrap_repro ./bootstrap_repro
RUN python -m pip install --no-deps --no-build-isolation ${PIP_ARGS} . \
    && rm -rf build ./*.egg-info \
    && python -c "import bootstrap_repro" \
    && python -c "import bootstrap.lib.utils"

COPY docker/entrypoint.sh /usr/local/bin/bootstrap-repro-entrypoint
WORKDIR /
ENTRYPOINT ["/usr/local/bin/bootstrap-repro-entrypoint"]
CMD ["bootstrap-repro", "--help"]
