# Prometheus built from its Go module on the host (CGO off), for machines
# that cannot pull prom/prometheus: `deploy/docker/build.sh prometheus`.
# The module build has no web UI assets (the UI needs npm); the HTTP API,
# scraping, rules and alerts work. Data in /prometheus.
FROM scratch
ARG VERSION=dev
LABEL org.opencontainers.image.title="prometheus" \
      org.opencontainers.image.description="Prometheus built from its Go module" \
      org.opencontainers.image.version="${VERSION}"
COPY --chown=65532:65532 rootfs/ /
COPY bin/prometheus /bin/prometheus
USER 65532:65532
ENV HOME=/home/nonroot
EXPOSE 9090
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
