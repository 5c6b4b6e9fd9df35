#!/usr/bin/env bash
# Makes sure PostgreSQL (127.0.0.1:5432), RabbitMQ (127.0.0.1:5672) and MariaDB (127.0.0.1:3306,
# root without password, database `test`) answer: start them when installed but stopped; install them
# (Debian packages, as root) when absent.
set -uo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && exec 3>&-; }

wait_port() {
  for _ in $(seq 1 90); do port_open "$1" && return 0; sleep 1; done
  return 1
}

apt_install() {
  if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null; then
    echo "cannot install $*: not root or no apt-get" >&2; return 1
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  port_open 5432 && return 0
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "PostgreSQL is not installed; installing" >&2
    apt_install postgresql || return 1
    local conf; conf=$(ls -d /etc/postgresql/*/main | head -1)
    # Local tests connect as postgres over TCP without a password.
    sed -i 's/^\(host.*127.0.0.1\/32\s*\)\S*$/\1trust/; s/^\(host.*::1\/128\s*\)\S*$/\1trust/' "$conf/pg_hba.conf"
  fi
  echo "starting PostgreSQL" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  wait_port 5432
}

ensure_rabbitmq() {
  port_open 5672 && return 0
  if ! command -v rabbitmq-server >/dev/null; then
    echo "RabbitMQ is not installed; installing" >&2
    apt_install rabbitmq-server || return 1
  fi
  echo "starting RabbitMQ" >&2
  rabbitmq-server -detached || true
  wait_port 5672
}

ensure_mariadb() {
  port_open 3306 && return 0
  if [ ! -x /usr/sbin/mariadbd ]; then
    echo "MariaDB is not installed; installing" >&2
    apt_install mariadb-server || return 1
  fi
  echo "starting MariaDB" >&2
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
  wait_port 3306 || return 1
  # Tests connect as root over TCP without a password and expect a `test` database.
  if command -v mariadb >/dev/null; then
    mariadb -uroot -h127.0.0.1 -e "SELECT 1" >/dev/null 2>&1 || mariadb -uroot -e \
      "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION" || true
    mariadb -uroot -h127.0.0.1 -e "CREATE DATABASE IF NOT EXISTS test" || true
  fi
}

# The fault suite (tests/fault) starts a PostgreSQL cluster and a RabbitMQ node of its own: it needs the
# server binaries even where the shared services run elsewhere (containers). Not fatal: the suite
# skips without them (fails under CI=true) and says why.
ensure_fault_binaries() {
  local missing=()
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || missing+=(postgresql)
  { [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] && command -v erl >/dev/null; } || missing+=(rabbitmq-server)
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "the fault suite needs ${missing[*]}; installing" >&2
  apt_install "${missing[@]}" || echo "could not install ${missing[*]}: tests/fault will skip" >&2
}

ok=0
ensure_postgres || { echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2; ok=1; }
ensure_rabbitmq || { echo "RabbitMQ is not reachable on 127.0.0.1:5672" >&2; ok=1; }
ensure_mariadb || { echo "MariaDB is not reachable on 127.0.0.1:3306" >&2; ok=1; }
ensure_fault_binaries
exit $ok
