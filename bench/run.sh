#!/usr/bin/env bash
# Builds heartwire, heartwire-bench and the Tornado reference, runs every scenario
# against heartwire, the seed's Tornado demo and the raw-socket floor ($RUNS times
# each, medians reported), and writes BENCHMARKS.md with a latency plot.
#
#   bench/run.sh                 # the whole comparison, < 15 min on 2 cores
#   RUNS=1 IDLE_CONNS=2000 FANOUT_CLIENTS=1000 bench/run.sh   # a quick smoke run
#   SUITE=channels bench/run.sh  # issue 13 only (addressed channels, JWT handshakes), heartwire
#                                # alone, each figure against a plain route in the same run;
#                                # rewrites only the channels section of BENCHMARKS.md
#   SUITE=history bench/run.sh   # issue 14 only (history and recovery), heartwire alone: B1/B3
#                                # on an envelope route with history against raw /news,
#                                # interleaved; a reconnect storm (STORM_CLIENTS recover
#                                # STORM_MISSED messages each, publishes to others meanwhile);
#                                # memory per stored message; rewrites only the history section
#   SUITE=redis bench/run.sh     # issue 15 only (scale-out on Redis), heartwire alone: B1 to
#                                # FANOUT_CLIENTS split over two nodes on one redis-server
#                                # (persistence off, started here) against the memory broker on
#                                # one node, interleaved; publishes/s through Redis with 0 lost
#                                # (a rate ladder); rewrites only the redis section
#   BASE_BIN=/path/to/old/heartwire SERVERS="base heartwire" bench/run.sh
#                                # before/after a change: the same scenarios against another
#                                # heartwire build, interleaved per run; prints the medians and
#                                # ratios (bench/compare.py) instead of writing BENCHMARKS.md
#   SERVERS="heartwire heartwire-tls" CASES="idle handshake" COMPARE="heartwire heartwire-tls" bench/run.sh
#                                # TLS against plain in the same run (heartwire-tls serves
#                                # [server.tls] with the test certificate, the bench connects
#                                # with wss:// and https://); writes $OUT/compare.md, which
#                                # BENCHMARKS.md's TLS section is copied from
#   BASE_BIN=/path/to/old/heartwire SERVERS="heartwire base-tls heartwire-tls" CASES="idle handshake" \
#       COMPARE="base-tls heartwire-tls" bench/run.sh
#                                # a TLS change before/after, with plain in the same run
#                                # (base-tls: the old binary with [server.tls]); compare.py
#                                # on $OUT/results.jsonl gives any other pair
#
# Every knob below is an environment variable; defaults are the issue's figures where
# they fit the 15-minute budget (BENCHMARKS.md says where they were scaled down).
# Loopback only. Every server this script starts is stopped by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

RUNS=${RUNS:-3}
BUDGET_S=${BUDGET_S:-870}            # no run starts unless it can end before this (seconds)
IDLE_CONNS=${IDLE_CONNS:-19000}
IDLE_HOLD=${IDLE_HOLD:-10}
IDLE_PING=${IDLE_PING:-10}           # ping interval (s) while idle, fan-out, echo, reload
BIG_BYTES=${BIG_BYTES:-65536}
FANOUT_CLIENTS=${FANOUT_CLIENTS:-10000}
B1_COUNT=${B1_COUNT:-10}
B1_RATE=${B1_RATE:-5}
B3_RATE=${B3_RATE:-50}
B3_SECS=${B3_SECS:-6}
P1_RATE=${P1_RATE:-1000}
P1_COUNT=${P1_COUNT:-3000}
ECHO_CLIENTS=${ECHO_CLIENTS:-100}
ECHO_TRIPS=${ECHO_TRIPS:-200}
HB_CONNS=${HB_CONNS:-2000}
HB_SILENT=${HB_SILENT:-50}
HB_INTERVAL=${HB_INTERVAL:-1}
HB_WINDOW=${HB_WINDOW:-5}
RELOAD_CLIENTS=${RELOAD_CLIENTS:-1000}
RELOAD_SECS=${RELOAD_SECS:-6}
RELOAD_HUPS=${RELOAD_HUPS:-3}
DRAIN=${DRAIN:-3}
PORT_HW=${PORT_HW:-18080}
PORT_ADMIN=${PORT_ADMIN:-19090}
PORT_TW=${PORT_TW:-18081}
PORT_FL=${PORT_FL:-18082}
HS_CONNS=${HS_CONNS:-2000}           # handshake: short connections, each dropped once open
SERVERS=${SERVERS:-"heartwire tornado floor"}
CASES=${CASES:-"idle B1 B3 P1 echo reload heartbeat handshake"}
SUITE=${SUITE:-core}                 # core: the comparison above; channels: issue 13; history: issue 14; redis: issue 15
PORT_HW2=${PORT_HW2:-18083}          # redis: the second node
PORT_ADMIN2=${PORT_ADMIN2:-19091}
PORT_REDIS=${PORT_REDIS:-16379}
RL_USERS=${RL_USERS:-1000}           # redis: connections (one user each) for the rate ladder
RL_RATES=${RL_RATES:-"2000 5000 10000 20000"} # redis: publishes/s tried, 2 s each
RL_PUBLISHERS=${RL_PUBLISHERS:-8}
CH_CONNS=${CH_CONNS:-19000}          # channels: connections for memory and personal publishes
CH_HOLD=${CH_HOLD:-2}                # channels: seconds held before the RSS reading is final
CH_COUNT=${CH_COUNT:-30000}          # channels: personal publishes
CH_RATE=${CH_RATE:-10000}            # channels: personal publishes per second
CH_PUBLISHERS=${CH_PUBLISHERS:-8}    # channels: keep-alive publish connections
HS_SEQ=${HS_SEQ:-2000}               # channels: sequential handshakes per auth mode
HS_N=${HS_N:-5000}                   # channels: concurrent handshakes per auth mode
HS_IN_FLIGHT=${HS_IN_FLIGHT:-32}
STORM_CLIENTS=${STORM_CLIENTS:-10000} # history: clients that disconnect and recover at once
STORM_MISSED=${STORM_MISSED:-50}     # history: messages each of them recovers
STORM_OTHERS=${STORM_OTHERS:-100}    # history: other clients receiving publishes meanwhile
STORM_RATE=${STORM_RATE:-200}        # history: publishes/s to the others (before and during)
STORM_BASE_SECS=${STORM_BASE_SECS:-3} # history: seconds of publishes to the others before the storm
STORM_CONC=${STORM_CONC:-128}        # history: reconnections in flight at once
STORM_MAX_SECS=${STORM_MAX_SECS:-60} # history: the storm's hard limit
HM_MESSAGES=${HM_MESSAGES:-20000}    # history: messages stored over HM_CHANNELS channels
HM_CHANNELS=${HM_CHANNELS:-1000}
HM_ONE=${HM_ONE:-10000}              # history: messages stored in one channel (history_size 10000)
HM_SIZES=${HM_SIZES:-"100 1024"}     # history: message sizes (bytes)
BASE_BIN=${BASE_BIN:-}
COMPARE=${COMPARE:-}
if [[ -n "$BASE_BIN" && -z "$COMPARE" ]]; then COMPARE="base heartwire"; fi
TLS_CERT=${TLS_CERT:-$ROOT/tests/fixtures/tls/localhost.crt}
TLS_KEY=${TLS_KEY:-$ROOT/tests/fixtures/tls/localhost.key}
export OUT=${OUT:-$ROOT/bench/results}
SCENARIO_TIMEOUT=${SCENARIO_TIMEOUT:-240}

START=$(date +%s)
export RUN_DATE=$(date -u +%Y-%m-%dT%H:%MZ)  # named in BENCHMARKS.md
mkdir -p "$OUT"
rm -f "$OUT"/results.jsonl "$OUT"/metrics-*.txt "$OUT"/latency-*.json
: > "$OUT/commands.txt"
SERVER_PID=""
EXTRA_PIDS=()                        # a second node, redis-server: stopped with the server

log() { printf '[%4ss] %s\n' "$(( $(date +%s) - START ))" "$*" >&2; }

stop_pid() {
    local pid=$1
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
}

stop_server() {
    stop_pid "$SERVER_PID"
    SERVER_PID=""
    for pid in "${EXTRA_PIDS[@]}"; do stop_pid "$pid"; done
    EXTRA_PIDS=()
}
trap stop_server EXIT
trap 'stop_server; exit 130' INT TERM

ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

log "building (release)"
cargo build --release --workspace --quiet
BUILD_S=$(( $(date +%s) - START ))
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
HW=$TARGET/release/heartwire
BENCH=$TARGET/release/heartwire-bench

# Tornado only when it is one of the servers (SUITE=channels and history run heartwire alone).
if [[ $SUITE == core && " $SERVERS " == *" tornado "* ]]; then
    log "virtualenv bench/.venv with tornado"
    if [[ ! -x bench/.venv/bin/python ]]; then
        python3 -m venv bench/.venv
    fi
    bench/.venv/bin/pip install --quiet --disable-pip-version-check tornado
fi
PY=$ROOT/bench/.venv/bin/python

# heartwire config: $1 ping interval (s), $2 extra TOML appended (for the reload run).
hw_config() {
    cat > "$OUT/heartwire.toml" <<TOML
# Written by bench/run.sh.
[server]
listen = "127.0.0.1:$PORT_HW"
max_connections = 20000
max_connections_per_ip = 0
shutdown_grace = "1s"
drain_period = "0s"

[admin]
enabled = true
listen = "127.0.0.1:$PORT_ADMIN"

[log]
level = "warn"

[publish]
path = "/publish"
allow_get = true
max_body_size = $BIG_BYTES

[heartbeat.frames]
strategy = "protocol"
ping_interval = "${1}s"
ping_timeout = "${1}s"

[heartbeat.app]
strategy = "json-gzip"
ping_interval = "${1}s"
max_missed = 2

[[route]]
path = "/news"
channel = "news"
heartbeat = "frames"

[[route]]
path = "/app"
channel = "app"
heartbeat = "app"

[[route]]
path = "/quiet"
channel = "quiet"
heartbeat = "frames"

[[route]]
path = "/echo"
channel = "echo"
on_message = "echo"
echo_prefix = "new message :"
${2:-}
${HW_EXTRA:-}
TOML
}

# Channel routes and subscriber keys (issue 13), appended to the config by SUITE=channels:
# /user gives each connection the channel user.<u> from its query plus "shared"; /me the
# same from a verified token's sub. Test keys from tests/keys/ (public, test-only).
channels_extra() {
    cat <<TOML
[[route]]
path = "/user"
channels = ["user.{query.u}", "shared"]
heartbeat = "frames"

[[route]]
path = "/me"
auth = "jwt"
channels = ["user.{sub}", "shared"]
heartbeat = "frames"

[auth]
[[auth.key]]
algorithm = "HS256"
file = "$ROOT/tests/keys/hs.secret"

[[auth.key]]
algorithm = "ES256"
file = "$ROOT/tests/keys/ec.pub"
TOML
}

# Routes with history (issue 14), appended by SUITE=history: /hist holds "hist" (100
# messages kept 5 min, the B1/B3 and storm route), /hm any "hm.<c>" and /hone "hone"
# (10 000 kept) for the memory figures. All envelope, slow consumers disconnected.
history_extra() {
    cat <<TOML
[[route]]
path = "/hist"
channel = "hist"
format = "envelope"
history_size = 100
history_ttl = "5m"
heartbeat = "frames"

[[route]]
path = "/hm"
channels = ["hm.{query.c}"]
format = "envelope"
history_size = 100
history_ttl = "5m"
heartbeat = "frames"

[[route]]
path = "/hone"
channel = "hone"
format = "envelope"
history_size = 10000
history_ttl = "5m"
heartbeat = "frames"
TOML
}

# The [server.tls] table for heartwire-tls (appended after the routes, as TOML allows).
tls_section() {
    printf '[server.tls]\ncert_file = "%s"\nkey_file = "%s"\n' "$TLS_CERT" "$TLS_KEY"
}

# wait_port PORT NAME: until something accepts on 127.0.0.1:PORT (10 s at most).
wait_port() {
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    log "$2 did not start listening on $1"; return 1
}

# start_server NAME PING_INTERVAL: sets SERVER_PID and PORT.
start_server() {
    local name=$1 ping=$2
    case $name in
        heartwire)
            hw_config "$ping"
            "$HW" --config "$OUT/heartwire.toml" 2>>"$OUT/heartwire.log" &
            PORT=$PORT_HW ;;
        heartwire-tls)
            hw_config "$ping" "$(tls_section)"
            "$HW" --config "$OUT/heartwire.toml" 2>>"$OUT/heartwire-tls.log" &
            PORT=$PORT_HW ;;
        base)
            hw_config "$ping"
            "$BASE_BIN" --config "$OUT/heartwire.toml" 2>>"$OUT/base.log" &
            PORT=$PORT_HW ;;
        base-tls)
            hw_config "$ping" "$(tls_section)"
            "$BASE_BIN" --config "$OUT/heartwire.toml" 2>>"$OUT/base-tls.log" &
            PORT=$PORT_HW ;;
        tornado)
            "$PY" bench/peers/tornado_demo.py --port "$PORT_TW" --ping-interval "$ping" \
                --ping-timeout "$ping" --app-interval "$ping" --max-missed 2 2>>"$OUT/tornado.log" &
            PORT=$PORT_TW ;;
        floor)
            "$BENCH" floor --listen "127.0.0.1:$PORT_FL" --ping-interval "$ping" 2>>"$OUT/floor.log" &
            PORT=$PORT_FL ;;
    esac
    SERVER_PID=$!
    wait_port "$PORT" "$name"
}

# record FILE RUN CASE LABEL CMD...: runs CMD (at most SCENARIO_TIMEOUT), appends its JSON
# summary line to $OUT/FILE as {"run", "case", "summary"}.
record() {
    local file=$1 run=$2 case=$3 label=$4; shift 4
    local line
    if line=$(timeout "$SCENARIO_TIMEOUT" "$@" 2>>"$OUT/bench.log"); then
        printf '{"run": %s, "case": "%s", "summary": %s}\n' "$run" "$case" "$line" >> "$OUT/$file"
        log "  $label done"
    else
        log "  $label FAILED (see $OUT/bench.log)"
    fi
}

# scenario RUN NAME SCENARIO ARGS...: runs one scenario, appends its JSON line.
scenario() {
    local run=$1 name=$2 sc=$3; shift 3
    [[ " $CASES " == *" $CASE "* ]] || return 0
    local cmd=("$BENCH" "$sc" --server "127.0.0.1:$PORT" --pid "$SERVER_PID" --label "$name" "$@")
    if [[ $name == *-tls ]]; then cmd+=(--tls); fi
    [[ $run == 1 ]] && echo "heartwire-bench $sc --server 127.0.0.1:PORT --pid PID --label $name $*" >> "$OUT/commands.txt"
    record results.jsonl "$run" "$CASE" "$name $CASE" "${cmd[@]}"
}

# run_fits RUN: whether run RUN can still end within BUDGET_S, judging by the last run's
# LAST_RUN_S; says so when it cannot.
run_fits() {
    if (( $(date +%s) - START + LAST_RUN_S > BUDGET_S )); then
        log "a run takes ~${LAST_RUN_S}s and the budget is ${BUDGET_S}s: stopping after $(( $1 - 1 )) runs"
        return 1
    fi
}

# export_revision: REVISION, the commit measured (and whether src/ had changes on top).
export_revision() {
    REVISION="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    if [[ -n "$(git status --porcelain -- src Cargo.toml 2>/dev/null)" ]]; then REVISION="$REVISION + uncommitted changes in src/"; fi
    export REVISION
}

# suite_scenario NAME RUN CASE SCENARIO ARGS...: one heartwire scenario of SUITE=NAME, its
# JSON line into $OUT/NAME.jsonl (run 1's command line into $OUT/NAME-commands.txt).
suite_scenario() {
    local file=$1 run=$2 case=$3 sc=$4; shift 4
    local cmd=("$BENCH" "$sc" --server "127.0.0.1:$PORT" --pid "$SERVER_PID" --label heartwire "$@")
    [[ $run == 1 ]] && echo "heartwire-bench $sc --server 127.0.0.1:PORT --pid PID --label heartwire ${*//$ROOT\//}" >> "$OUT/$file-commands.txt"
    record "$file.jsonl" "$run" "$case" "$case" "${cmd[@]}"
}

# wait_ready ADMIN_PORT: until /healthz answers 200 (the broker connected), 10 s at most.
wait_ready() {
    for _ in $(seq 1 100); do
        if curl -sf "http://127.0.0.1:$1/healthz" >/dev/null; then return 0; fi
        sleep 0.1
    done
    log "the node with admin port $1 never became ready"; return 1
}

if [[ $SUITE == redis ]]; then
    REDIS_BIN=$(command -v redis-server) || { log "redis-server is not installed: apt-get install redis-server"; exit 1; }
    rm -f "$OUT"/redis.jsonl
    : > "$OUT/redis-commands.txt"
    rscenario() { suite_scenario redis "$@"; }
    broker_toml() { printf '[broker]\nkind = "redis"\nurl = "redis://127.0.0.1:%s"\n' "$PORT_REDIS"; }
    # start_nodes: redis-server and two nodes on it; SERVER_PID is node A (publishes go
    # there), NODE_B its peer, REDIS_PID the broker.
    start_nodes() {
        "$REDIS_BIN" --port "$PORT_REDIS" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
            --logfile "" --dir "$OUT" >>"$OUT/redis.log" 2>&1 &
        REDIS_PID=$!
        EXTRA_PIDS+=("$REDIS_PID")
        wait_port "$PORT_REDIS" redis-server
        HW_EXTRA="$(history_extra)
$(channels_extra)
$(broker_toml)"
        start_server heartwire "$IDLE_PING"
        sed -e "s/127.0.0.1:$PORT_HW\"/127.0.0.1:$PORT_HW2\"/" -e "s/127.0.0.1:$PORT_ADMIN\"/127.0.0.1:$PORT_ADMIN2\"/" \
            "$OUT/heartwire.toml" > "$OUT/heartwire-b.toml"
        "$HW" --config "$OUT/heartwire-b.toml" 2>>"$OUT/heartwire-b.log" &
        NODE_B=$!
        EXTRA_PIDS+=("$NODE_B")
        wait_port "$PORT_HW2" "node B"
        wait_ready "$PORT_ADMIN" && wait_ready "$PORT_ADMIN2"
    }
    start_memory() {
        HW_EXTRA="$(history_extra)
$(channels_extra)"
        start_server heartwire "$IDLE_PING"
    }
    b1_secs=$(( B1_COUNT / B1_RATE * 2 + 2 ))
    LAST_RUN_S=0
    for run in $(seq 1 "$RUNS"); do
        run_fits "$run" || break
        RUN_START=$(date +%s)
        log "redis run $run"
        if (( run % 2 )); then order="memory redis"; else order="redis memory"; fi
        for kind in $order; do
            if [[ $kind == memory ]]; then start_memory; nodes=(); else start_nodes; nodes=(--also "127.0.0.1:$PORT_HW2" --also-pid "$NODE_B" --broker-pid "$REDIS_PID"); fi
            for route in hist news; do
                rscenario "$run" "B1-$route-$kind" fanout --clients "$FANOUT_CLIENTS" --path "/$route" --channel "$route" \
                    --count "$B1_COUNT" --rate "$B1_RATE" --drain "$DRAIN" --max-secs "$b1_secs" "${nodes[@]}"
            done
            stop_server
            # The rate ladder on a fresh server (or pair): one user per connection on node A.
            if [[ $kind == memory ]]; then start_memory; broker=(); else start_nodes; broker=(--broker-pid "$REDIS_PID"); fi
            for rate in $RL_RATES; do
                rscenario "$run" "rate-$rate-$kind" personal --clients "$RL_USERS" --path '/user?u={i}' --prefix user. \
                    --count "$(( rate * 2 ))" --rate "$rate" --publishers "$RL_PUBLISHERS" --drain "$DRAIN" --max-secs 6 "${broker[@]}"
            done
            stop_server
        done
        LAST_RUN_S=$(( $(date +%s) - RUN_START ))
    done
    export RUNS FANOUT_CLIENTS B1_COUNT B1_RATE DRAIN IDLE_PING RL_USERS RL_RATES RL_PUBLISHERS
    export ELAPSED=$(( $(date +%s) - START )) BUILD_S
    export REDIS_VERSION="$("$REDIS_BIN" --version | head -1)"
    export_revision
    python3 bench/redis_report.py "$OUT" BENCHMARKS.md
    log "done in $(( $(date +%s) - START ))s: redis section of BENCHMARKS.md, $OUT/redis.jsonl"
    exit 0
fi

if [[ $SUITE == history ]]; then
    HW_EXTRA=$(history_extra)
    SERVERS=heartwire
    rm -f "$OUT"/history.jsonl "$OUT"/metrics-storm-*.txt
    : > "$OUT/history-commands.txt"
    hscenario() { suite_scenario history "$@"; }
    b3_count=$(( B3_RATE * B3_SECS ))
    LAST_RUN_S=0
    for run in $(seq 1 "$RUNS"); do
        run_fits "$run" || break
        RUN_START=$(date +%s)
        log "history run $run"
        # Raw /news and envelope /hist with history on one server, interleaved, the order
        # swapped every run so neither always comes first.
        start_server heartwire "$IDLE_PING"
        if (( run % 2 )); then order="raw hist"; else order="hist raw"; fi
        for b in B1 B3; do
            for kind in $order; do
                if [[ $kind == raw ]]; then route=(--path /news --channel news); else route=(--path /hist --channel hist); fi
                if [[ $b == B1 ]]; then
                    hscenario "$run" "B1-$kind" fanout --clients "$FANOUT_CLIENTS" "${route[@]}" --count "$B1_COUNT" \
                        --rate "$B1_RATE" --drain "$DRAIN" --max-secs "$(( B1_COUNT / B1_RATE * 2 + 2 ))"
                else
                    hscenario "$run" "B3-$kind" fanout --clients "$FANOUT_CLIENTS" "${route[@]}" --count "$b3_count" \
                        --rate "$B3_RATE" --drain "$DRAIN" --max-secs "$(( B3_SECS + 2 ))"
                fi
            done
        done
        stop_server
        # The storm on a fresh server: every recovering client on /hist, the others on /news.
        start_server heartwire "$IDLE_PING"
        hscenario "$run" storm storm --clients "$STORM_CLIENTS" --path /hist --channel hist --missed "$STORM_MISSED" \
            --others "$STORM_OTHERS" --others-path /news --others-channel news --rate "$STORM_RATE" \
            --baseline-secs "$STORM_BASE_SECS" --storm-concurrency "$STORM_CONC" --max-secs "$STORM_MAX_SECS" --drain "$DRAIN"
        curl -s "http://127.0.0.1:$PORT_ADMIN/metrics" > "$OUT/metrics-storm-$run.txt" || true
        stop_server
        # Memory: a fresh server per figure, so each starts from the same RSS.
        for size in $HM_SIZES; do
            for layout in many one; do
                start_server heartwire "$IDLE_PING"
                if [[ $layout == many ]]; then
                    mem=(--names 'hm.{i}' --channels "$HM_CHANNELS" --messages "$HM_MESSAGES" --subscribe '/hm?c=0')
                else
                    mem=(--names hone --channels 1 --messages "$HM_ONE" --subscribe /hone)
                fi
                hscenario "$run" "mem-$layout-$size" histmem "${mem[@]}" --size "$size" --admin "127.0.0.1:$PORT_ADMIN"
                stop_server
            done
        done
        LAST_RUN_S=$(( $(date +%s) - RUN_START ))
    done
    export RUNS FANOUT_CLIENTS B1_COUNT B1_RATE B3_RATE B3_SECS DRAIN IDLE_PING STORM_CLIENTS STORM_MISSED STORM_OTHERS \
        STORM_RATE STORM_BASE_SECS STORM_CONC STORM_MAX_SECS HM_MESSAGES HM_CHANNELS HM_ONE HM_SIZES
    export ELAPSED=$(( $(date +%s) - START )) BUILD_S
    export_revision
    python3 bench/history_report.py "$OUT" BENCHMARKS.md
    log "done in $(( $(date +%s) - START ))s: history section of BENCHMARKS.md, $OUT/history.jsonl"
    exit 0
fi

if [[ $SUITE == channels ]]; then
    HW_EXTRA=$(channels_extra)
    SERVERS=heartwire
    rm -f "$OUT"/channels.jsonl
    : > "$OUT/channels-commands.txt"
    HS=(--jwt-alg hs256 --jwt-key "$ROOT/tests/keys/hs.secret")
    ES=(--jwt-alg es256 --jwt-key "$ROOT/tests/keys/ec.key")
    chscenario() { suite_scenario channels "$@"; }
    LAST_RUN_S=0
    for run in $(seq 1 "$RUNS"); do
        run_fits "$run" || break
        RUN_START=$(date +%s)
        log "channels run $run"
        # Memory: a fresh server per figure, so each starts from the same RSS.
        for m in "M1-plain /news" "M1-user /user?u={i}" "M1-jwt /me?token={jwt}"; do
            read -r mcase mpath <<< "$m"
            start_server heartwire "$IDLE_PING"
            extra=()
            [[ $mcase == M1-jwt ]] && extra=("${HS[@]}")
            chscenario "$run" "$mcase" idle --conns "$CH_CONNS" --paths "$mpath" --hold "$CH_HOLD" --big 0 "${extra[@]}"
            stop_server
        done
        start_server heartwire "$IDLE_PING"
        chscenario "$run" B1-plain fanout --clients "$FANOUT_CLIENTS" --count "$B1_COUNT" --rate "$B1_RATE" --drain "$DRAIN" \
            --max-secs "$(( B1_COUNT / B1_RATE * 2 + 2 ))"
        chscenario "$run" B1-shared fanout --clients "$FANOUT_CLIENTS" --path '/user?u={i}' --channel shared --count "$B1_COUNT" \
            --rate "$B1_RATE" --drain "$DRAIN" --max-secs "$(( B1_COUNT / B1_RATE * 2 + 2 ))"
        chscenario "$run" B1-shared19k fanout --clients "$CH_CONNS" --path '/user?u={i}' --channel shared --count "$B1_COUNT" \
            --rate "$B1_RATE" --drain "$DRAIN" --max-secs "$(( B1_COUNT / B1_RATE * 2 + 2 ))"
        chscenario "$run" U1 personal --clients "$CH_CONNS" --path '/user?u={i}' --prefix user. --count "$CH_COUNT" \
            --rate "$CH_RATE" --publishers "$CH_PUBLISHERS" --drain "$DRAIN" --max-secs "$(( CH_COUNT / CH_RATE * 2 + 2 ))"
        # Handshakes on a fresh server (19 000 connections just closed would slow whichever
        # mode comes first), after an untimed warm-up of every mode.
        stop_server
        start_server heartwire "$IDLE_PING"
        # Sets path and extra for a handshake auth mode.
        auth_mode() {
            case $1 in
                none) path=/news; extra=() ;;
                hs256) path='/me?token={jwt}'; extra=("${HS[@]}") ;;
                es256) path='/me?token={jwt}'; extra=("${ES[@]}") ;;
            esac
        }
        for mode in none hs256 es256; do
            auth_mode "$mode"
            chscenario "$run" "A1-warmup-$mode" handshake --count 300 --in-flight "$HS_IN_FLIGHT" --path "$path" "${extra[@]}"
        done
        for mode in none hs256 es256; do
            auth_mode "$mode"
            chscenario "$run" "A1-seq-$mode" handshake --count "$HS_SEQ" --in-flight 1 --path "$path" "${extra[@]}"
            chscenario "$run" "A1-conc-$mode" handshake --count "$HS_N" --in-flight "$HS_IN_FLIGHT" --path "$path" "${extra[@]}"
        done
        stop_server
        LAST_RUN_S=$(( $(date +%s) - RUN_START ))
    done
    export RUNS CH_CONNS CH_HOLD CH_COUNT CH_RATE CH_PUBLISHERS HS_SEQ HS_N HS_IN_FLIGHT FANOUT_CLIENTS B1_COUNT B1_RATE DRAIN IDLE_PING
    export ELAPSED=$(( $(date +%s) - START )) BUILD_S
    export_revision
    python3 bench/channels_report.py "$OUT" BENCHMARKS.md
    log "done in $(( $(date +%s) - START ))s: channels section of BENCHMARKS.md, $OUT/channels.jsonl"
    exit 0
fi


b3_count=$(( B3_RATE * B3_SECS ))
reload_count=$(( 50 * RELOAD_SECS ))
LAST_RUN_S=0
for run in $(seq 1 "$RUNS"); do
    run_fits "$run" || break
    RUN_START=$(date +%s)
    for name in $SERVERS; do
        log "run $run: $name"
        start_server "$name" "$IDLE_PING"
        CASE=idle scenario "$run" "$name" idle --conns "$IDLE_CONNS" --hold "$IDLE_HOLD" --big "$BIG_BYTES"
        if [[ $name == heartwire ]]; then
            curl -s "http://127.0.0.1:$PORT_ADMIN/metrics" > "$OUT/metrics-idle-$run.txt" || true
        elif [[ $name != tornado && $name != floor ]]; then
            curl -s "http://127.0.0.1:$PORT_ADMIN/metrics" > "$OUT/metrics-$name-idle-$run.txt" || true
        fi
        CASE=B1 scenario "$run" "$name" fanout --clients "$FANOUT_CLIENTS" --count "$B1_COUNT" --rate "$B1_RATE" --drain "$DRAIN" \
            --max-secs "$(( B1_COUNT / B1_RATE * 2 + 2 ))"
        CASE=B3 scenario "$run" "$name" fanout --clients "$FANOUT_CLIENTS" --count "$b3_count" --rate "$B3_RATE" \
            --drain "$DRAIN" --max-secs "$(( B3_SECS + 2 ))" --dump "$OUT/latency-$name-$run.json"
        CASE=P1 scenario "$run" "$name" fanout --clients 1 --path /quiet --channel quiet --bystanders "$FANOUT_CLIENTS" \
            --count "$P1_COUNT" --rate "$P1_RATE" --drain "$DRAIN" --max-secs $(( P1_COUNT / P1_RATE * 3 + 2 ))
        CASE=echo scenario "$run" "$name" echo --clients "$ECHO_CLIENTS" --round-trips "$ECHO_TRIPS" --max-secs 30
        if [[ $name == heartwire || $name == base ]]; then
            # Give the SIGHUPs something to apply: a new policy interval and a new page.
            hw_config "$(( IDLE_PING + 1 ))" $'[[static]]\npath = "/index"\nbody = "Hello world"'
        elif [[ $name == *-tls ]]; then
            hw_config "$(( IDLE_PING + 1 ))" $'[[static]]\npath = "/index"\nbody = "Hello world"\n'"$(tls_section)"
        fi
        CASE=reload scenario "$run" "$name" reload --clients "$RELOAD_CLIENTS" --count "$reload_count" --rate 50 \
            --hups "$RELOAD_HUPS" --drain "$DRAIN" --max-secs $(( RELOAD_SECS + 2 ))
        stop_server
        start_server "$name" "$HB_INTERVAL"
        CASE=heartbeat scenario "$run" "$name" heartbeat --conns "$HB_CONNS" --silent "$HB_SILENT" --window "$HB_WINDOW"
        CASE=handshake scenario "$run" "$name" handshake --count "$HS_CONNS" --drop
        stop_server
    done
    LAST_RUN_S=$(( $(date +%s) - RUN_START ))
done

if [[ -n "$COMPARE" ]]; then
    # shellcheck disable=SC2086 # two labels
    python3 bench/compare.py "$OUT/results.jsonl" $COMPARE | tee "$OUT/compare.md"
    log "done in $(( $(date +%s) - START ))s (comparison only, in $OUT/compare.md; BENCHMARKS.md untouched)"
    exit 0
fi

log "writing BENCHMARKS.md"
export RUNS IDLE_CONNS IDLE_HOLD IDLE_PING BIG_BYTES FANOUT_CLIENTS B1_COUNT B1_RATE B3_RATE B3_SECS \
    P1_RATE P1_COUNT ECHO_CLIENTS ECHO_TRIPS HB_CONNS HB_SILENT HB_INTERVAL HB_WINDOW \
    RELOAD_CLIENTS RELOAD_SECS RELOAD_HUPS DRAIN
export ELAPSED=$(( $(date +%s) - START )) BUILD_S
export_revision
python3 -c 'import json, os, sys; json.dump({k: os.environ.get(k) for k in sys.argv[1:]}, open(os.environ["OUT"] + "/env.json", "w"))' \
    RUNS IDLE_CONNS IDLE_HOLD IDLE_PING BIG_BYTES FANOUT_CLIENTS B1_COUNT B1_RATE B3_RATE B3_SECS P1_RATE P1_COUNT \
    ECHO_CLIENTS ECHO_TRIPS HB_CONNS HB_SILENT HB_INTERVAL HB_WINDOW RELOAD_CLIENTS RELOAD_SECS RELOAD_HUPS DRAIN ELAPSED BUILD_S REVISION
python3 bench/report.py "$OUT" BENCHMARKS.md
log "done in $(( $(date +%s) - START ))s: BENCHMARKS.md, $OUT/"
