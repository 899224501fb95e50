#!/usr/bin/env bash
# sdsbench one-command set-up. Idempotent: a second run checks stamps and installs nothing.
#
#   bash env/setup.sh [all|main|spark|spark_rt|flink|kafka|postgres ...]     (default: all)
#
#   main      .venv/main   from env/requirements-main.txt
#   spark     .venv/spark  from env/requirements-spark.txt + .deps/spark-jars (env/pom-spark-connector.xml)
#   spark_rt  .venv/spark_rt from env/requirements-spark-rt.txt (Spark 4.3.0 for real-time mode;
#             the connector jars of the spark part)
#   flink     .venv/flink  from env/requirements-flink.txt + .deps/flink-jars (env/pom-flink-connector.xml)
#   kafka     Apache Kafka broker jars into .deps/kafka/lib (env/pom-kafka.xml)
#   postgres  PostgreSQL server binaries (Debian package; the system service is never started)
#
# Environment:
#   SDSBENCH_PYTHON     interpreter for the venvs (default: python3.11)
#   SDSBENCH_M2_REPO    Maven local repository (default: ~/.m2/repository; a cache only,
#                       the jars that run are copied into .deps/)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
T_START=$(date +%s)

log() { echo "[setup] $*"; }
die() { echo "[setup] ERROR: $*" >&2; exit 1; }

hash_of() { cat "$@" | sha256sum | cut -c1-16; }

is_root() { [ "$(id -u)" = 0 ]; }

APT_UPDATED=0
apt_install() {
    is_root || die "need '$*' but not root: run 'sudo apt-get install -y $*' and rerun env/setup.sh"
    command -v apt-get >/dev/null || die "need '$*' and apt-get is missing: install $* by hand"
    if [ "$APT_UPDATED" = 0 ]; then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || die "apt-get update failed: check the Debian mirror"
        APT_UPDATED=1
    fi
    log "apt-get install -y $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Options::=--force-confold "$@" >/dev/null \
        || die "apt-get install $* failed"
}

# ---------------------------------------------------------------- python venvs
find_python() {
    local py="${SDSBENCH_PYTHON:-python3.11}"
    if ! command -v "$py" >/dev/null; then
        if command -v python3 >/dev/null && python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
            py=python3
        else
            die "python3.11 not found: install it (apt-get install -y python3.11 python3.11-venv) or set SDSBENCH_PYTHON"
        fi
    fi
    echo "$py"
}

# make_venv NAME REQUIREMENTS
make_venv() {
    local name="$1" req="$2" venv="$REPO/.venv/$1" py stamp want
    [ -f "$req" ] || die "missing $req"
    py="$(find_python)"
    want="$(hash_of "$req")-$("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
    stamp="$venv/.sdsbench-stamp"
    if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        log "venv $name: up to date ($req unchanged)"
    else
        local t0; t0=$(date +%s)
        if [ ! -x "$venv/bin/python" ]; then
            log "venv $name: creating .venv/$name with $py"
            "$py" -m venv "$venv" 2>/dev/null \
                || die "'$py -m venv' failed: install the venv module (apt-get install -y python3.11-venv)"
        fi
        log "venv $name: pip install -r $req"
        "$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$req" \
            || die "pip install -r $req failed into .venv/$name (see pip output above)"
        echo "$want" > "$stamp"
        log "venv $name: installed in $(( $(date +%s) - t0 )) s"
    fi
    # the repo root on sys.path, so 'import sdsbench' works in every venv
    local purelib
    purelib="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    if [ "$(cat "$purelib/sdsbench-repo.pth" 2>/dev/null)" != "$REPO" ]; then
        echo "$REPO" > "$purelib/sdsbench-repo.pth"
    fi
}

# ---------------------------------------------------------------- java / maven jars
ensure_java_maven() {
    local missing=()
    command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
    command -v mvn >/dev/null || missing+=(maven)
    if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
    java -version 2>&1 | grep -qE 'version "(1[7-9]|2[0-9])' \
        || die "Java 17+ needed ($(java -version 2>&1 | head -1)): apt-get install -y openjdk-17-jre-headless"
}

# resolve_jars LABEL POM OUTDIR : copy the pom's runtime dependencies into OUTDIR
resolve_jars() {
    local label="$1" pom="$2" out="$3" want
    [ -f "$pom" ] || die "missing $pom"
    want="$(hash_of "$pom")"
    if [ -f "$out/.sdsbench-stamp" ] && [ "$(cat "$out/.sdsbench-stamp")" = "$want" ]; then
        log "$label jars: up to date ($out)"
        return
    fi
    ensure_java_maven
    local m2="${SDSBENCH_M2_REPO:-$HOME/.m2/repository}" t0 tmp
    t0=$(date +%s)
    log "$label jars: resolving $pom from Maven Central (local repo $m2)"
    tmp="$out.tmp"
    rm -rf "$tmp"
    mkdir -p "$tmp" "$(dirname "$out")"
    if ! mvn -B -q -f "$pom" -Dmaven.repo.local="$m2" \
            org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
            -DincludeScope=runtime -DoutputDirectory="$tmp" > "$tmp.log" 2>&1; then
        grep -E 'ERROR' "$tmp.log" | head -5 >&2 || true
        die "Maven could not resolve $pom (log: $tmp.log): check that Maven Central is reachable"
    fi
    rm -f "$tmp.log"
    echo "$want" > "$tmp/.sdsbench-stamp"
    rm -rf "$out"
    mv "$tmp" "$out"
    log "$label jars: $(ls "$out"/*.jar | wc -l) jars in $out ($(( $(date +%s) - t0 )) s)"
}

# ---------------------------------------------------------------- postgres
find_pg_bin() {
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
    done
    if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
        dirname "$(command -v pg_ctl)"; return 0
    fi
    return 1
}

setup_postgres() {
    local bin
    if bin="$(find_pg_bin)"; then
        log "postgres: found $("$bin/postgres" --version) in $bin"
        return
    fi
    log "postgres: server binaries not found, installing Debian's postgresql (system service stays off)"
    is_root || die "PostgreSQL server missing: run 'sudo apt-get install -y postgresql' and rerun env/setup.sh"
    # no 'main' cluster, and no service start during the install
    mkdir -p /etc/postgresql-common
    [ -f /etc/postgresql-common/createcluster.conf ] \
        || echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
    local policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        policy=1
    fi
    local rc=0
    apt_install postgresql || rc=$?
    [ "$policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
    [ "$rc" = 0 ] || exit "$rc"
    bin="$(find_pg_bin)" || die "postgresql installed but initdb/pg_ctl still not found under /usr/lib/postgresql/*/bin"
    log "postgres: installed $("$bin/postgres" --version)"
}

# ---------------------------------------------------------------- parts
part_main()     { make_venv main env/requirements-main.txt; }
part_kafka()    { resolve_jars kafka env/pom-kafka.xml "$REPO/.deps/kafka/lib"; }
part_spark()    { make_venv spark env/requirements-spark.txt
                  resolve_jars spark-connector env/pom-spark-connector.xml "$REPO/.deps/spark-jars"; }
part_spark_rt() { make_venv spark_rt env/requirements-spark-rt.txt
                  resolve_jars spark-connector env/pom-spark-connector.xml "$REPO/.deps/spark-jars"; }
part_flink()    { make_venv flink env/requirements-flink.txt
                  resolve_jars flink-connector env/pom-flink-connector.xml "$REPO/.deps/flink-jars"; }
part_postgres() { setup_postgres; }

parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(all)
for p in "${parts[@]}"; do
    case "$p" in
        all) part_postgres; part_kafka; part_main; part_spark; part_spark_rt; part_flink ;;
        main|spark|spark_rt|flink|kafka|postgres) "part_$p" ;;
        *) die "unknown part '$p': use all|main|spark|spark_rt|flink|kafka|postgres" ;;
    esac
done
log "done: ${parts[*]} in $(( $(date +%s) - T_START )) s"
