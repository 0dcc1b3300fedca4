#!/usr/bin/env bash
# A throw-away Slurm cluster on this machine, to try `runtime.name: slurm` on a laptop and for the tests.
#
#   scripts/slurm-local.sh up   [DIR]   install (apt, when missing and root), start, print the export line
#   scripts/slurm-local.sh down [DIR]   stop every daemon it started, by the PIDs it recorded
#   scripts/slurm-local.sh env  [DIR]   print `export SLURM_CONF=DIR/slurm.conf`
#
# DIR (default /tmp/bootstrap-repro-slurm) holds the config, state, logs and pids/*.pid.
# Started, no systemd, everything on 127.0.0.1: munged, MariaDB + slurmdbd (so that `sacct` works:
# submitit needs it to notice jobs that die hard), slurmctld, and one slurmd per virtual node
# n1..nN (SLURM_LOCAL_NODES, default 2; CPUs=1 each, SLURM_LOCAL_CPUS to change) in partition `debug`.
# SLURM_LOCAL_ACCOUNTING=0 skips MariaDB/slurmdbd. Needs root (Debian/Ubuntu packages:
# slurm-wlm munge slurmdbd mariadb-server). Tested with Slurm 22.05 (Debian 12).
set -euo pipefail
cmd=${1:-}
D=$(realpath -m "${2:-/tmp/bootstrap-repro-slurm}")
NODES=${SLURM_LOCAL_NODES:-2}
CPUS=${SLURM_LOCAL_CPUS:-1}
ACCT=${SLURM_LOCAL_ACCOUNTING:-1}
DB=slurm_acct_$(printf %s "$D" | md5sum | cut -c1-10)

down() {
  # Jobs first (cancelled while slurmd can still end their steps: a step outlives a killed slurmd),
  # then slurmd(s), ..., munged last; each daemon by its
  # recorded PID, SIGKILL after 15 s.
  if [ -f "$D/slurm.conf" ] && [ -f "$D/pids/slurmctld.pid" ]; then
    SLURM_CONF="$D/slurm.conf" scancel --full --quiet --user=root 2>/dev/null || true
    for _ in $(seq 100); do SLURM_CONF="$D/slurm.conf" squeue -h 2>/dev/null | grep -q . || break; sleep 0.1; done
  fi
  for f in "$D"/pids/slurmd.*.pid "$D"/pids/slurmctld.pid "$D"/pids/slurmdbd.pid "$D"/pids/mariadbd.pid "$D"/pids/munged.pid; do
    [ -f "$f" ] || continue
    p=$(cat "$f")
    if kill "$p" 2>/dev/null; then
      for _ in $(seq 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null || true
    fi
    rm -f "$f"
  done
}

wait_for() {
  local what=$1; shift
  for _ in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "slurm-local: timeout waiting for $what (logs: $D/log)" >&2; return 1
}

up() {
  [ "$(id -u)" = 0 ] || { echo "slurm-local: must run as root (it starts munged/slurmd as system users)" >&2; exit 2; }
  if ls "$D"/pids/*.pid >/dev/null 2>&1; then
    echo "slurm-local: $D already has running daemons; run: $0 down $D" >&2; exit 2
  fi
  # One cluster per machine: a second one cannot bind the same ports (6817-6819, 17001..) nor munge's
  # socket, its daemons die, and its commands reach the first cluster (its `down` would cancel those jobs).
  for port in 6817 6819 17001; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "slurm-local: another Slurm cluster already runs on this machine (127.0.0.1:$port answers); stop it first ($0 down ITS_DIR)" >&2
      exit 2
    fi
  done
  pkgs="slurm-wlm munge"; [ "$ACCT" = 1 ] && pkgs="$pkgs slurmdbd mariadb-server"
  if ! dpkg -s $pkgs >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends $pkgs >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get install -y -qq --no-install-recommends $pkgs >/dev/null; }
  fi
  rm -rf "$D/state" "$D/spool"
  mkdir -p "$D"/{state,spool,log,pids}
  H=$(hostname -s)
  MEM=$(( $(awk '/MemTotal/{print int($2/1024)}' /proc/meminfo) / 2 / NODES ))
  # Job ids restart at FirstJobId when the state is wiped: start from the clock, so that a new cluster
  # never reuses the ids (and submitit folders / sacct rows) of an old one.
  FIRST=$(( ($(date +%s) % 600000) * 100 + 1 ))
  acct="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
  [ "$ACCT" = 1 ] && acct="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
JobAcctGatherType=jobacct_gather/linux"
  cat > "$D/slurm.conf" <<CONF
ClusterName=local
SlurmctldHost=$H(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire also delays a requeued job's start (BeginTime = requeue + cred_expire + 1 s; default 120 s)
AuthInfo=cred_expire=${SLURM_LOCAL_CRED_EXPIRE:-10}
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
$acct
JobCompType=jobcomp/none
SchedulerType=sched/backfill
# schedule a submitted batch job at once (default: up to 3 s later); ~1 s submit-to-start instead of ~3 s
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MailProg=/bin/true
FirstJobId=$FIRST
KillWait=30
StateSaveLocation=$D/state
SlurmctldPidFile=$D/slurmctld.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmctldDebug=info
SlurmdDebug=info
SlurmdSpoolDir=$D/spool/%n
SlurmdPidFile=$D/slurmd.%n.pid
SlurmdLogFile=$D/log/slurmd.%n.log
NodeName=n[1-$NODES] NodeHostname=$H NodeAddr=127.0.0.1 Port=[17001-$((17000 + NODES))] CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF="$D/slurm.conf"
  trap 'echo "slurm-local: start failed; stopping what started (logs: $D/log)" >&2; down' ERR

  install -d -o munge -g munge -m 0755 /run/munge
  setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F >"$D/log/munged.out" 2>&1 &
  echo $! > "$D/pids/munged.pid"
  wait_for munge sh -c 'munge -n | unmunge'

  if [ "$ACCT" = 1 ]; then
    install -d -o mysql -g mysql /run/mysqld
    setpriv --reuid=mysql --regid=mysql --init-groups /usr/sbin/mariadbd --datadir=/var/lib/mysql \
      --socket=/run/mysqld/mysqld.sock --bind-address=127.0.0.1 --skip-name-resolve >"$D/log/mariadbd.out" 2>&1 &
    echo $! > "$D/pids/mariadbd.pid"
    wait_for mariadb mariadb-admin --socket=/run/mysqld/mysqld.sock ping
    # A fresh accounting database per cluster dir: no rows of an earlier cluster.
    mariadb --socket=/run/mysqld/mysqld.sock -e "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB;
      CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmpw'; GRANT ALL ON $DB.* TO 'slurm'@'localhost';"
    cat > "$D/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
LogFile=$D/log/slurmdbd.log
PidFile=$D/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurmpw
StorageLoc=$DB
CONF
    chmod 600 "$D/slurmdbd.conf"
    slurmdbd -D >"$D/log/slurmdbd.out" 2>&1 &
    echo $! > "$D/pids/slurmdbd.pid"
    wait_for slurmdbd sacctmgr -n show cluster
    sacctmgr -i add cluster local >/dev/null 2>&1 || true
  fi

  slurmctld -D -i >"$D/log/slurmctld.out" 2>&1 &
  echo $! > "$D/pids/slurmctld.pid"
  for i in $(seq "$NODES"); do
    slurmd -D -N "n$i" >"$D/log/slurmd.n$i.out" 2>&1 &
    echo $! > "$D/pids/slurmd.n$i.pid"
  done
  wait_for "$NODES idle node(s)" sh -c "[ \$(sinfo -h -N -t idle -o %N | wc -l) -ge $NODES ]"
  trap - ERR
  echo "export SLURM_CONF=$SLURM_CONF"
}

case $cmd in
  up) up ;;
  down) down ;;
  env) echo "export SLURM_CONF=$D/slurm.conf" ;;
  *) echo "usage: $0 up|down|env [DIR]" >&2; exit 2 ;;
esac
