# syntax=docker/dockerfile:1
# One parameterised image for every deployable: the operator (default) or a service.
#   docker build -t ghcr.io/xynergy/operator:0.1.0 .
#   docker build --build-arg APP=services.gateway -t ghcr.io/xynergy/gateway:0.1.0 .
# Without a daemon, `make images` builds the same layout (hack/image/build.sh: mmdebstrap +
# pip wheels + umoci). Python packages are pinned by hack/image/constraints.txt; pin the base
# by digest in CI (`--build-arg PYTHON_IMAGE=...@sha256:...`): no registry was reachable to
# resolve one when this was written, and this file has not been built with Docker here.
ARG PYTHON_IMAGE=docker.io/library/python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY hack/image/constraints.txt hack/image/constraints.txt
COPY apis apis
COPY adapters adapters
COPY controllers controllers
COPY intelligence intelligence
COPY services services
RUN pip wheel --no-cache-dir --wheel-dir /wheels --constraint hack/image/constraints.txt . \
 && pip install --no-cache-dir --no-index --find-links /wheels --target /opt/xynergy/lib xynergy \
 && rm -rf /opt/xynergy/lib/bin

FROM ${PYTHON_IMAGE}
ARG APP=controllers
ENV PYTHONPATH=/opt/xynergy/lib PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 APP=${APP}
RUN groupadd --system --gid 65532 xynergy \
 && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --shell /usr/sbin/nologin xynergy \
 && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/*
COPY --from=build /opt/xynergy /opt/xynergy
WORKDIR /opt/xynergy
USER 65532:65532
ENTRYPOINT ["sh", "-c", "exec python3 -m \"$APP\" \"$@\"", "--"]
