# corral-service: corral and every dependency in a venv at /opt/corral, installed offline.
# Built by compose/prepare from a context it assembles (wheels/, corral/, src/, bin/); the build
# downloads nothing.
FROM corral-base:bookworm

ARG PIP_VERSION
# Offline for good: any later pip call (e.g. a runtime-image build inside a worker) finds its
# wheels here or fails, it never reaches for an index.
ENV PIP_NO_INDEX=1 \
    PIP_FIND_LINKS=/opt/corral-wheels \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# Dependencies first: this layer changes only when pyproject.toml or the host's pins do.
COPY wheels/ /opt/corral-wheels/
RUN python3 -m venv /opt/corral \
 && /opt/corral/bin/pip install --no-cache-dir "pip==${PIP_VERSION}" \
 && /opt/corral/bin/pip install --no-cache-dir /opt/corral-wheels/*.whl

COPY corral/ /tmp/corral-wheel/
RUN /opt/corral/bin/pip install --no-cache-dir --no-deps /tmp/corral-wheel/*.whl && rm -rf /tmp/corral-wheel

# The source tree, for the runtime-image builder's hash (CORRAL_SOURCE_DIR), and the entrypoints.
COPY src/ /opt/corral-src/
COPY bin/ /opt/corral-bin/
ENV PATH=/opt/corral/bin:$PATH \
    CORRAL_SOURCE_DIR=/opt/corral-src

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["corral", "--help"]
