# syntax=docker/dockerfile:1
# Example floe application image: the workloads in k8s/workloads/ run it. ENTRYPOINT is
# `opentelemetry-instrument`, so `docker run <image> dbt build ...` or `... python job.py` is traced
# with zero code changes (the Kubernetes manifests also set `command: [opentelemetry-instrument]`
# explicitly, so they do not depend on the image's ENTRYPOINT).
#
# Build from the repository root:
#   docker build -f k8s/image/app.Dockerfile -t ghcr.io/floe-dev/floe-example-app:0.1.0 .
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OTEL_PYTHON_DISTRO=floe \
    OTEL_PYTHON_CONFIGURATOR=floe \
    OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf

WORKDIR /src
COPY k8s/image/requirements.txt k8s/image/app-requirements.txt /tmp/
COPY pyproject.toml ./
COPY floe_otel_distro ./floe_otel_distro
COPY configurators ./configurators
RUN pip install /src -r /tmp/requirements.txt -r /tmp/app-requirements.txt \
    && rm -rf /src/build

# Application code, where the manifests expect it (/app/jobs, /app/dagster, /app/dbt/jaffle).
COPY k8s/image/app/ /app/
COPY tests/projects/jaffle /app/dbt/jaffle

RUN useradd --uid 10001 --create-home floe
USER 10001
WORKDIR /app

ENTRYPOINT ["opentelemetry-instrument"]
CMD ["python", "/app/jobs/refresh_readings.py"]
