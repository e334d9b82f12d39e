#!/usr/bin/env bash
# Builds the Dockerfile as it is, without a Docker daemon, and runs the image it makes.
#
#   sudo scripts/image-build-without-docker.sh        (or: sudo make image-check)
#
# buildah (chroot isolation) builds it on a stand-in for python:3.11-slim-bookworm made
# from Debian's own packages (debootstrap), then the image is run: --version, `db upgrade`,
# `serve`, the HEALTHCHECK from the image's configuration, the console and its static
# files, and what the runtime stage must not carry. It prints what it checked; it stops at
# the first check that fails. docs/deployment.md, "Building the image without a Docker
# daemon", says what this proves and what differs from the official base image.
#
# Needs root on Debian 12 (it installs buildah and debootstrap with apt-get), python3 and
# curl, and reaches Debian's mirror and PyPI. Not part of `make test` or CI: it takes
# minutes. Settings (environment):
#   IMAGE_TAG                 the image built (localhost/fieldwatch:dev)
#   BASE_IMAGE                the stand-in base (localhost/fieldwatch-base:bookworm-py311)
#   REBUILD_BASE=1            make the base anew even if it exists
#   DEBIAN_MIRROR             a Debian mirror for debootstrap (its default when unset)
#   IMAGE_WORK_DIR            logs and the .deb cache (/var/tmp/fieldwatch-image)
#   STORAGE_DRIVER            buildah's storage driver (vfs: needs no overlayfs)
#   IMAGE_CHECK_DATABASE_URL  an account that may CREATE DATABASE, e.g.
#                             postgresql://postgres@127.0.0.1:5432/postgres: the image
#                             also migrates and serves a scratch database fw_image_check
#                             there (dropped at the end); unset: SQLite only
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=${IMAGE_TAG:-localhost/fieldwatch:dev}
BASE=${BASE_IMAGE:-localhost/fieldwatch-base:bookworm-py311}
WORK=${IMAGE_WORK_DIR:-/var/tmp/fieldwatch-image}
PG_ADMIN=${IMAGE_CHECK_DATABASE_URL:-}
PG_NAME=fw_image_check
CTR=fieldwatch-image-check
B=(buildah --storage-driver "${STORAGE_DRIVER:-vfs}")
export BUILDAH_ISOLATION=chroot
SERVER=''
PG_MADE=''
declare -a TIMES=()

ok() { printf 'ok    %s\n' "$*"; }
note() { printf '      %s\n' "$*"; }
fail() { printf 'FAIL  %s\n' "$*" >&2; exit 1; }
step() { printf '\n== %s\n' "$*"; STEP_NAME=$1; STEP_START=$SECONDS; }
step_done() { TIMES+=("$(printf '%-28s %4d s' "$STEP_NAME" $((SECONDS - STEP_START)))"); }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# A command in the working container: as the image's user, in its working directory, with
# its environment, on the host's network.
in_image() { "${B[@]}" run --isolation chroot --network host "${RUN_ENV[@]}" "$CTR" -- "$@"; }

tools() {
    step tools
    [ "$(id -u)" = 0 ] || fail "run as root (buildah's chroot isolation and debootstrap need it)"
    local missing=()
    for t in buildah debootstrap python3 curl; do command -v "$t" >/dev/null || missing+=("$t"); done
    if [ ${#missing[@]} -gt 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]/python3/python3-minimal}" >/dev/null
    fi
    ok "$(buildah --version | cut -d' ' -f1-3), debootstrap $(dpkg-query -W -f='${Version}' debootstrap), storage driver ${B[2]}"
    mkdir -p "$WORK/debs"
    step_done
}

base_image() {
    step "base image"
    if [ "${REBUILD_BASE:-0}" != 1 ] && "${B[@]}" inspect --type image "$BASE" >/dev/null 2>&1; then
        ok "$BASE exists (REBUILD_BASE=1 makes it anew)"
        step_done; return
    fi
    local root="$WORK/rootfs" c m
    rm -rf "$root"
    # python3-distutils: python3.11-venv needs it, and debootstrap does not resolve the
    # virtual package python3.11-distutils by itself.
    debootstrap --variant=minbase --cache-dir="$WORK/debs" \
        --include=python3.11,python3.11-venv,python3-distutils,ca-certificates \
        bookworm "$root" ${DEBIAN_MIRROR:+"$DEBIAN_MIRROR"} >"$WORK/debootstrap.log" 2>&1 \
        || fail "debootstrap (log: $WORK/debootstrap.log)"
    # Trimmed as a slim image is; nothing of this host's network settings kept.
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
        "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/*.log
    find "$root/usr/share/doc" -type f ! -name copyright -delete
    : >"$root/etc/resolv.conf"
    : >"$root/etc/hostname"
    # The official image's interpreter is /usr/local/bin/python.
    ln -sf /usr/bin/python3.11 "$root/usr/local/bin/python"
    ln -sf /usr/bin/python3.11 "$root/usr/local/bin/python3"
    c=$("${B[@]}" from scratch)
    m=$("${B[@]}" mount "$c")
    cp -a "$root/." "$m/"
    "${B[@]}" umount "$c" >/dev/null
    "${B[@]}" config --env LANG=C.UTF-8 \
        --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd python3 \
        --label org.opencontainers.image.description="Debian bookworm (minbase) with Debian's python3.11: a stand-in for python:3.11-slim-bookworm" \
        "$c"
    "${B[@]}" commit --quiet --rm "$c" "$BASE" >/dev/null
    ok "$BASE from debootstrap (Debian $(cat "$root/etc/debian_version"), $(chroot "$root" python3.11 -V))"
    rm -rf "$root"
    step_done
}

build() {
    step build
    local ca=() old
    old=$("${B[@]}" inspect --type image --format '{{.FromImageID}}' "$TAG" 2>/dev/null || true)
    # The host's CA bundle, read-only in each RUN step and not kept in the image: pip then
    # trusts what this host trusts (a proxy's CA too). Debian's pip reads that bundle.
    [ -f /etc/ssl/certs/ca-certificates.crt ] \
        && ca=(--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
    "${B[@]}" bud --isolation chroot --network host --format docker \
        --build-arg PYTHON_IMAGE="$BASE" "${ca[@]}" -f Dockerfile -t "$TAG" . \
        >"$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log" >&2; fail "buildah bud (log: $WORK/build.log)"; }
    ok "buildah bud -f Dockerfile --build-arg PYTHON_IMAGE=$BASE -t $TAG . (log: $WORK/build.log)"
    # The image this tag named before, now without a name: removed (vfs keeps whole copies).
    if [ -n "$old" ] && [ "$old" != "$("${B[@]}" inspect --type image --format '{{.FromImageID}}' "$TAG")" ]; then
        "${B[@]}" rmi "$old" >/dev/null 2>&1 || true
    fi
    grep -q '^fieldwatch [0-9]' "$WORK/build.log" && ok "the build stage's own checks passed (console files installed, fieldwatch --version)"
    ok "image size $("${B[@]}" images --format '{{.Size}}' "$TAG"), the base's $("${B[@]}" images --format '{{.Size}}' "$BASE")"
    step_done
}

# The image's configuration as written in the Dockerfile.
image_config() {
    step "image configuration"
    "${B[@]}" inspect --type image "$TAG" >"$WORK/inspect.json"
    python3 - "$WORK/inspect.json" "$WORK/healthcheck.args" <<'EOF' || fail "image configuration"
import json, sys
config = json.load(open(sys.argv[1]))["Docker"]["config"]
hc = config.get("Healthcheck") or {}
checks = {
    "user 10001:10001": config.get("User") == "10001:10001",
    "entrypoint [fieldwatch], cmd [serve]": (config.get("Entrypoint"), config.get("Cmd")) == (["fieldwatch"], ["serve"]),
    "healthcheck kept (docker format)": (hc.get("Test") or [""])[0] == "CMD",
}
for name, passed in checks.items():
    print(("ok    " if passed else "FAIL  ") + name)
if not all(checks.values()):
    sys.exit(1)
open(sys.argv[2], "wb").write(b"\0".join(a.encode() for a in hc["Test"][1:]) + b"\0")
EOF
    step_done
}

start_container() {
    "${B[@]}" rm "$CTR" >/dev/null 2>&1 || true
    "${B[@]}" from --name "$CTR" "$TAG" >/dev/null
    PORT=$(free_port)
    MQTT_PORT=$(free_port)
    while [ "$MQTT_PORT" = "$PORT" ]; do MQTT_PORT=$(free_port); done
    # Loopback only, and free ports (not the image's 8000 and 1883): this host's network.
    RUN_ENV=(--env FIELDWATCH_HOST=127.0.0.1 --env FIELDWATCH_PORT="$PORT"
             --env FIELDWATCH_MQTT_PORT="$MQTT_PORT")
}

# The container's files (path, size, time, mode, owner), to tell what the runs wrote.
snapshot() {
    local m
    m=$("${B[@]}" mount "$CTR")
    (cd "$m" && find . -xdev \( -path ./proc -o -path ./sys -o -path ./dev \) -prune \
        -o -printf '%p %s %T@ %m %U\n' | LC_ALL=C sort) >"$1"
    "${B[@]}" umount "$CTR" >/dev/null
}

# What the runtime stage holds, before anything has run in it.
contents() {
    step "runtime stage contents"
    local m bm found
    m=$("${B[@]}" mount "$CTR")
    found=$(for d in usr/bin usr/local/bin opt/fieldwatch/bin; do
        for t in cc gcc g++ c++ clang make ld; do [ ! -e "$m/$d/$t" ] || echo "/$d/$t"; done
    done)
    [ -z "$found" ] || fail "a compiler or build tool in the runtime stage: $found"
    ok "no compiler or build tool (cc, gcc, g++, clang, make, ld)"
    found=$( (find "$m/tmp" "$m/var/tmp" "$m/var/lib/fieldwatch" -mindepth 1
              find "$m/root" "$m/opt/fieldwatch" \( -name .cache -o -name '*.whl' \)
              [ ! -e "$m/src" ] || echo /src) 2>&1 | sed "s|^$m||")
    [ -z "$found" ] || fail "build leftovers in the runtime stage: $found"
    ok "no pip cache, wheel or build directory (/root/.cache, /tmp, /var/tmp, /src; /var/lib/fieldwatch empty)"
    [ "$(stat -c %u:%g "$m/var/lib/fieldwatch")" = 10001:10001 ] || fail "/var/lib/fieldwatch is not 10001's"
    ok "/var/lib/fieldwatch belongs to 10001:10001"
    note "the virtual environment /opt/fieldwatch: $(du -sh "$m/opt/fieldwatch" | cut -f1)" \
        "(pip and setuptools in it: $(du -shc "$m"/opt/fieldwatch/lib/python3.11/site-packages/{pip,setuptools} | tail -1 | cut -f1))"
    "${B[@]}" rm "$CTR-base" >/dev/null 2>&1 || true
    "${B[@]}" from --name "$CTR-base" "$BASE" >/dev/null
    bm=$("${B[@]}" mount "$CTR-base")
    cmp -s "$m/etc/ssl/certs/ca-certificates.crt" "$bm/etc/ssl/certs/ca-certificates.crt" \
        || fail "the image's CA bundle is not the base image's"
    ok "the image's CA bundle is the base image's (the host's, used while building, was not kept)"
    "${B[@]}" rm "$CTR-base" >/dev/null
    "${B[@]}" umount "$CTR" >/dev/null
    snapshot "$WORK/files.before"
    step_done
}

# Kubernetes runs the image with readOnlyRootFilesystem and volumes on /var/lib/fieldwatch
# and /tmp (deploy/k8s/): what the runs wrote must lie there. /run is where buildah mounts
# its own files while a command runs.
written() {
    local changed
    snapshot "$WORK/files.after"
    changed=$(LC_ALL=C comm -13 "$WORK/files.before" "$WORK/files.after" | cut -d' ' -f1 \
        | grep -v -E '^\./(var/lib/fieldwatch|tmp)(/|$)|^\./run$' || true)
    [ -z "$changed" ] || fail "written outside /var/lib/fieldwatch and /tmp: $changed"
    ok "the runs wrote only under /var/lib/fieldwatch and /tmp (what readOnlyRootFilesystem allows):" \
        "$(LC_ALL=C comm -13 "$WORK/files.before" "$WORK/files.after" \
            | awk '$1 ~ /^\.\/(var\/lib\/fieldwatch|tmp)\/./ {printf "%s%s (%s)", sep, substr($1, 2), $4; sep=", "}')"
}

# An SQL statement on IMAGE_CHECK_DATABASE_URL, with the image's own asyncpg.
pg_admin() {
    in_image python -c 'import asyncio, sys, asyncpg
async def main():
    conn = await asyncpg.connect(sys.argv[1])
    await conn.execute(sys.argv[2])
    await conn.close()
asyncio.run(main())' "$PG_ADMIN" "$1"
}

commands() {
    step "commands"
    local want got
    want="fieldwatch $(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)"
    got=$(in_image fieldwatch --version)
    [ "$got" = "$want" ] || fail "fieldwatch --version: '$got', not '$want'"
    ok "fieldwatch --version: $got"
    # shellcheck disable=SC2016  # expanded by the image's shell
    got=$(in_image sh -c 'echo "$(id -u):$(id -g) $(pwd)"')
    [ "$got" = "10001:10001 /var/lib/fieldwatch" ] || fail "commands run as $got"
    ok "commands run as uid:gid 10001:10001 in /var/lib/fieldwatch"
    got=$(in_image fieldwatch db upgrade 2>&1) || { echo "$got" >&2; fail "fieldwatch db upgrade (SQLite)"; }
    ok "fieldwatch db upgrade: $(tail -1 <<<"$got")"
    if [ -n "$PG_ADMIN" ]; then
        pg_admin "DROP DATABASE IF EXISTS $PG_NAME WITH (FORCE)"
        pg_admin "CREATE DATABASE $PG_NAME"
        PG_MADE=1
        RUN_ENV+=(--env FIELDWATCH_DATABASE_URL="${PG_ADMIN%/*}/$PG_NAME")
        got=$(in_image fieldwatch db upgrade 2>&1) || { echo "$got" >&2; fail "fieldwatch db upgrade (PostgreSQL)"; }
        ok "fieldwatch db upgrade: $(tail -1 <<<"$got")"
    fi
    step_done
}

# The process that serves: the image's python running `fieldwatch serve` under our
# `buildah run` (whose chroot processes, between the two, run as 10001 too).
serve_pid() {
    local p pp
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        case "$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)" in
            "/opt/fieldwatch/bin/python /opt/fieldwatch/bin/fieldwatch serve"*) ;;
            *) continue ;;
        esac
        pp=$p
        while [ "${pp:-1}" -gt 1 ]; do
            [ "$pp" = "$SERVER" ] && { echo "$p"; return 0; }
            pp=$(sed 's/.*) //' "/proc/$pp/stat" 2>/dev/null | cut -d' ' -f2)
        done
    done
    return 1
}

get() { curl -s -o "${2:-/dev/null}" -w '%{http_code}' "http://127.0.0.1:$PORT$1" || true; }

serve() {
    step serve
    local code i ids
    in_image fieldwatch serve >"$WORK/serve.log" 2>&1 &
    SERVER=$!
    for i in $(seq 90); do
        code=$(get /health/live)
        [ "$code" = 200 ] && break
        kill -0 "$SERVER" 2>/dev/null || { tail -20 "$WORK/serve.log" >&2; fail "fieldwatch serve exited"; }
        sleep 1
    done
    [ "$code" = 200 ] || fail "GET /health/live: $code after 90 s (log: $WORK/serve.log)"
    ok "fieldwatch serve (the image's CMD) on 127.0.0.1:$PORT: GET /health/live 200 within $i s"
    SERVE_PID=$(serve_pid) || fail "the serving process was not found"
    ids="$(awk '/^Uid:/ {print $2,$3,$4,$5}' "/proc/$SERVE_PID/status")/$(awk '/^Gid:/ {print $2,$3,$4,$5}' "/proc/$SERVE_PID/status")"
    [ "$ids" = "10001 10001 10001 10001/10001 10001 10001 10001" ] || fail "the serving process's uid/gid: $ids"
    ok "the serving process (pid $SERVE_PID) runs as uid 10001, gid 10001 (real, effective, saved, filesystem): not root"
    mapfile -d '' -t HC <"$WORK/healthcheck.args"
    in_image "${HC[@]}" || fail "the HEALTHCHECK command exited $?"
    ok "the HEALTHCHECK command, as the image's configuration holds it, exits 0"
    code=$(get /health/ready "$WORK/ready.json")
    [ "$code" = 200 ] || fail "GET /health/ready: $code: $(cat "$WORK/ready.json")"
    ok "GET /health/ready 200: $(python3 -c 'import json, sys
checks = json.load(open(sys.argv[1]))["checks"]
print(", ".join(
    " ".join(filter(None, (name, c.get("backend") or c.get("broker"), c.get("schema"), c["status"])))
    for name, c in checks.items()
))' "$WORK/ready.json")"
    console
    step_done
}

# A static file answers 200 with the bytes that src/fieldwatch ships.
same_file() {
    local path=${1%%\?*} code
    code=$(get "$1" "$WORK/asset")
    [ "$code" = 200 ] || fail "GET $1: $code"
    cmp -s "$WORK/asset" "src/fieldwatch$path" || fail "GET $1: not the bytes of src/fieldwatch$path"
}

console() {
    local code a n=0
    code=$(get /console/login "$WORK/login.html")
    [ "$code" = 200 ] || fail "GET /console/login: $code"
    code=$(get /docs "$WORK/docs.html")
    [ "$code" = 200 ] || fail "GET /docs: $code"
    for a in $( (grep -ohE '(src|href)="/static/[^"]+"' "$WORK/login.html" "$WORK/docs.html"
                 echo 'src="/static/vendor/htmx/htmx.min.js"') | sed -E 's/^[a-z]+="//; s/"$//' | sort -u); do
        same_file "$a"
        n=$((n + 1))
    done
    [ "$n" -gt 1 ] || fail "no static file named on /console/login and /docs"
    ok "GET /console/login and /docs 200; the $n static files they use (console's, vendored" \
        "htmx and Swagger UI) answer 200 with the packaged bytes"
}

stop() {
    step stop
    local rc=0
    kill -TERM "$SERVE_PID"
    wait "$SERVER" || rc=$?
    SERVER=''
    if ! grep -q 'Application shutdown complete' "$WORK/serve.log" \
        || ! grep -q "Finished server process \[$SERVE_PID\]" "$WORK/serve.log"; then
        fail "no clean shutdown after SIGTERM (log: $WORK/serve.log)"
    fi
    # uvicorn ends by raising the signal again once it has shut down: docker would show 143.
    ok "SIGTERM to the serving process (what docker stop sends): it shut down cleanly" \
        "(\"Application shutdown complete\", \"Finished server process\"; buildah: $(grep -o 'subprocess exited on [a-z]*' "$WORK/serve.log" | tail -1))"
    rc=0
    in_image "${HC[@]}" >/dev/null 2>&1 || rc=$?
    [ "$rc" != 0 ] || fail "the HEALTHCHECK command passes with no server"
    ok "with the server stopped the HEALTHCHECK command fails (exit $rc)"
    written
    step_done
}

cleanup() {
    set +e
    if [ -n "$SERVER" ]; then
        kill -TERM "${SERVE_PID:-$SERVER}" 2>/dev/null
        wait "$SERVER" 2>/dev/null
    fi
    if [ -n "$PG_MADE" ]; then
        pg_admin "DROP DATABASE IF EXISTS $PG_NAME WITH (FORCE)" && note "dropped the database $PG_NAME"
    fi
    "${B[@]}" rm "$CTR" "$CTR-base" >/dev/null 2>&1
}

main() {
    local start=$SECONDS
    tools
    base_image
    build
    image_config
    trap cleanup EXIT
    start_container
    contents
    commands
    serve
    stop
    printf '\n== times\n'
    printf '      %s\n' "${TIMES[@]}" "$(printf '%-28s %4d s' total $((SECONDS - start)))"
}

main "$@"
