# wan-exporter on a CUDA base image.
#
#   docker build -t wan-exporter:0.1.0 .
#   docker run --rm --gpus all -p 9834:9834 --read-only --tmpfs /tmp \
#     -v wan-exporter-state:/var/lib/wan-exporter \
#     -v ~/.cache/huggingface/hub:/models:ro wan-exporter:0.1.0
#
# torch 2.13 wheels from PyPI bundle CUDA 13.0 (host driver >= 580). For an older driver build
# against a matching base and wheel index, for example:
#   --build-arg CUDA_IMAGE=nvidia/cuda:12.8.1-base-ubuntu24.04 \
#   --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 --build-arg TORCH_VERSION=<published there>
# The base image only has to carry the NVIDIA container-runtime settings: torch brings its own
# CUDA user-space libraries and the runtime injects the driver (libcuda, libnvidia-ml).
#
# Nothing secret is baked in: TLS keys, basic-auth files and configs are mounted at run time.

ARG CUDA_IMAGE=nvidia/cuda:13.0.1-base-ubuntu24.04

# --------------------------------------------------------------------------- build
FROM ${CUDA_IMAGE} AS build

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://pypi.org/simple
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Ubuntu's own python3 (3.12 on 24.04); the versions move with the pinned base image.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*

RUN python3 -m venv /opt/wan-exporter
ENV PATH=/opt/wan-exporter/bin:$PATH

# torch first and on its own: the largest layer, and the one that selects the CUDA build.
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

WORKDIR /src
COPY deploy/docker/constraints.txt /tmp/constraints.txt
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY exporter/ exporter/
# The rules, Alertmanager config and dashboards ship inside the package (`wan-exporter assets`).
COPY alerting/ alerting/
COPY grafana/ grafana/
# accelerate: diffusers' low-memory loading and model/group CPU offload need it on a GPU.
# Versions come from the constraints file (the ones the test suite runs against).
# hadolint ignore=DL3013
RUN pip install --constraint /tmp/constraints.txt . accelerate \
 && python3 -m compileall -q /opt/wan-exporter \
 && wan-exporter --version

# --------------------------------------------------------------------------- runtime
FROM ${CUDA_IMAGE}

LABEL org.opencontainers.image.title="wan-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Wan video-generation models on NVIDIA GPUs" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"

# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 wan \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/wan-exporter --no-create-home \
      --shell /usr/sbin/nologin wan \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/wan-exporter /var/lib/wan-exporter/state \
      /var/lib/wan-exporter/cache /var/lib/wan-exporter/tiny-models \
 && install -d -m 0755 /models

COPY --from=build /opt/wan-exporter /opt/wan-exporter

# Everything the process writes lives under /var/lib/wan-exporter (a volume) or /tmp (a tmpfs),
# so the container runs with a read-only root filesystem. Models are read from /models, a
# read-only mount of a Hugging Face hub cache; nothing is ever downloaded (HF_HUB_OFFLINE).
ENV PATH=/opt/wan-exporter/bin:$PATH \
    HOME=/var/lib/wan-exporter \
    XDG_STATE_HOME=/var/lib/wan-exporter/state \
    XDG_CACHE_HOME=/var/lib/wan-exporter/cache \
    WAN_EXPORTER_CACHE=/var/lib/wan-exporter/tiny-models \
    HF_HUB_CACHE=/models \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    WAN_EXPORTER_HEALTHCHECK_URL=http://127.0.0.1:9834/-/healthy

VOLUME ["/var/lib/wan-exporter"]
USER 10001:10001
WORKDIR /var/lib/wan-exporter
EXPOSE 9834

# No curl in the image: the venv's Python does the probe. Set WAN_EXPORTER_HEALTHCHECK_URL
# when the listen address changes (or to https://... with --web.config.file TLS).
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['WAN_EXPORTER_HEALTHCHECK_URL'], timeout=4)"]

ENTRYPOINT ["wan-exporter"]
CMD []
