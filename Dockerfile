# Ara's sidecar for a cluster (#23): one image for the API server and the render workers.
#   docker compose up --build        (see docker-compose.yml)
# CPU by default; for GPU workers build with --build-arg EXTRAS=cluster,torch on a CUDA-capable host.
FROM python:3.12-slim

ARG EXTRAS=cluster
WORKDIR /app
COPY pyproject.toml README.md ./
COPY sidecar ./sidecar
RUN pip install --no-cache-dir ".[${EXTRAS}]"
# configuration, personas and (user-supplied, optional) weights, read from ARA_HOME
COPY config ./config
COPY personas ./personas
COPY models ./models

ENV ARA_HOME=/app \
    ARA_CACHE_DIR=/var/cache/ara \
    ARA_CLUSTER_STORE=/shared \
    PYTHONUNBUFFERED=1
EXPOSE 7870
CMD ["ara-sidecar", "serve", "--host", "0.0.0.0"]
