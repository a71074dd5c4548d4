#!/usr/bin/env bash
# `make run`: a local Auditstream on the embedded defaults. Starts its own nats-server on a
# free port (unless AUDITSTREAM_NATS_URL points at one), then the gateway, sends the example
# events, and prints what to try next. Ctrl-C stops everything it started.
#
# Settings (environment): AUDITSTREAM_NATS_URL, RUN_DIR (.run), GATEWAY_HTTP_PORT (8080),
# GATEWAY_GRPC_PORT (50051), GATEWAY_OPS_PORT (9090), CARGO_TARGET_DIR, NATS_SERVER_BIN, GATEWAY_BIN.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_DIR=${RUN_DIR:-.run}
HTTP_PORT=${GATEWAY_HTTP_PORT:-8080}
GRPC_PORT=${GATEWAY_GRPC_PORT:-50051}
OPS_PORT=${GATEWAY_OPS_PORT:-9090}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
NATS_BIN=${NATS_SERVER_BIN:-.venv/bin/nats-server}
GATEWAY_BIN=${GATEWAY_BIN:-$TARGET_DIR/debug/auditstream-gateway}
mkdir -p "$RUN_DIR"
RUN_DIR=$(cd "$RUN_DIR" && pwd)

pids=()
cleanup() {
  trap - INT TERM EXIT
  if ((${#pids[@]})); then
    echo; echo "stopping ${#pids[@]} process(es)..."
    # Newest first: services finish their in-flight work while NATS is still up.
    for ((i=${#pids[@]}-1; i>=0; i--)); do
      kill -TERM "${pids[i]}" 2>/dev/null || true
      wait "${pids[i]}" 2>/dev/null || true
    done
  fi
}
trap cleanup INT TERM EXIT

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$HTTP_PORT" "$GRPC_PORT" "$OPS_PORT"; do
  if port_in_use "$p"; then
    echo "error: port $p on 127.0.0.1 is already in use; set GATEWAY_HTTP_PORT / GATEWAY_GRPC_PORT / GATEWAY_OPS_PORT" >&2
    exit 1
  fi
done

wait_for() { # url, what, pid
  for _ in $(seq 1 300); do
    if curl -fsS "$1" >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$3" 2>/dev/null; then echo "error: $2 exited; see $RUN_DIR/*.log" >&2; exit 1; fi
    sleep 0.1
  done
  echo "error: $2 not ready after 30s; see $RUN_DIR/*.log" >&2; exit 1
}

if [[ -n "${AUDITSTREAM_NATS_URL:-}" ]]; then
  NATS_URL=$AUDITSTREAM_NATS_URL
  echo "using NATS at $NATS_URL"
else
  NATS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  NATS_MON=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat > "$RUN_DIR/nats.conf" <<CONF
listen: 127.0.0.1:$NATS_PORT
http: 127.0.0.1:$NATS_MON
max_payload: 8MB
jetstream { store_dir: "$RUN_DIR/nats", max_file_store: 4GB, max_memory_store: 64MB }
CONF
  "$NATS_BIN" -c "$RUN_DIR/nats.conf" -l "$RUN_DIR/nats.log" &
  pids+=($!)
  wait_for "http://127.0.0.1:$NATS_MON/healthz?js-enabled-only=true" nats-server "${pids[-1]}"
  NATS_URL=nats://127.0.0.1:$NATS_PORT
  echo "nats-server $NATS_URL (store $RUN_DIR/nats, log $RUN_DIR/nats.log)"
fi

TOKEN_FILE=$RUN_DIR/token
[[ -s $TOKEN_FILE ]] || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$TOKEN_FILE"
TOKEN=$(cat "$TOKEN_FILE")

cat > "$RUN_DIR/gateway.toml" <<CONF
http_addr = "127.0.0.1:$HTTP_PORT"
grpc_addr = "127.0.0.1:$GRPC_PORT"
ops_addr = "127.0.0.1:$OPS_PORT"
retry_after = "2s"
[log]
format = "text"
[nats]
url = "$NATS_URL"
CONF
# Local disk: JetStream reserves max_bytes per stream up front, so keep them small here.
for stream in ingest:24h:268435456 deliver:0s:268435456 backlog:7d:536870912 dlq:7d:134217728 control:7d:67108864; do
  IFS=: read -r name age bytes <<<"$stream"
  printf '[nats.topology.%s]\nmax_age = "%s"\nmax_bytes = %s\n' "$name" "$age" "$bytes" >> "$RUN_DIR/gateway.toml"
done
AUDITSTREAM_AUTH__TOKENS=$TOKEN "$GATEWAY_BIN" --config "$RUN_DIR/gateway.toml" 2>"$RUN_DIR/gateway.log" &
pids+=($!)
wait_for "http://127.0.0.1:$OPS_PORT/readyz" gateway "${pids[-1]}"

echo
echo "sending the example events (one per event type)..."
curl -sS -X POST "http://127.0.0.1:$HTTP_PORT/v1/events" \
  -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/x-ndjson' \
  --data-binary @tests/data/ingest-events.ndjson
echo

cat <<TXT

Auditstream is running (Ctrl-C stops it).

  gateway HTTP  http://127.0.0.1:$HTTP_PORT/v1/events
  gateway gRPC  127.0.0.1:$GRPC_PORT (auditstream.v1.IngestService)
  ops           http://127.0.0.1:$OPS_PORT/readyz  /metrics
  token         $TOKEN   (in $TOKEN_FILE)
  logs          $RUN_DIR/*.log

Send an event:

  curl -X POST http://127.0.0.1:$HTTP_PORT/v1/events \\
    -H "Authorization: Bearer \$(cat $TOKEN_FILE)" -H 'Content-Type: application/json' \\
    -d '{"event_type":"api_platform","occurred_at":"2026-11-21T10:17:00Z","org_id":"org-acme","workspace_id":"ws-cust-17","data":{"endpoint":"GET /employees","status":200}}'

Watch it arrive in JetStream (AUDIT_INGEST):

  curl -s http://127.0.0.1:$OPS_PORT/metrics | grep auditstream_gateway_events
TXT
if [[ -z "${AUDITSTREAM_NATS_URL:-}" ]]; then
  echo "  curl -s 'http://127.0.0.1:$NATS_MON/jsz?streams=true' | python3 -m json.tool | grep -A3 AUDIT_INGEST"
fi
echo
echo "Routing and delivery to destinations arrive with the router and sink services."
wait -n "${pids[@]}"
