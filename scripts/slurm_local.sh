#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, with job accounting, for trying and testing sweeps:
#
#   sudo scripts/slurm_local.sh up      # install (Debian/Ubuntu) if missing, configure, start
#   eval "$(scripts/slurm_local.sh env)"  # SLURM_CONF for sbatch, squeue, sacct, scancel
#   python train.py -m hydra/launcher=submitit_slurm optimizer=sgd,adam
#   sudo scripts/slurm_local.sh down    # stop what `up` started, by the PIDs it recorded
#
# Everything lives in one state directory ($MLPKIT_SLURM_STATE, default /tmp/mlpkit-slurm): the
# generated slurm.conf and slurmdbd.conf, the cluster's own munged (its key, socket, pid and log), a
# MariaDB data directory, logs, pid files. Daemons are started by hand (no systemd) and listen on
# 127.0.0.1 only, on free ports chosen at `up`; a munged or cluster already running elsewhere on the
# machine is neither used nor touched. Waits for a daemon stretch with the machine's load.
#
# Accounting is real: slurmdbd stores jobs in a MariaDB server, as on a production cluster, so that
# `sacct` (which submitit polls) reports a job that was killed or cancelled as FAILED/CANCELLED
# instead of leaving the sweep waiting for it.
set -euo pipefail

STATE=${MLPKIT_SLURM_STATE:-/tmp/mlpkit-slurm}
CLUSTER=mlpkit
PACKAGES=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server mariadb-client)

log() { echo "slurm_local: $*" >&2; }
die() { log "error: $*"; exit 1; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

install_packages() {
    local missing=()
    for cmd in slurmctld slurmd sbatch slurmdbd munged mariadbd mariadb-install-db; do
        command -v "$cmd" >/dev/null || missing+=("$cmd")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "missing ${missing[*]}: installing ${PACKAGES[*]}"
    bash "$(dirname "$0")/apt_install.sh" "${PACKAGES[@]}" || die "could not install ${PACKAGES[*]}"
}

# scaled SECONDS: a wait measured on an idle machine, times max(1, load average / cores).
scaled() {
    awk -v s="$1" -v n="$(nproc)" '{ f = $1 / n; if (f < 1) f = 1; printf "%d\n", s * f + 0.5 }' /proc/loadavg
}

# wait_for DESCRIPTION SECONDS COMMAND...: retry COMMAND every 0.2 s until it succeeds, for SECONDS
# stretched by the load.
wait_for() {
    local what=$1 limit; limit=$(scaled "$2"); shift 2
    local tries=$((limit * 5))
    until "$@" >/dev/null 2>&1; do
        tries=$((tries - 1))
        [ $tries -gt 0 ] || die "$what did not come up within ${limit} s (logs in $STATE/log)"
        sleep 0.2
    done
}

pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_munge() {
    # The cluster's own munged: its key, socket and state in $STATE/munge, never one found running (whose
    # key and lifetime are not this cluster's). slurm.conf and slurmdbd.conf name the socket (AuthInfo).
    MUNGE_SOCKET=$STATE/munge/munge.socket
    mkdir -p "$STATE/munge"
    dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none
    chown -R munge:munge "$STATE/munge"
    chmod 0755 "$STATE/munge"  # the socket's directory: every client must reach it; the key stays 0400
    chmod 0400 "$STATE/munge/munge.key"
    runuser -u munge -- munged --socket="$MUNGE_SOCKET" --key-file="$STATE/munge/munge.key" \
        --pid-file="$STATE/munge/munged.pid" --log-file="$STATE/munge/munged.log" \
        --seed-file="$STATE/munge/munged.seed" || die "munged did not start: $STATE/munge/munged.log"
    cp "$STATE/munge/munged.pid" "$STATE/pids/munged"
    wait_for munged 10 bash -c "munge --socket='$MUNGE_SOCKET' -n | unmunge --socket='$MUNGE_SOCKET'"
}

start_mariadb() {
    local dir=$STATE/mysql
    mkdir -p "$dir"
    chown mysql:mysql "$dir"
    mariadb-install-db --no-defaults --user=mysql --datadir="$dir/data" --auth-root-authentication-method=socket \
        --skip-test-db >"$STATE/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed: $STATE/log"
    # Started directly (not mysqld_safe) so that its PID is the server's own.
    nohup mariadbd --no-defaults --user=mysql --datadir="$dir/data" --socket="$dir/mysqld.sock" \
        --pid-file="$dir/mysqld.pid" --bind-address=127.0.0.1 --port="$DB_PORT" --skip-name-resolve \
        --innodb-buffer-pool-size=64M --log-error="$dir/mariadb.log" </dev/null >/dev/null 2>&1 &
    echo $! >"$STATE/pids/mariadbd"
    wait_for MariaDB 60 mariadb --no-defaults --socket="$dir/mysqld.sock" -uroot -e "SELECT 1"
    mariadb --no-defaults --socket="$dir/mysqld.sock" -uroot -e "
        CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
}

write_configs() {
    # The node as slurmd sees it, less a margin of memory so that the node is never refused.
    local hw cpus mem
    hw=$(slurmd -C | head -1)
    cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$hw")
    mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
    local topology
    topology=$(grep -o 'Boards=[0-9]* SocketsPerBoard=[0-9]* CoresPerSocket=[0-9]* ThreadsPerCore=[0-9]*' \
        <<<"$hw" || true)
    cat >"$STATE/slurm.conf" <<EOF
# Generated by scripts/slurm_local.sh: one node, this machine, on 127.0.0.1.
ClusterName=$CLUSTER
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/pids/slurmctld
SlurmdPidFile=$STATE/pids/slurmd
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# A job asking for more than the node has is refused at submission instead of pending forever.
EnforcePartLimits=ALL
ReturnToService=2
# Seconds between SIGTERM and SIGKILL when a job is cancelled or reaches its time limit.
KillWait=5
MinJobAge=60
SchedulerParameters=sched_interval=1
# Job accounting in slurmdbd (MariaDB): sacct knows how every job ended.
AccountingStorageType=accounting_storage/slurmdbd
# The munged for connections to slurmdbd (sacct, sacctmgr, slurmctld): without it, the default socket.
AccountingStoragePass=$MUNGE_SOCKET
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus $topology RealMemory=$((mem * 9 / 10)) State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    cat >"$STATE/slurmdbd.conf" <<EOF
# Generated by scripts/slurm_local.sh
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$STATE/pids/slurmdbd
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$STATE/slurmdbd.conf"
}

up() {
    [ "$(id -u)" -eq 0 ] || die "run as root: slurmd starts jobs as their users, munged as the munge user"
    if pid_alive "$STATE/pids/slurmctld"; then
        log "already up ($STATE)"; return 0
    fi
    install_packages
    rm -rf "$STATE"
    mkdir -p "$STATE"/{pids,log,ctld,slurmd}
    chmod 755 "$STATE"
    CTLD_PORT=$(free_port) SLURMD_PORT=$(free_port) DBD_PORT=$(free_port) DB_PORT=$(free_port)
    DB_PASS=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
    local start=$SECONDS
    start_munge
    start_mariadb
    write_configs
    export SLURM_CONF=$STATE/slurm.conf
    slurmdbd  # reads slurmdbd.conf beside $SLURM_CONF
    wait_for slurmdbd 60 sacctmgr -n list cluster
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
    slurmctld -c -i -f "$SLURM_CONF"
    slurmd -N localhost -f "$SLURM_CONF"
    wait_for "the node" 30 bash -c 'sinfo -h -o %t | grep -qx idle'
    log "up in $((SECONDS - start)) s; state in $STATE"
    echo "export SLURM_CONF=$SLURM_CONF"
}

# stop NAME...: SIGTERM to the daemons whose PIDs `up` recorded, SIGKILL to any still there after 10 s.
stop() {
    local name pids=()
    for name in "$@"; do
        pid_alive "$STATE/pids/$name" && pids+=("$(cat "$STATE/pids/$name")")
        rm -f "$STATE/pids/$name"
    done
    [ ${#pids[@]} -gt 0 ] || return 0
    kill "${pids[@]}" 2>/dev/null || true
    local pid alive
    for _ in $(seq 100); do
        alive=()
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
        [ ${#alive[@]} -gt 0 ] || return 0
        sleep 0.1
    done
    log "${alive[*]} did not stop in 10 s: SIGKILL"
    kill -9 "${alive[@]}" 2>/dev/null || true
}

down() {
    [ -d "$STATE/pids" ] || { log "nothing to stop ($STATE)"; return 0; }
    if pid_alive "$STATE/pids/slurmctld"; then
        # Jobs first: their processes belong to slurmstepd, which outlives slurmd.
        SLURM_CONF=$STATE/slurm.conf scancel --full --signal=KILL --state=RUNNING --partition=debug 2>/dev/null || true
        SLURM_CONF=$STATE/slurm.conf scancel --partition=debug 2>/dev/null || true
        for _ in $(seq 50); do
            [ -z "$(SLURM_CONF=$STATE/slurm.conf squeue -h 2>/dev/null)" ] && break
            sleep 0.2
        done
    fi
    # The Slurm daemons together, then what they use: each takes a second or two to stop.
    stop slurmd slurmctld slurmdbd
    stop mariadbd munged
    log "down"
}

env_cmd() {
    [ -f "$STATE/slurm.conf" ] || die "no cluster in $STATE; run: $0 up"
    echo "export SLURM_CONF=$STATE/slurm.conf"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    env) env_cmd ;;
    *) echo "usage: $0 up|down|env   (state in \$MLPKIT_SLURM_STATE, default /tmp/mlpkit-slurm)" >&2; exit 2 ;;
esac
