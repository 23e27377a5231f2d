#!/usr/bin/env bash
# Side-by-side run of the gateway in the shared peer harness (the harness, when present
# beside the repository, compares a "candidate" gateway with direct calls to its nginx mock,
# LiteLLM and a minimal relay). Starts `tokenroute serve` on 127.0.0.1:18300 with a temporary
# database and a key, mapped to the harness's mock (127.0.0.1:18080/v1), runs
#   "$PEER_BENCH"/run.sh http://127.0.0.1:18300 "$KEY" openai/gpt-4o-mini
# with CANDIDATE_PID set, and stops the gateway afterwards (also on Ctrl-C or an error).
#
#   ops/bench/peer.sh                      # from anywhere; ROUNDS=1 ops/bench/peer.sh for a shorter run
#
# Env: PEER_BENCH (default ../shared/bench from the repository root), TOKENROUTE (the
#      executable; default: `tokenroute` next to $PYTHON, then on PATH), PYTHON (default python3),
#      GATEWAY_PORT (default 18300), OUT (default ops/bench/out/peer-<timestamp>),
#      and the harness's own knobs, passed through: ROUNDS DURATION CONCS STREAMS TARGETS KEEP_MOCK.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PEER_BENCH="${PEER_BENCH:-$REPO/../shared/bench}"
PORT="${GATEWAY_PORT:-18300}"
MOCK="http://127.0.0.1:18080/v1"
MODEL="openai/gpt-4o-mini"

if [ ! -x "$PEER_BENCH/run.sh" ]; then
  echo "peer harness not found at $PEER_BENCH (set PEER_BENCH)" >&2
  exit 2
fi
PY="${PYTHON:-python3}"
if [ -z "${TOKENROUTE:-}" ]; then
  cand="$(dirname "$(command -v "$PY")")/tokenroute"
  if [ -x "$cand" ]; then TOKENROUTE="$cand"
  elif command -v tokenroute >/dev/null; then TOKENROUTE="$(command -v tokenroute)"
  else echo "tokenroute not found: set TOKENROUTE or PYTHON to the project's venv" >&2; exit 2
  fi
fi
if (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  echo "port $PORT is already in use" >&2
  exit 2
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

export OUT="${OUT:-$HERE/out/peer-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
TMP="$(mktemp -d -t tokenroute-peer-XXXXXX)"
GW_PID=""

stop_gateway() {
  if [ -n "$GW_PID" ] && kill -0 "$GW_PID" 2>/dev/null; then
    kill -TERM "$GW_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$GW_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$GW_PID" 2>/dev/null; then
      echo "gateway $GW_PID still running 10 s after SIGTERM: SIGKILL" >&2
      kill -KILL "$GW_PID" 2>/dev/null || true
    fi
    wait "$GW_PID" 2>/dev/null || true
  fi
  GW_PID=""
  rm -rf "$TMP"
}
trap stop_gateway EXIT
trap 'exit 130' INT TERM

# a clean provider environment: only the mock
clean=(env -u DEEPSEEK_API_KEY -u MISTRAL_API_KEY -u TOKENROUTE_CONFIG -u TOKENROUTE_DB -u TOKENROUTE_PORT)
DB="$TMP/bench.db"
"${clean[@]}" "$TOKENROUTE" admin create-user --email bench@example.com --db "$DB" --json >/dev/null
MADE="$("${clean[@]}" "$TOKENROUTE" admin create-key --email bench@example.com --name peer --credit 1000000 \
  --db "$DB" --json | tail -n 1)"
KEY="$(printf '%s' "$MADE" | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["raw"])')"
KEY_ID="$(printf '%s' "$MADE" | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["id"])')"
# limits stay on (every request is counted) but high enough not to throttle the load
"${clean[@]}" "$TOKENROUTE" admin set-limits --key "$KEY_ID" --rps 1000000 --burst 1000000 \
  --max-streams 100000 --db "$DB" --json >/dev/null

"${clean[@]}" OPENAI_API_KEY=sk-bench-upstream OPENAI_BASE_URL="$MOCK" TOKENROUTE_SHUTDOWN_GRACE=5 \
  "$TOKENROUTE" serve --db "$DB" --host 127.0.0.1 --port "$PORT" >"$OUT/gateway.log" 2>&1 &
GW_PID=$!
for _ in $(seq 300); do
  curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  kill -0 "$GW_PID" 2>/dev/null || { echo "gateway exited; see $OUT/gateway.log" >&2; exit 1; }
  sleep 0.2
done
curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null || { echo "gateway not ready; see $OUT/gateway.log" >&2; exit 1; }
echo "gateway pid $GW_PID on http://127.0.0.1:$PORT -> $MOCK; results in $OUT"

rc=0
CANDIDATE_PID="$GW_PID" "$PEER_BENCH/run.sh" "http://127.0.0.1:$PORT" "$KEY" "$MODEL" || rc=$?
exit $rc
