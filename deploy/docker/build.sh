#!/usr/bin/env bash
# Builds the container images from static binaries compiled on this machine
# (CGO off), FROM scratch: nothing is pulled, so it works without a
# registry. Dockerfile beside this script builds the same images in a
# multi-stage build where golang can be pulled.
#
#   deploy/docker/build.sh                 both images
#   deploy/docker/build.sh dataflare       only the dataflare image
#   deploy/docker/build.sh nats            only the nats-server image
#   deploy/docker/build.sh prometheus      Prometheus from its Go module (opt-in:
#                                          a long first build, see docs/deploy.md)
#
# Environment:
#   DATAFLARE_IMAGE  tag of the dataflare image   (default dataflare:dev)
#   NATS_IMAGE       tag of the nats-server image (default dataflare-nats:dev)
#   PROMETHEUS_IMAGE tag of the Prometheus image  (default dataflare-prometheus:dev)
#   PROMETHEUS_MODULE_VERSION  Prometheus module version (default v0.316.0, Prometheus 3.16)
#   GOARCH           target architecture          (default: this machine's)
#
# The nats-server binary is the module version go.mod pins
# (go build github.com/nats-io/nats-server/v2).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dataflare_image=${DATAFLARE_IMAGE:-dataflare:dev}
nats_image=${NATS_IMAGE:-dataflare-nats:dev}
prometheus_image=${PROMETHEUS_IMAGE:-dataflare-prometheus:dev}
prometheus_version=${PROMETHEUS_MODULE_VERSION:-v0.316.0}

which=(dataflare nats)
if [ $# -gt 0 ]; then which=("$@"); fi
for w in "${which[@]}"; do
	case $w in
	dataflare | nats | prometheus) ;;
	*) echo "build.sh: unknown image $w (want dataflare, nats or prometheus)" >&2; exit 2 ;;
	esac
done

ctx=$(mktemp -d "${TMPDIR:-/tmp}/dataflare-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT

# The file system around the binary: a non-root user, a sticky /tmp, the
# directories the daemons write (owned by the user through COPY --chown),
# and the host's CA bundle for TLS to NATS or an OTLP collector.
mkdir -p "$ctx/bin" "$ctx/rootfs/etc/ssl/certs" "$ctx/rootfs/tmp" "$ctx/rootfs/data" \
	"$ctx/rootfs/home/nonroot" "$ctx/rootfs/var/cache/dataflare" "$ctx/rootfs/prometheus"
chmod 1777 "$ctx/rootfs/tmp"
echo 'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$ctx/rootfs/etc/passwd"
echo 'nonroot:x:65532:' >"$ctx/rootfs/etc/group"
for ca in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
	if [ -f "$ca" ]; then cp "$ca" "$ctx/rootfs/etc/ssl/certs/ca-certificates.crt"; break; fi
done

version=$(git -C "$root" describe --always --dirty 2>/dev/null || echo dev)
# docker build, quiet unless it fails.
dbuild() {
	local out
	if ! out=$(docker build --build-arg VERSION="$version" "$@" "$ctx" 2>&1); then
		echo "$out" >&2
		exit 1
	fi
}
gobuild() { (cd "$root" && CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags='-s -w' -o "$ctx/bin/$1" "$2"); }

gobuild healthcheck ./deploy/healthcheck
for w in "${which[@]}"; do
	case $w in
	dataflare)
		gobuild dataflare ./cmd/dataflare
		dbuild -f "$here/dataflare.Dockerfile" -t "$dataflare_image"
		echo "built $dataflare_image ($version)"
		;;
	nats)
		gobuild nats-server github.com/nats-io/nats-server/v2
		dbuild -f "$here/nats.Dockerfile" -t "$nats_image"
		echo "built $nats_image ($("$ctx/bin/nats-server" --version))"
		;;
	prometheus)
		# Outside this module: go install resolves Prometheus's own go.mod.
		(cd "$ctx" && CGO_ENABLED=0 GOOS=linux GOBIN="$ctx/bin" go install -trimpath -ldflags='-s -w' \
			"github.com/prometheus/prometheus/cmd/prometheus@$prometheus_version")
		dbuild -f "$here/prometheus.Dockerfile" -t "$prometheus_image"
		echo "built $prometheus_image (module $prometheus_version)"
		;;
	esac
done
