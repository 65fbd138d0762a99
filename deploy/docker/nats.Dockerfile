# A nats-server image from the nats-server module version the project pins
# in go.mod, compiled on the host (CGO off) by deploy/docker/build.sh: for
# machines that cannot pull the official image. Any nats-server 2.10+ image
# works in its place (NATS_IMAGE in deploy/compose/.env).
#
# JetStream stores under /data (owned by the image's user); the monitoring
# port 8222 serves /healthz, which the HEALTHCHECK asks.
FROM scratch
ARG VERSION=dev
LABEL org.opencontainers.image.title="nats-server" \
      org.opencontainers.image.description="nats-server built from the module dataflare pins" \
      org.opencontainers.image.version="${VERSION}"
COPY --chown=65532:65532 rootfs/ /
COPY bin/nats-server bin/healthcheck /
USER 65532:65532
ENV HOME=/home/nonroot
EXPOSE 4222 6222 8222
HEALTHCHECK --interval=2s --timeout=2s --start-period=30s --retries=3 \
    CMD ["/healthcheck", "http://127.0.0.1:8222/healthz"]
ENTRYPOINT ["/nats-server"]
CMD ["--jetstream", "--store_dir", "/data", "--http_port", "8222"]
