# The radstream worker/API image used by docker-compose.kafka.yml.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    OPENBLAS_NUM_THREADS=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY streams ./streams
COPY sinks ./sinks
COPY gateway ./gateway
COPY observability ./observability
COPY cli ./cli
COPY model_registry ./model_registry
COPY samples ./samples
COPY app.py ./
# Editable: settings locate model_registry/ and the clinical rules relative to the source tree.
RUN pip install -e . && useradd --system --uid 10001 radstream && mkdir -p /data/images /var/lib/radstream \
    && chown -R radstream /data/images /var/lib/radstream
USER radstream
ENTRYPOINT ["radstream"]
CMD ["worker"]
