# DermTriage service image: the web service and API on port 8000, as a non-root user.
#
# CPU (default):
#   docker build -t dermtriage:cpu .
# NVIDIA GPU (CUDA base image, CUDA build of PyTorch; run with --gpus all):
#   docker build -t dermtriage:cuda \
#     --build-arg BASE_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 \
#     --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126 .
# Run:
#   docker run --rm -p 8000:8000 -v dermtriage-data:/var/lib/dermtriage dermtriage:cpu
# docs/deployment.md explains every argument, variable and volume.

ARG BASE_IMAGE=python:3.11.11-slim-bookworm

# --- base: the Python both stages share ------------------------------------------------------
FROM ${BASE_IMAGE} AS base
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
# The python image already has Python; CUDA images have none, so take the distribution's
# (3.12 on Ubuntu 24.04). Its version follows the base image, hence no version pin here.
# hadolint ignore=DL3008
RUN if ! command -v python3 >/dev/null 2>&1; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi

# --- build: a virtual environment with PyTorch for the chosen device, then DermTriage ---------
FROM base AS build
# The CPU wheel index keeps the image about 4 GB smaller than PyPI's default CUDA build.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
RUN python3 -m venv /opt/venv \
    && pip install --no-cache-dir --index-url "${TORCH_INDEX}" \
        "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY models ./models
COPY training ./training
COPY serving ./serving
# The shipped model folder is optional: copied aside when the checkout has one.
RUN pip install --no-cache-dir . \
    && mkdir -p /opt/shipped \
    && if [ -d models/shipped ]; then cp -a models/shipped/. /opt/shipped/; fi

# --- runtime: the virtual environment, the shipped model, nothing else ------------------------
FROM base AS runtime
RUN groupadd --system --gid 10001 dermtriage \
    && useradd --system --uid 10001 --gid 10001 --create-home \
        --home-dir /var/lib/dermtriage --shell /usr/sbin/nologin dermtriage
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/shipped /opt/dermtriage/models/shipped
ENV DERMTRIAGE_DATA_DIR=/var/lib/dermtriage \
    DERMTRIAGE_SHIPPED_MODEL_DIR=/opt/dermtriage/models/shipped \
    DERMTRIAGE_DATASET_DIR=/opt/dermtriage/derm-dev \
    DERMTRIAGE_HOST=0.0.0.0 \
    DERMTRIAGE_PORT=8000
USER 10001:10001
WORKDIR /var/lib/dermtriage
VOLUME ["/var/lib/dermtriage"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('DERMTRIAGE_PORT', '8000') + '/healthz', timeout=4)"]
CMD ["dermtriage", "serve", "--host", "0.0.0.0"]
