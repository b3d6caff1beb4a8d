# The radstream worker/API image used by docker-compose.kafka.yml.
# Installed from uv.lock: the exact versions (and file hashes) the test suite ran with.
# The base image is pinned to the CPython release the suite runs on (3.11.7) and its Debian
# release; pin its digest too where the registry is reachable (docker pull, then @sha256:...).
FROM python:3.11.7-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    OPENBLAS_NUM_THREADS=1 \
    UV_PROJECT_ENVIRONMENT=/opt/radstream UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy \
    UV_NO_CACHE=1 PATH=/opt/radstream/bin:$PATH
WORKDIR /app
# Same uv as the Makefile's UV_VERSION.
RUN pip install uv==0.13.8
COPY pyproject.toml uv.lock README.md ./
# The third-party layer first (cached while only radstream's own code changes); --locked fails
# the build when uv.lock does not match pyproject.toml.
RUN uv sync --locked --no-dev --no-install-project
COPY schemas ./schemas
COPY streams ./streams
COPY sinks ./sinks
COPY gateway ./gateway
COPY observability ./observability
COPY cli ./cli
COPY compliance ./compliance
COPY model_registry ./model_registry
COPY samples ./samples
COPY app.py ./
# Editable: settings locate model_registry/ and the clinical rules relative to the source tree.
RUN uv sync --locked --no-dev && useradd --system --uid 10001 radstream \
    && mkdir -p /data/images /var/lib/radstream \
    && chown -R radstream /data/images /var/lib/radstream
USER radstream
ENTRYPOINT ["radstream"]
CMD ["worker"]
