# The dataflare image from binaries compiled on the host, the way release
# tools such as goreleaser build images: no base image, nothing to pull.
# deploy/docker/build.sh prepares the build context (bin/, rootfs/) and runs
# this; Dockerfile beside it is the same image built in a multi-stage build,
# for machines that can pull golang.
#
# One static binary (CGO off) runs every role: the command picks it.
#   docker run dataflare:dev coordinator --replicas 3 --http :9090
#   docker run dataflare:dev worker --http :9090
# The HEALTHCHECK asks /healthz on port 9090: run the daemons with
# --http :9090 (the default command does), or override the healthcheck.
FROM scratch
ARG VERSION=dev
LABEL org.opencontainers.image.title="dataflare" \
      org.opencontainers.image.description="DataFlare coordinator, worker and CLI" \
      org.opencontainers.image.version="${VERSION}"
COPY --chown=65532:65532 rootfs/ /
COPY bin/dataflare bin/healthcheck /
USER 65532:65532
ENV HOME=/home/nonroot
WORKDIR /home/nonroot
EXPOSE 9090
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=3 \
    CMD ["/healthcheck", "http://127.0.0.1:9090/healthz"]
ENTRYPOINT ["/dataflare"]
CMD ["worker", "--http", ":9090", "--cache-dir", "/var/cache/dataflare"]
