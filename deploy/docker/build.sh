#!/usr/bin/env bash
# Builds the container images from static binaries compiled on this machine
# (CGO off), FROM scratch: nothing is pulled, so it works without a
# registry. Dockerfile beside this script builds the same images in a
# multi-stage build where golang can be pulled.
#
#   deploy/docker/build.sh                 both images
#   deploy/docker/build.sh dataflare       only the dataflare image
#   deploy/docker/build.sh nats            only the nats-server image
#
# Environment:
#   DATAFLARE_IMAGE  tag of the dataflare image   (default dataflare:dev)
#   NATS_IMAGE       tag of the nats-server image (default dataflare-nats:dev)
#   GOARCH           target architecture          (default: this machine's)
#
# The nats-server binary is the module version go.mod pins
# (go build github.com/nats-io/nats-server/v2).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dataflare_image=${DATAFLARE_IMAGE:-dataflare:dev}
nats_image=${NATS_IMAGE:-dataflare-nats:dev}

which=(dataflare nats)
if [ $# -gt 0 ]; then which=("$@"); fi
for w in "${which[@]}"; do
	case $w in
	dataflare | nats) ;;
	*) echo "build.sh: unknown image $w (want dataflare or nats)" >&2; exit 2 ;;
	esac
done

ctx=$(mktemp -d "${TMPDIR:-/tmp}/dataflare-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT

# The file system around the binary: a non-root user, a sticky /tmp, the
# directories the daemons write (owned by the user through COPY --chown),
# and the host's CA bundle for TLS to NATS or an OTLP collector.
mkdir -p "$ctx/bin" "$ctx/rootfs/etc/ssl/certs" "$ctx/rootfs/tmp" "$ctx/rootfs/data" \
	"$ctx/rootfs/home/nonroot" "$ctx/rootfs/var/cache/dataflare"
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
	esac
done
