# The project image: the Dagster code location, webserver and daemon of docker-compose.yml.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    DAGSTER_HOME=/opt/dagster/home \
    PATH=/opt/retail-lakehouse/.venv/bin:$PATH

RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /opt/retail-lakehouse

# Dependencies first (cached layer), then the project itself.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --locked --no-dev --no-install-project
COPY . .
RUN uv sync --locked --no-dev \
    && DBT_DUCKDB_PATH=:memory: LAKE_URI=unused \
       dagster-dbt project prepare-and-package --file orchestration/defs/marts/project.py \
    && mkdir -p "$DAGSTER_HOME" \
    && cp deploy/dagster/dagster.yaml deploy/dagster/workspace.yaml "$DAGSTER_HOME/"

EXPOSE 3000 4000
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "orchestration.definitions"]
