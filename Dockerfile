FROM debian:bookworm-slim

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-icu python3-ldap ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent xcap

WORKDIR /opt/xcap-gateway
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY connectors ./connectors
# Only for builds behind a TLS-intercepting proxy: the path of its CA bundle, mounted
# into the build (scripts/container-smoke.sh does this); unset otherwise.
ARG PIP_CERT=""
# The venv sees Debian's PyICU (python3-icu, for sort_locale) and python-ldap (python3-ldap,
# the LDAP sources' faster client) through the system site packages: no compiler in the image.
RUN if [ -z "$PIP_CERT" ]; then unset PIP_CERT; fi \
    && python3 -m venv --system-site-packages /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir . \
    && rm -rf /opt/xcap-gateway/build

COPY config/container.toml /etc/xcap-gateway/gateway.toml
COPY --chown=xcap:xcap config/contacts /srv/xcap-gateway/contacts
RUN install -d -o xcap -g xcap /var/lib/xcap-gateway

ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
USER 10001:10001
VOLUME ["/etc/xcap-gateway", "/var/lib/xcap-gateway"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('XCAP_HEALTH_URL', 'http://127.0.0.1:8080/healthz'), timeout=4)"]
CMD ["xcap-gateway", "serve", "--config", "/etc/xcap-gateway/gateway.toml"]
