#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, without systemd, from Debian's packages
# (slurmctld slurmd slurm-client munge; this script installs nothing):
#
#   scripts/slurm-cluster.sh up       # munged, slurmctld, slurmd; waits until the node is idle
#   scripts/slurm-cluster.sh status   # prints "up" (exit 0) or "down" (exit 1)
#   scripts/slurm-cluster.sh down     # stops the three daemons by their pid files
#
# Needs root. The node is this host (`hostname -s`) at 127.0.0.1 with the sockets, cores and
# memory `slurmd -C` reports, in one default partition `debug`. /etc/slurm/slurm.conf is
# written only if it is missing or was written by this script (first line below); any other
# slurm.conf is left alone and the script stops. Jobs with more tasks than cores need
# `sbatch --overcommit`. There is no accounting (sacct does not work): poll `scontrol show job`.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MARK="# written by rnn-trainer scripts/slurm-cluster.sh"
RUN=/run/slurm
MUNGE_RUN=/run/munge
SPOOL=/var/spool/rnn-slurm
LOGS=/var/log/rnn-slurm

die() { echo "slurm-cluster.sh: $*" >&2; exit 1; }

need() {
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] ||
      die "'$tool' is not installed (apt-get install slurmctld slurmd slurm-client munge)"
  done
}

# Sends SIGTERM to the pid in $1 and waits up to 10 s for it to exit (then SIGKILL).
stop_pid_file() {
  local file=$1 name=$2 pid
  [ -f "$file" ] || return 0
  pid=$(cat "$file" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "slurm-cluster.sh: $name (pid $pid) ignored SIGTERM for 10 s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$file"
}

running() { [ -f "$1" ] && kill -0 "$(cat "$1" 2>/dev/null)" 2>/dev/null; }

write_conf() {
  if [ -f "$CONF" ] && [ "$(head -n 1 "$CONF")" != "$MARK" ]; then
    die "$CONF exists and was not written by this script; not touching it"
  fi
  local host node
  host=$(hostname -s)
  # "NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105"
  node=$(slurmd -C | head -n 1)
  local sockets cores threads memory cpus
  sockets=$(sed -n 's/.*SocketsPerBoard=\([0-9]*\).*/\1/p' <<<"$node")
  cores=$(sed -n 's/.*CoresPerSocket=\([0-9]*\).*/\1/p' <<<"$node")
  threads=$(sed -n 's/.*ThreadsPerCore=\([0-9]*\).*/\1/p' <<<"$node")
  memory=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
  cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$node")
  [ -n "$sockets" ] && [ -n "$cores" ] && [ -n "$threads" ] && [ -n "$memory" ] ||
    die "cannot read the node's shape from 'slurmd -C': $node"
  mkdir -p "$(dirname "$CONF")"
  cat >"$CONF" <<EOF
$MARK
ClusterName=rnn-ci
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SchedulerType=sched/backfill
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
StateSaveLocation=$SPOOL/ctld
SlurmdSpoolDir=$SPOOL/d
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus Sockets=$sockets CoresPerSocket=$cores ThreadsPerCore=$threads RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
}

up() {
  [ "$(id -u)" = 0 ] || die "needs root (it starts munged and the Slurm daemons)"
  need munged slurmctld slurmd sinfo scontrol
  if running "$RUN/slurmctld.pid" && running "$RUN/slurmd.pid" && running "$MUNGE_RUN/munged.pid"; then
    echo "slurm-cluster.sh: already up"
    return 0
  fi
  down quiet
  write_conf
  [ -f /etc/munge/munge.key ] || mungekey --create
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
  install -d -o munge -g munge -m 0755 "$MUNGE_RUN"
  install -d -m 0755 "$RUN" "$SPOOL/ctld" "$SPOOL/d" "$LOGS"
  runuser -u munge -- /usr/sbin/munged --pid-file="$MUNGE_RUN/munged.pid"
  for _ in $(seq 50); do [ -S "$MUNGE_RUN/munge.socket.2" ] && break; sleep 0.1; done
  [ -S "$MUNGE_RUN/munge.socket.2" ] || die "munged did not create its socket"
  /usr/sbin/slurmctld
  /usr/sbin/slurmd
  local host state
  host=$(hostname -s)
  for _ in $(seq 300); do
    state=$(sinfo -h -n "$host" -o %t 2>/dev/null || true)
    case "$state" in
      idle|mix|alloc) echo "slurm-cluster.sh: up (node $host $state, partition debug)"; return 0 ;;
    esac
    sleep 0.1
  done
  echo "slurm-cluster.sh: the node did not become idle within 30 s (state '${state:-?}'); logs in $LOGS" >&2
  tail -n 20 "$LOGS/slurmctld.log" "$LOGS/slurmd.log" >&2 || true
  down quiet
  exit 1
}

down() {
  stop_pid_file "$RUN/slurmd.pid" slurmd
  stop_pid_file "$RUN/slurmctld.pid" slurmctld
  stop_pid_file "$MUNGE_RUN/munged.pid" munged
  [ "${1:-}" = quiet ] || echo "slurm-cluster.sh: down"
}

status() {
  if running "$RUN/slurmctld.pid" && running "$RUN/slurmd.pid" && running "$MUNGE_RUN/munged.pid"; then
    echo up
  else
    echo down
    return 1
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: scripts/slurm-cluster.sh up|down|status" >&2; exit 2 ;;
esac
