#!/usr/bin/env bash
# `make run`: a local Auditstream on the embedded defaults. Starts its own nats-server on a
# free port (unless AUDITSTREAM_NATS_URL points at one) with one NATS user per service kind,
# the config service (SQLite, the streams' owner) with a demo tenant tree, the gateway, the
# router, the four sinks and a demo destination (an HTTP
# receiver writing what it gets under $RUN_DIR/received/), sends the example events, and
# prints what to try next. Ctrl-C stops everything it started.
#
# Settings (environment): AUDITSTREAM_NATS_URL, RUN_DIR (.run), GATEWAY_HTTP_PORT (8080),
# GATEWAY_GRPC_PORT (50051), GATEWAY_OPS_PORT (9090), CONFIG_GRPC_PORT (50052),
# CONFIG_OPS_PORT (9091), ROUTER_OPS_PORT (9092), SINK_S3_OPS_PORT (9093),
# SINK_AZURE_BLOB_OPS_PORT (9094), SINK_AZURE_MONITOR_OPS_PORT (9095), SINK_HTTP_OPS_PORT
# (9096), DEMO_RECEIVER_PORT (8099), CARGO_TARGET_DIR, NATS_SERVER_BIN, BIN_DIR (where the
# built binaries are; default $CARGO_TARGET_DIR/debug).
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_DIR=${RUN_DIR:-.run}
HTTP_PORT=${GATEWAY_HTTP_PORT:-8080}
GRPC_PORT=${GATEWAY_GRPC_PORT:-50051}
OPS_PORT=${GATEWAY_OPS_PORT:-9090}
CONFIG_PORT=${CONFIG_GRPC_PORT:-50052}
CONFIG_OPS=${CONFIG_OPS_PORT:-9091}
ROUTER_OPS=${ROUTER_OPS_PORT:-9092}
RECEIVER_PORT=${DEMO_RECEIVER_PORT:-8099}
declare -A SINK_OPS=(
  [s3]=${SINK_S3_OPS_PORT:-9093} [azure-blob]=${SINK_AZURE_BLOB_OPS_PORT:-9094}
  [azure-monitor]=${SINK_AZURE_MONITOR_OPS_PORT:-9095} [http]=${SINK_HTTP_OPS_PORT:-9096}
)
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BIN_DIR=${BIN_DIR:-$TARGET_DIR/debug}
NATS_BIN=${NATS_SERVER_BIN:-.venv/bin/nats-server}
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
for p in "$HTTP_PORT" "$GRPC_PORT" "$OPS_PORT" "$CONFIG_PORT" "$CONFIG_OPS" "$ROUTER_OPS" "$RECEIVER_PORT" "${SINK_OPS[@]}"; do
  if port_in_use "$p"; then
    echo "error: port $p on 127.0.0.1 is already in use; set GATEWAY_HTTP_PORT / GATEWAY_GRPC_PORT / GATEWAY_OPS_PORT / CONFIG_GRPC_PORT / CONFIG_OPS_PORT / ROUTER_OPS_PORT / SINK_<TYPE>_OPS_PORT / DEMO_RECEIVER_PORT" >&2
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

NATS_KINDS="gateway router config_service sink_s3 sink_azure_blob sink_azure_monitor sink_http"
# The environment that makes a service of kind $1 log in as its own NATS user (nothing for a
# NATS given by AUDITSTREAM_NATS_URL: its credentials are the caller's business).
nats_login() {
  if [[ -z "${AUDITSTREAM_NATS_URL:-}" ]]; then
    echo "AUDITSTREAM_NATS__USER=auditstream_$1 AUDITSTREAM_NATS__PASSWORD=$(cat "$RUN_DIR/nats-password-$1")"
  fi
}
if [[ -n "${AUDITSTREAM_NATS_URL:-}" ]]; then
  NATS_URL=$AUDITSTREAM_NATS_URL
  echo "using NATS at $NATS_URL"
else
  NATS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  NATS_MON=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  # One NATS user per service kind with the project's permissions (README "NATS users and
  # permissions"): the generated block reads each password from the environment.
  NATS_ENV=()
  for kind in $NATS_KINDS; do
    [[ -s $RUN_DIR/nats-password-$kind ]] || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$RUN_DIR/nats-password-$kind"
    NATS_ENV+=("AUDITSTREAM_NATS_PASSWORD_${kind^^}=$(cat "$RUN_DIR/nats-password-$kind")")
  done
  # nats-server resolves an include relative to the including file.
  cp helm/auditstream/files/nats-authorization.conf "$RUN_DIR/nats-authorization.conf"
  cat > "$RUN_DIR/nats.conf" <<CONF
listen: 127.0.0.1:$NATS_PORT
http: 127.0.0.1:$NATS_MON
max_payload: 8MB
jetstream { store_dir: "$RUN_DIR/nats", max_file_store: 4GB, max_memory_store: 64MB }
include "nats-authorization.conf"
CONF
  env "${NATS_ENV[@]}" "$NATS_BIN" -c "$RUN_DIR/nats.conf" -l "$RUN_DIR/nats.log" &
  pids+=($!)
  wait_for "http://127.0.0.1:$NATS_MON/healthz?js-enabled-only=true" nats-server "${pids[-1]}"
  NATS_URL=nats://127.0.0.1:$NATS_PORT
  echo "nats-server $NATS_URL (store $RUN_DIR/nats, log $RUN_DIR/nats.log)"
fi

TOKEN_FILE=$RUN_DIR/token
[[ -s $TOKEN_FILE ]] || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$TOKEN_FILE"
TOKEN=$(cat "$TOKEN_FILE")

# Local disk: JetStream reserves max_bytes per stream up front, so keep them small here
# (the backlog limits apply to each sink type's backlog stream: 3 GiB in all).
# Every service gets the same topology from the environment: the config service, started
# first, is its one owner and creates the streams; the others only verify them (and would
# stay unready against streams weaker than their own settings).
for stream in ingest:0s:268435456 history:24h:268435456 parked:0s:67108864 deliver:0s:268435456 backlog:7d:536870912 dlq:7d:134217728 control:7d:67108864; do
  IFS=: read -r name age bytes <<<"$stream"
  export "AUDITSTREAM_NATS__TOPOLOGY__${name^^}__MAX_AGE=$age" "AUDITSTREAM_NATS__TOPOLOGY__${name^^}__MAX_BYTES=$bytes"
done

# --- config service on the embedded SQLite store, with a demo tenant tree ---
secret() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }
[[ -s $RUN_DIR/admin-token ]] || secret 24 > "$RUN_DIR/admin-token"
# One config-service token per data-plane service kind: the router cannot fetch secrets and
# each sink only its own destination type's.
SERVICE_KINDS="router sink_s3 sink_azure_blob sink_azure_monitor sink_http"
for kind in $SERVICE_KINDS; do
  [[ -s $RUN_DIR/service-token-$kind ]] || secret 24 > "$RUN_DIR/service-token-$kind"
done
service_token() { cat "$RUN_DIR/service-token-$1"; }
[[ -s $RUN_DIR/secrets-key ]] || head -c 32 /dev/urandom | base64 > "$RUN_DIR/secrets-key"
ADMIN_TOKEN=$(cat "$RUN_DIR/admin-token")
TOKENS_JSON="{\"token\":\"$ADMIN_TOKEN\",\"role\":\"platform_admin\",\"name\":\"local-admin\"}"
for kind in $SERVICE_KINDS; do
  TOKENS_JSON+=",{\"token\":\"$(service_token "$kind")\",\"role\":\"service\",\"service\":\"$kind\",\"name\":\"local-$kind\"}"
done
cat > "$RUN_DIR/config-service.toml" <<CONF
grpc_addr = "127.0.0.1:$CONFIG_PORT"
ops_addr = "127.0.0.1:$CONFIG_OPS"
[log]
format = "text"
[database]
url = "sqlite://$RUN_DIR/config.db?mode=rwc"
[nats]
url = "$NATS_URL"
[secrets]
active_key = "local"
[http]
# The demo destinations are local receivers.
allow_insecure_http = true
allowed_networks = ["127.0.0.0/8"]
CONF
AUDITSTREAM_AUTH__TOKENS="[$TOKENS_JSON]" \
AUDITSTREAM_SECRETS__KEYS="{\"local\":\"$(cat "$RUN_DIR/secrets-key")\"}" \
  env $(nats_login config_service) "$BIN_DIR/auditstream-config-service" --config "$RUN_DIR/config-service.toml" 2>"$RUN_DIR/config-service.log" &
pids+=($!)
wait_for "http://127.0.0.1:$CONFIG_OPS/readyz" config-service "${pids[-1]}"

# --- gateway (after the config service, which creates the streams) ---
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
AUDITSTREAM_AUTH__TOKENS=$TOKEN env $(nats_login gateway) "$BIN_DIR/auditstream-gateway" --config "$RUN_DIR/gateway.toml" 2>"$RUN_DIR/gateway.log" &
pids+=($!)
wait_for "http://127.0.0.1:$OPS_PORT/readyz" gateway "${pids[-1]}"

ctl() { "$BIN_DIR/auditctl" --server "http://127.0.0.1:$CONFIG_PORT" --token "$ADMIN_TOKEN" "$@"; }
if ! ctl node get org-acme >/dev/null 2>&1; then
  echo "creating the demo tenant tree..."
  ctl node put org-acme --kind organization --name "Acme (Automation HQ)" --admin-email sre@acme.example >/dev/null
  ctl node put ws-cust-17 --kind workspace --parent org-acme --name "Direct customer 17" >/dev/null
  ctl node put p-globex --kind partner --parent org-acme --name "Globex (OEM partner)" --external-id GLOBEX >/dev/null
  ctl node put c-initech --kind customer --parent p-globex --name Initech --external-id INI-001 >/dev/null
  ctl node put c-umbrella --kind customer --parent p-globex --name Umbrella --external-id UMB-002 >/dev/null
  cat > "$RUN_DIR/demo-connection.json" <<JSON
{"http": {"none": {}}}
JSON
  ctl connection create --id demo-receiver --node org-acme --name "local demo receiver" --file "$RUN_DIR/demo-connection.json" >/dev/null
  for spec in "s-ws17:ws-cust-17:self" "s-initech:c-initech:self" "s-globex-all:p-globex:descendants"; do
    IFS=: read -r id node applies <<<"$spec"
    cat > "$RUN_DIR/demo-stream.json" <<JSON
{"selection": {"event_types": ["job_status", "job_details", "user_activity", "api_platform", "log_event", "genie_conversation"], "include_step_details": true},
 "destination": {"connection_id": "demo-receiver", "http": {"url": "http://127.0.0.1:$RECEIVER_PORT/$id"}}}
JSON
    ctl stream create --file "$RUN_DIR/demo-stream.json" --id "$id" --node "$node" --name "demo $id" --applies-to "$applies" >/dev/null
  done
  # The partner's stream starts disabled: enable it to see it override Initech's own.
  ctl stream disable s-globex-all >/dev/null
fi

# --- router: routes every event to the streams that apply, onto AUDIT_DELIVER ---
AUDITSTREAM_OPS_ADDR=127.0.0.1:$ROUTER_OPS AUDITSTREAM_NATS__URL=$NATS_URL \
AUDITSTREAM_CONFIG_SERVICE__URL=http://127.0.0.1:$CONFIG_PORT AUDITSTREAM_CONFIG_SERVICE__TOKEN=$(service_token router) \
AUDITSTREAM_LOG__FORMAT=text \
  env $(nats_login router) "$BIN_DIR/auditstream-router" 2>"$RUN_DIR/router.log" &
pids+=($!)
wait_for "http://127.0.0.1:$ROUTER_OPS/readyz" router "${pids[-1]}"

# --- the demo destination, and one sink per destination type ---
RECEIVED=$RUN_DIR/received
python3 deploy/demo-receiver.py --port "$RECEIVER_PORT" --dir "$RECEIVED" 2>"$RUN_DIR/demo-receiver.log" &
pids+=($!)
wait_for "http://127.0.0.1:$RECEIVER_PORT/healthz" demo-receiver "${pids[-1]}"
# The HTTP-speaking sinks refuse loopback addresses unless allow-listed (SSRF guard).
declare -A LOCAL_NETWORKS=(
  [http]=AUDITSTREAM_SINK__ALLOWED_NETWORKS=127.0.0.1 [azure-monitor]=AUDITSTREAM_SINK__ALLOWED_NETWORKS=127.0.0.1
)
for sink in s3 azure-blob azure-monitor http; do
  # Only the HTTP sink has demo streams; the others start so the whole stack runs, and
  # `auditctl connection targets` / `destination test` work once you add such a destination.
  AUDITSTREAM_OPS_ADDR=127.0.0.1:${SINK_OPS[$sink]} AUDITSTREAM_NATS__URL=$NATS_URL \
  AUDITSTREAM_CONFIG_SERVICE__URL=http://127.0.0.1:$CONFIG_PORT AUDITSTREAM_CONFIG_SERVICE__TOKEN=$(service_token "sink_${sink//-/_}") \
  AUDITSTREAM_LOG__FORMAT=text AUDITSTREAM_BATCHING__MAX_AGE=200ms \
  AUDITSTREAM_SINK__ALLOW_INSECURE_HTTP=true \
    env ${LOCAL_NETWORKS[$sink]:-} $(nats_login "sink_${sink//-/_}") "$BIN_DIR/auditstream-sink-$sink" 2>"$RUN_DIR/sink-$sink.log" &
  pids+=($!)
  wait_for "http://127.0.0.1:${SINK_OPS[$sink]}/readyz" "sink-$sink" "${pids[-1]}"
done

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
  config gRPC   127.0.0.1:$CONFIG_PORT (auditstream.v1.ConfigService, SQLite at $RUN_DIR/config.db)
  router ops    http://127.0.0.1:$ROUTER_OPS/metrics
  sinks ops     http://127.0.0.1:${SINK_OPS[http]}/metrics (http), :${SINK_OPS[s3]} (s3), :${SINK_OPS[azure-blob]} (azure-blob), :${SINK_OPS[azure-monitor]} (azure-monitor)
  delivered to  $RECEIVED/<stream>.ndjson (the demo destination, http://127.0.0.1:$RECEIVER_PORT/<stream>)
  token         $TOKEN   (in $TOKEN_FILE; producers)
  admin token   in $RUN_DIR/admin-token (auditctl)
  logs          $RUN_DIR/*.log

Send an event:

  curl -X POST http://127.0.0.1:$HTTP_PORT/v1/events \\
    -H "Authorization: Bearer \$(cat $TOKEN_FILE)" -H 'Content-Type: application/json' \\
    -d '{"event_type":"api_platform","occurred_at":"2026-11-21T10:17:00Z","org_id":"org-acme","workspace_id":"ws-cust-17","data":{"endpoint":"GET /employees","status":200}}'

Look at the demo tenant tree and the override rule:

  export AUDITSTREAM_CONFIG_URL=http://127.0.0.1:$CONFIG_PORT AUDITSTREAM_TOKEN=\$(cat $RUN_DIR/admin-token)
  $BIN_DIR/auditctl explain c-initech          # Initech's own stream applies
  $BIN_DIR/auditctl stream enable s-globex-all # the partner's stream now governs its customers
  $BIN_DIR/auditctl explain c-initech          # ...and Initech's stream is "overridden by partner p-globex"
  $BIN_DIR/auditctl stream status s-initech

Watch the events arrive at the demo destination (one JSON object per line):

  tail -f $RECEIVED/*.ndjson
  $BIN_DIR/auditctl stream status s-ws17     # delivered, backlog, state

...and along the way (gateway → AUDIT_INGEST → router → AUDIT_DELIVER → sink-http):

  curl -s http://127.0.0.1:$OPS_PORT/metrics | grep auditstream_gateway_events
  curl -s http://127.0.0.1:$ROUTER_OPS/metrics | grep -E 'auditstream_router_(deliveries|events)'
  curl -s http://127.0.0.1:${SINK_OPS[http]}/metrics | grep auditstream_sink_events_delivered
TXT
if [[ -z "${AUDITSTREAM_NATS_URL:-}" ]]; then
  echo "  curl -s 'http://127.0.0.1:$NATS_MON/jsz?streams=true' | python3 -m json.tool | grep -A8 '\"AUDIT_'"
fi
wait -n "${pids[@]}"
