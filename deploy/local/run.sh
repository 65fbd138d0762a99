#!/usr/bin/env bash
# The deploy/compose topology without containers, for machines without
# Docker: 3 nats-server processes in a JetStream cluster (R3 streams,
# sync_interval always, the least-privilege users of deploy/nats), 2
# coordinators and N workers, all on 127.0.0.1. docs/deploy.md is the guide.
#
#   deploy/local/run.sh [-w WORKERS] [-d DIR] [-p BASE_PORT]
#
#   -w  workers to start (default 2)
#   -d  directory for configuration, JetStream data and logs
#       (default: a new temporary directory, removed on exit)
#   -p  first port (default 4222): NATS clients on BASE..BASE+2, routes on
#       BASE+2000.., monitoring on BASE+4000.., coordinator /metrics on
#       BASE+4868.., worker /metrics from BASE+4878
#
# It builds dataflare, nats-server (the version go.mod pins) and the
# healthcheck probe with go; DATAFLARE_BIN and NATS_SERVER_BIN may name
# existing binaries instead. It prints
# NATS_URL once everything is healthy, then runs until SIGINT or SIGTERM and
# stops in order: workers (they drain), coordinators, NATS.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

workers=2
dir=
base=4222
while getopts "w:d:p:h" opt; do
	case $opt in
	w) workers=$OPTARG ;;
	d) dir=$OPTARG ;;
	p) base=$OPTARG ;;
	*) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
	esac
done
case $workers in '' | *[!0-9]*) echo "run.sh: -w $workers: want a number" >&2; exit 2 ;; esac
case $base in '' | *[!0-9]*) echo "run.sh: -p $base: want a port" >&2; exit 2 ;; esac

temp=false
if [ -z "$dir" ]; then
	dir=$(mktemp -d "${TMPDIR:-/tmp}/dataflare-local.XXXXXX")
	temp=true
fi
mkdir -p "$dir/logs" "$dir/bin"
dir=$(cd "$dir" && pwd)

pids=()        # every process, in start order
worker_pids=() # workers only
coord_pids=()  # coordinators only
nats_pids=()   # nats-server nodes only

stop() {
	trap - INT TERM EXIT
	# Senders before receivers: workers drain first, then coordinators,
	# then NATS.
	for group in worker_pids coord_pids nats_pids; do
		local -n g=$group
		for p in "${g[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
		for p in "${g[@]}"; do wait "$p" 2>/dev/null || true; done
	done
	if $temp; then rm -rf "$dir"; fi
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Binaries.
dataflare=${DATAFLARE_BIN:-}
nats_server=${NATS_SERVER_BIN:-}
if [ -z "$dataflare" ]; then
	dataflare=$dir/bin/dataflare
	(cd "$root" && go build -o "$dataflare" ./cmd/dataflare)
fi
if [ -z "$nats_server" ]; then
	nats_server=$dir/bin/nats-server
	(cd "$root" && go build -o "$nats_server" github.com/nats-io/nats-server/v2)
fi
healthcheck=$dir/bin/healthcheck
(cd "$root" && go build -o "$healthcheck" ./deploy/healthcheck)

# Users (deploy/nats/auth.conf: development passwords; see its README for
# production).
cp "$root/deploy/nats/auth.conf" "$dir/auth.conf"
coordinator_user=coordinator:dev-coordinator-secret
worker_user=worker:dev-worker-secret
admin_user=admin:dev-admin-secret

client_port() { echo $((base + $1 - 1)); }
route_port() { echo $((base + 2000 + $1 - 1)); }
monitor_port() { echo $((base + 4000 + $1 - 1)); }
urls() {
	local u=$1 out=
	for i in 1 2 3; do out+="${out:+,}nats://$u@127.0.0.1:$(client_port "$i")"; done
	echo "$out"
}

routes=
for i in 1 2 3; do routes+="    nats-route://route:dev-route-secret@127.0.0.1:$(route_port "$i")"$'\n'; done
for i in 1 2 3; do
	mkdir -p "$dir/nats$i"
	cat >"$dir/nats$i.conf" <<CONF
server_name: nats$i
listen: 127.0.0.1:$(client_port "$i")
http: 127.0.0.1:$(monitor_port "$i")
max_payload: 8MB
jetstream {
  store_dir: "$dir/nats$i"
  sync_interval: always
}
cluster {
  name: dataflare
  listen: 127.0.0.1:$(route_port "$i")
  authorization { user: route, password: "dev-route-secret" }
  routes: [
$routes  ]
}
include ./auth.conf
CONF
	"$nats_server" -c "$dir/nats$i.conf" >"$dir/logs/nats$i.log" 2>&1 &
	nats_pids+=($!)
	pids+=($!)
done

# healthy URL TIMEOUT waits until URL answers 2xx.
healthy() {
	local deadline=$((SECONDS + $2))
	until "$healthcheck" -timeout 1s "$1" 2>/dev/null; do
		if [ $SECONDS -ge $deadline ]; then
			echo "run.sh: $1 not healthy after $2 s; logs in $dir/logs" >&2
			return 1
		fi
		for p in "${pids[@]}"; do
			if ! kill -0 "$p" 2>/dev/null; then
				echo "run.sh: a process exited; logs in $dir/logs:" >&2
				tail -n 5 "$dir"/logs/*.log >&2
				return 1
			fi
		done
		sleep 0.2
	done
}
for i in 1 2 3; do healthy "http://127.0.0.1:$(monitor_port "$i")/healthz" 60; done

# answers TIMEOUT waits until a coordinator answers dataflare status, that
# is until the streams exist.
answers() {
	local deadline=$((SECONDS + $1))
	until "$dataflare" status --nats "$(urls "$admin_user")" >/dev/null 2>&1; do
		if [ $SECONDS -ge $deadline ]; then
			echo "run.sh: no coordinator answers after $1 s; logs in $dir/logs" >&2
			return 1
		fi
		sleep 0.5
	done
}

# Coordinators: the second starts once the first has created the streams
# (two coordinators creating the same R3 stream at once can both time out).
for i in 1 2; do
	port=$((base + 4868 + i - 1))
	"$dataflare" coordinator --nats "$(urls "$coordinator_user")" --id "coordinator$i" \
		--replicas 3 --http "127.0.0.1:$port" >"$dir/logs/coordinator$i.log" 2>&1 &
	coord_pids+=($!)
	pids+=($!)
	healthy "http://127.0.0.1:$port/healthz" 60
	answers 90
done

for i in $(seq 1 "$workers"); do
	port=$((base + 4878 + i - 1))
	"$dataflare" worker --nats "$(urls "$worker_user")" --inbox-prefix _INBOX_worker --id "worker$i" \
		--http "127.0.0.1:$port" --cache-dir "$dir/cache" >"$dir/logs/worker$i.log" 2>&1 &
	worker_pids+=($!)
	pids+=($!)
done
for i in $(seq 1 "$workers"); do healthy "http://127.0.0.1:$((base + 4878 + i - 1))/healthz" 60; done

cat <<MSG
dataflare local fleet: 3 NATS nodes, 2 coordinators, $workers workers (logs in $dir/logs)
  export NATS_URL=$(urls "$admin_user")
  dataflare status
  dataflare submit --plugin upper --in FILE
metrics: coordinators on 127.0.0.1:$((base + 4868))-$((base + 4869)), workers from 127.0.0.1:$((base + 4878))
MSG
# Runs until a signal, or until a process exits.
while true; do
	for p in "${pids[@]}"; do
		if ! kill -0 "$p" 2>/dev/null; then
			echo "run.sh: a process exited; stopping (logs in $dir/logs)" >&2
			exit 1
		fi
	done
	sleep 1 & wait $!
done
