# memproxy: `docker build -t memproxy .` then
#   docker run -p 8283:8283 -v memproxy-data:/data -e MEMPROXY_API_KEYS=change-me memproxy
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MEMPROXY_HOST=0.0.0.0 \
    MEMPROXY_PORT=8283 \
    MEMPROXY_DATA_DIR=/data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY memory ./memory
COPY tools ./tools
COPY bench ./bench
RUN pip install --no-cache-dir . && useradd --system --uid 10001 memproxy && mkdir -p /data && chown memproxy /data

USER memproxy
VOLUME ["/data"]
EXPOSE 8283
# Binding 0.0.0.0 needs MEMPROXY_API_KEYS; pass --insecure only behind a trusted network boundary.
ENTRYPOINT ["memproxy"]
CMD ["serve"]
