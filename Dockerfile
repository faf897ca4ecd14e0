# The exporter image used by deploy/ (non-root, read-only root filesystem friendly).
FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    CHARGEBACK_MIXIN_DIR=/opt/chargeback/rules CHARGEBACK_DASHBOARDS_DIR=/opt/chargeback/dashboards
WORKDIR /opt/chargeback
COPY pyproject.toml README.md ./
COPY exporter exporter
COPY rules rules
COPY dashboards dashboards
RUN pip install --no-cache-dir . && rm -rf /root/.cache
USER 65534:65534
EXPOSE 9184
ENTRYPOINT ["chargeback"]
CMD ["serve"]
