#!/usr/bin/env bash
# A one-node Slurm on this machine, for `make test-slurm` and for trying `distill run --executor slurm`.
#
#   scripts/slurm-local.sh up       install Debian's slurm-wlm, slurmdbd, munge and mariadb-server when
#                                   missing, write a config for this machine's cores and memory, start
#                                   munged, MariaDB, slurmdbd, slurmctld and slurmd
#   scripts/slurm-local.sh down     stop the daemons and forget every job (state, accounting database,
#                                   logs, pid files)
#   scripts/slurm-local.sh status   whether each daemon runs, and sinfo
#
# Meant for a container without systemd (it starts the daemons itself) where this script is the only
# Slurm: it writes /etc/slurm/slurm.conf (refusing to replace one it did not write), so that sbatch,
# squeue and sacct find it without SLURM_CONF. The controller and the node are at 127.0.0.1, and
# CommunicationParameters=NoCtldInAddrAny,NoInAddrAny makes slurmctld and slurmd listen on the
# address their host name resolves to instead of on every interface (`up` prints where they listen).
#
# Accounting is real: slurmdbd keeps every job in a MariaDB of its own (data in $STATE/mysql, on
# 127.0.0.1:$DB_PORT only; the system's MariaDB, if any, is not touched), so plain `sacct` lists jobs
# and array tasks (JOB_TASK ids), states, exit codes and submit/eligible/start/end times. Dependencies
# show there as a job's eligible time, the end of the job it waited for; `scontrol show job` (finished
# jobs are kept for MinJobAge, an hour here) shows the Dependency= field itself. Ended jobs are also
# written by jobcomp/filetxt to $STATE/jobcomp.txt (`sacct -c` reads it) with ArrayJobId/ArrayTaskId.
set -euo pipefail

STATE=${DISTILL_SLURM_STATE:-/var/tmp/distill-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# written by distill scripts/slurm-local.sh"
NODE=distill-local
PARTITION=${DISTILL_SLURM_PARTITION:-debug}
DBD_CONF=/etc/slurm/slurmdbd.conf
DB_PORT=${DISTILL_SLURM_DB_PORT:-3307}
DBD_PORT=6819

say() { echo "slurm-local: $*"; }
die() { echo "slurm-local: error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it installs packages and starts daemons)"

# Whether a pid is a live (not zombie) process running the named program.
runs() {
    local pid=$1 name=$2 stat
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || return 1
    # A killed daemon can stay a zombie for a while in a container whose init does not reap it.
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    case ${stat%% *} in Z | X | x) return 1 ;; esac
}

# The pid in a pid file if that process is alive and is the named program; nothing otherwise.
alive() {
    local pidfile=$1 name=$2 pid
    [ -s "$pidfile" ] || return 1
    pid=$(tr -dc '0-9' < "$pidfile")
    [ -n "$pid" ] && runs "$pid" "$name" || return 1
    echo "$pid"
}

# The pids of live processes running exactly this program (daemons started without our pid files).
pids_of() {
    local name=$1 p
    for p in /proc/[0-9]*; do
        runs "${p#/proc/}" "$name" && echo "${p#/proc/}"
    done
    return 0
}

# The pid file of a daemon this script starts (MariaDB writes its own into its data folder).
pidfile() {
    case $1 in
        mariadbd) echo "$STATE/mysql/mariadbd.pid" ;;
        *) echo "$STATE/$1.pid" ;;
    esac
}

# Stops the daemon of a pid file and, unless the third argument is `mine`, every other live process
# of that program (Slurm's daemons: this script is the machine's only Slurm). `mine` stops only the
# pid file's process, for programs the machine may run for others too (munged, MariaDB).
stop() {
    local pidfile=$1 name=$2 scope=${3:-all} pids pid i
    if [ "$scope" = mine ]; then
        pids=$(alive "$pidfile" "$name" || true)
    else
        pids=$( { alive "$pidfile" "$name" || true; pids_of "$name"; } | sort -u)
    fi
    for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
    for i in $(seq 50); do
        local left=""
        for pid in $pids; do runs "$pid" "$name" && left="$left $pid"; done
        [ -z "$left" ] && break
        sleep 0.2
    done
    for pid in $pids; do
        if runs "$pid" "$name"; then
            say "$name ($pid) did not stop on TERM; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    rm -f "$pidfile"
}

install_packages() {
    local missing=()
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
        || missing+=(slurm-wlm)
    command -v slurmdbd >/dev/null || missing+=(slurmdbd)
    command -v munged >/dev/null || missing+=(munge)
    command -v mariadbd >/dev/null && command -v mariadb-install-db >/dev/null || missing+=(mariadb-server)
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing ${missing[*]} from Debian (apt-get)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >/dev/null
        # Debian's maintainer scripts try to start MariaDB through invoke-rc.d; in a container without
        # an init system that is refused, which is fine: `up` starts a MariaDB of its own.
        apt-get install -y -q "${missing[@]}" >/dev/null
    fi
}

write_config() {
    if [ -e "$CONF" ] && ! grep -qxF "$MARK" "$CONF"; then
        die "$CONF exists and was not written by this script; move it away to use the local Slurm"
    fi
    local node host cpus
    host=$(hostname -s)
    # `slurmd -C` reports this machine's sockets, cores, threads and memory as a NodeName line.
    node=$(slurmd -C | head -1)
    [[ $node == NodeName=* ]] || die "slurmd -C printed no node line: $node"
    node=${node#NodeName=* }
    # slurmd -C counts the memory the kernel reports; leave a tenth for the system.
    local mem
    mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
    node=${node/RealMemory=$mem/RealMemory=$((mem * 9 / 10))}
    cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$node")
    mkdir -p /etc/slurm "$STATE/ctld" "$STATE/d" "$STATE/log"
    local tmp="$CONF.tmp.$$"
    cat > "$tmp" <<EOF
$MARK
# A one-node cluster on 127.0.0.1 for this machine ($host, $cpus CPUs); regenerated on each \`up\`.
ClusterName=distill-local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
# Listen on the configured addresses (127.0.0.1), not on every interface.
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# A container without systemd or cgroups: processes are tracked through /proc, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
# Finished jobs stay known to squeue/scontrol for an hour.
MinJobAge=3600
MaxArraySize=10001
# Accounting through slurmdbd (sacct); ended jobs are also written to a text file (sacct -c).
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/jobcomp.txt
NodeName=$NODE NodeHostname=$host NodeAddr=127.0.0.1 $node State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$tmp" "$CONF"
    write_dbd_config
}

# slurmdbd.conf holds the database password, so it belongs to the SlurmUser (root) with mode 0600, as
# slurmdbd demands. A new password is made on each `up` and given to the database user then.
write_dbd_config() {
    if [ -e "$DBD_CONF" ] && ! grep -qxF "$MARK" "$DBD_CONF"; then
        die "$DBD_CONF exists and was not written by this script; move it away to use the local Slurm"
    fi
    DB_PASS=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
    local tmp="$DBD_CONF.tmp.$$"
    (
        umask 077
        cat > "$tmp" <<EOF
$MARK
# slurmdbd for the one-node cluster; regenerated on each \`up\`.
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
# Listen on 127.0.0.1 (what DbdHost resolves to), not on every interface.
CommunicationParameters=NoInAddrAny
SlurmUser=root
PidFile=$STATE/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
    )
    mv "$tmp" "$DBD_CONF"
}

# A MariaDB of our own for slurmdbd: data under $STATE/mysql, TCP on 127.0.0.1:$DB_PORT and a socket
# in $STATE, so it neither needs nor disturbs a system MariaDB.
start_mariadb() {
    local sock=$STATE/mysql/mysqld.sock i
    mkdir -p "$STATE/log"
    if alive "$(pidfile mariadbd)" mariadbd >/dev/null; then
        say "mariadbd already runs"
    else
        if [ ! -d "$STATE/mysql/mysql" ]; then
            rm -rf "$STATE/mysql"
            mkdir -p "$STATE/mysql"
            chown mysql:mysql "$STATE/mysql"
            mariadb-install-db --no-defaults --user=mysql --datadir="$STATE/mysql" \
                --auth-root-authentication-method=socket > "$STATE/log/mariadb-install.log" 2>&1 \
                || { tail -20 "$STATE/log/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
        fi
        touch "$STATE/log/mariadb.log"
        chown mysql:mysql "$STATE/log/mariadb.log"
        # mariadbd stays in the foreground: detach it, in a session of its own, from this shell.
        setsid /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$STATE/mysql" \
            --bind-address=127.0.0.1 --port="$DB_PORT" --socket="$sock" \
            --pid-file="$(pidfile mariadbd)" --log-error="$STATE/log/mariadb.log" \
            --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 --skip-name-resolve < /dev/null > /dev/null 2>&1 &
        for i in $(seq 150); do
            mariadb --no-defaults --socket="$sock" -u root -e 'SELECT 1' >/dev/null 2>&1 && break
            sleep 0.2
        done
        mariadb --no-defaults --socket="$sock" -u root -e 'SELECT 1' >/dev/null 2>&1 || {
            tail -20 "$STATE/log/mariadb.log" >&2
            die "MariaDB did not start (log: $STATE/log/mariadb.log)"
        }
        say "mariadbd started (127.0.0.1:$DB_PORT)"
    fi
    mariadb --no-defaults --socket="$sock" -u root <<EOF || die "could not create the slurm database user"
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
FLUSH PRIVILEGES;
EOF
}

# slurmdbd, and the cluster registered in its database (slurmctld must find it there).
start_slurmdbd() {
    local i
    # slurmdbd reads the password at start: restart it, so that the one just written is in use.
    stop "$STATE/slurmdbd.pid" slurmdbd
    start_daemon slurmdbd /usr/sbin/slurmdbd
    for i in $(seq 100); do
        timeout 10 sacctmgr -n -P list cluster format=cluster >/dev/null 2>&1 && break
        sleep 0.2
    done
    if ! timeout 10 sacctmgr -n -P list cluster format=cluster 2>/dev/null | grep -qx distill-local; then
        timeout 20 sacctmgr -i add cluster distill-local >/dev/null \
            || die "sacctmgr could not add the cluster (log: $STATE/log/slurmdbd.log)"
    fi
}

start_munge() {
    if alive "$STATE/munged.pid" munged >/dev/null || [ -n "$(pids_of munged)" ]; then
        say "munged already runs"
        return
    fi
    rm -f "$STATE/munged.pid"
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge
    chmod 0755 /run/munge
    if [ ! -s /etc/munge/munge.key ]; then
        say "creating /etc/munge/munge.key"
        (umask 077; dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none)
        chown munge:munge /etc/munge/munge.key
    fi
    chmod 0400 /etc/munge/munge.key
    rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
    local i
    for i in $(seq 50); do
        munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.2
    done
    munge -n </dev/null | unmunge >/dev/null || die "munged does not answer (see /var/log/munge/munged.log)"
    cp /run/munge/munged.pid "$STATE/munged.pid"
    say "munged started"
}

start_daemon() {
    local name=$1; shift
    if alive "$STATE/$name.pid" "$name" >/dev/null; then
        say "$name already runs"
        return
    fi
    # A stale pid file, or a daemon of ours started without one: stop it and start clean.
    stop "$STATE/$name.pid" "$name"
    "$@"
    local i
    for i in $(seq 50); do
        alive "$STATE/$name.pid" "$name" >/dev/null && { say "$name started"; return; }
        sleep 0.2
    done
    tail -20 "$STATE/log/$name.log" >&2 || true
    die "$name did not start (log: $STATE/log/$name.log)"
}

up() {
    install_packages
    mkdir -p "$STATE"
    write_config
    start_munge
    start_mariadb
    start_slurmdbd
    start_daemon slurmctld /usr/sbin/slurmctld -f "$CONF"
    local i
    for i in $(seq 50); do
        timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP' && break
        sleep 0.2
    done
    timeout 10 scontrol ping | grep -q 'is UP' \
        || die "slurmctld does not answer scontrol ping (log: $STATE/log/slurmctld.log)"
    start_daemon slurmd /usr/sbin/slurmd -f "$CONF" -N "$NODE"
    # Wait for the node to register and be usable.
    local state=""
    for i in $(seq 100); do
        state=$(timeout 10 sinfo -h -N -n "$NODE" -o %t 2>/dev/null || true)
        case $state in
            idle* | mix* | alloc*) break ;;
            down* | drain* | fail*) timeout 10 scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true ;;
        esac
        sleep 0.3
    done
    case $state in
        idle* | mix* | alloc*) ;;
        *) tail -20 "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log" >&2 || true
           die "node $NODE is '${state:-unknown}', not idle (logs in $STATE/log)" ;;
    esac
    say "up: partition $PARTITION, node $NODE ($(sinfo -h -N -n "$NODE" -o '%c CPUs, %m MB')), config $CONF"
    if command -v ss >/dev/null; then
        say "listening: $(ss -ltnH 2>/dev/null | awk -v db=":$DB_PORT" \
            '$4 ~ /:681[789]$/ || substr($4, length($4) - length(db) + 1) == db { print $4 }' | paste -sd' ')"
    fi
}

down() {
    if command -v scancel >/dev/null && [ -n "$(alive "$STATE/slurmctld.pid" slurmctld || true)" ]; then
        timeout 20 scancel --full --quiet --user=root 2>/dev/null || true
    fi
    stop "$STATE/slurmd.pid" slurmd
    stop "$STATE/slurmctld.pid" slurmctld
    stop "$STATE/slurmdbd.pid" slurmdbd
    stop "$(pidfile mariadbd)" mariadbd mine
    if alive "$STATE/munged.pid" munged >/dev/null; then
        stop "$STATE/munged.pid" munged mine
        rm -f /run/munge/munged.pid /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
    fi
    rm -f "$STATE"/*.pid
    rm -rf "$STATE/ctld" "$STATE/d" "$STATE/log" "$STATE/jobcomp.txt" "$STATE/mysql"
    say "down: daemons stopped, job state and accounting database removed"
}

status() {
    local name
    for name in munged mariadbd slurmdbd slurmctld slurmd; do
        if pid=$(alive "$(pidfile "$name")" "$name"); then
            say "$name runs ($pid)"
        else
            say "$name does not run"
        fi
    done
    sinfo 2>&1 || true
}

case ${1:-} in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
