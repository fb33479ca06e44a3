#!/bin/bash
# A single-node Slurm for tests and demos, started without systemd (run as root):
#   pipelines/slurm/local-slurm.sh start DIR   # munged + slurmctld + slurmd; prints SLURM_CONF=…
#   pipelines/slurm/local-slurm.sh stop DIR
# Debian slurm-wlm 22.05: proctrack/linuxproc, task/none, select/cons_tres with CR_CPU, no
# accounting, one node with CPUs=$(nproc), partition `debug`. State, logs and config live in DIR.
set -euo pipefail
cmd=${1:?start|stop}
dir=$(mkdir -p "${2:?state directory}" && cd "$2" && pwd)
conf="$dir/slurm.conf"
case "$cmd" in
start)
  for b in munged slurmctld slurmd sbatch sinfo; do
    command -v "$b" >/dev/null || { echo "local-slurm: $b not found (apt-get install slurm-wlm munge)" >&2; exit 2; }
  done
  [ "$(id -u)" = 0 ] || { echo "local-slurm: run as root (Slurm daemons)" >&2; exit 2; }
  mkdir -p "$dir"/{state,spool,log} /run/munge /var/lib/munge /var/log/munge
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
  chmod 0400 /etc/munge/munge.key
  if ! pgrep -x munged >/dev/null; then
    if id munge >/dev/null 2>&1; then runuser -u munge -- munged; else munged --force; fi
  fi
  host=$(hostname -s)
  cat > "$conf" <<CONF
ClusterName=drivekit
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF="$conf"
  slurmctld -f "$conf"
  slurmd -f "$conf"
  for _ in $(seq 1 60); do
    state=$(sinfo -h -o %T 2>/dev/null | head -n1 || true)
    case "$state" in idle*|mixed*|alloc*) echo "SLURM_CONF=$conf"; exit 0 ;; esac
    sleep 0.5
  done
  echo "local-slurm: the node did not come up (state: ${state:-none}); logs in $dir/log" >&2
  exit 1
  ;;
stop)
  for p in slurmd slurmctld; do
    [ -f "$dir/$p.pid" ] && kill "$(cat "$dir/$p.pid")" 2>/dev/null || true
  done
  ;;
*)
  echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
