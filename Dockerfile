# syntax=docker/dockerfile:1
#
# qrank's container images. Two final targets, tagged as the Helm chart expects:
#
#   docker build --target cpu  -t ghcr.io/qrank/qrank:0.1.0-cpu  .   # Debian slim, classical models
#   docker build --target cuda -t ghcr.io/qrank/qrank:0.1.0-cuda .   # CUDA runtime, --features cuda
#
# `cpu` is the last stage, so a plain `docker build .` gives the image that runs anywhere.
# Both run `qrank serve --config /etc/qrank/qrank.toml` as the non-root user `qrank`
# (uid/gid 10001, the chart's runAsUser), keep the Hugging Face cache under
# /var/cache/qrank (HF_HOME) and serve /metrics, /healthz and /readyz on port 9464.
# The root filesystem may be read-only: everything written goes to /var/cache/qrank and /tmp,
# which the chart mounts as emptyDir volumes.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm
# The GPU machines run driver 580 (CUDA 13.0): build and run with 13.0, not newer.
ARG CUDA_VERSION=13.0.0
ARG CUDA_UBUNTU=ubuntu24.04

# ---------------------------------------------------------------------------------------------
# CPU build: the workspace's default features (BRISQUE, NIQE; no model code, no download).
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build-cpu
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,id=qrank-target-cpu \
    cargo build --release --locked -p actors --bin qrank \
    && install -D -m 0755 target/release/qrank /out/qrank

# ---------------------------------------------------------------------------------------------
# CUDA build: candle's kernels need nvcc, so build on the CUDA devel image with rustup.
FROM nvidia/cuda:${CUDA_VERSION}-devel-${CUDA_UBUNTU} AS build-cuda
ARG RUST_VERSION
# Compute capability of the kernels candle compiles: 90 for H100/H200; 80 for A100, 89 for L4/L40.
ARG CUDA_COMPUTE_CAP=90
# Until the actors crate forwards a `cuda` feature of its own, enable the engine's directly.
ARG CARGO_FEATURES=engine/cuda
ENV CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP} \
    RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:${PATH}
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl build-essential pkg-config \
    && rm -rf /var/lib/apt/lists/* \
    && curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
       | sh -s -- -y --profile minimal --default-toolchain "${RUST_VERSION}"
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,id=qrank-target-cuda \
    cargo build --release --locked -p actors --bin qrank --features "${CARGO_FEATURES}" \
    && install -D -m 0755 target/release/qrank /out/qrank

# ---------------------------------------------------------------------------------------------
# GPU image: the CUDA runtime image carries libcudart, libcublas and libcurand, which the
# binary links.
FROM nvidia/cuda:${CUDA_VERSION}-runtime-${CUDA_UBUNTU} AS cuda
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 qrank \
    && useradd --system --uid 10001 --gid qrank --home-dir /var/cache/qrank --shell /usr/sbin/nologin qrank \
    && install -d -o qrank -g qrank /var/cache/qrank /etc/qrank \
    && printf '# Defaults apply; override any key with QRANK_<SECTION>__<KEY>, or mount a file here.\n' \
       >/etc/qrank/qrank.toml
COPY --from=build-cuda /out/qrank /usr/local/bin/qrank
ENV HF_HOME=/var/cache/qrank/huggingface \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
WORKDIR /var/cache/qrank
EXPOSE 9464
ENTRYPOINT ["qrank"]
CMD ["serve", "--config", "/etc/qrank/qrank.toml"]

# ---------------------------------------------------------------------------------------------
# CPU image (default target): Debian slim with CA certificates for HTTPS object stores.
FROM debian:${DEBIAN_RELEASE}-slim AS cpu
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 qrank \
    && useradd --system --uid 10001 --gid qrank --home-dir /var/cache/qrank --shell /usr/sbin/nologin qrank \
    && install -d -o qrank -g qrank /var/cache/qrank /etc/qrank \
    && printf '# Defaults apply; override any key with QRANK_<SECTION>__<KEY>, or mount a file here.\n' \
       >/etc/qrank/qrank.toml
COPY --from=build-cpu /out/qrank /usr/local/bin/qrank
ENV HF_HOME=/var/cache/qrank/huggingface
USER 10001:10001
WORKDIR /var/cache/qrank
EXPOSE 9464
ENTRYPOINT ["qrank"]
CMD ["serve", "--config", "/etc/qrank/qrank.toml"]
