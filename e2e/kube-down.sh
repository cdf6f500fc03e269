#!/usr/bin/env bash
# e2e/kube-down.sh DIR — stops the control plane that e2e/kube-up.sh DIR
# started: kube-apiserver first, then etcd; SIGTERM, then SIGKILL after
# KUBE_DOWN_TIMEOUT seconds (default 15). Idempotent: no DIR, no pid files or
# processes already gone are fine. Leaves DIR (logs, etcd data, pki) in place;
# the next kube-up on DIR wipes it.
set -euo pipefail

[[ $# -eq 1 && -n $1 ]] || { echo "usage: $0 DIR" >&2; exit 2; }
[[ -d $1 ]] || exit 0
DIR=$(cd "$1" && pwd)
TIMEOUT=${KUBE_DOWN_TIMEOUT:-15}

# Is PID still the process kube-up started in DIR (not a recycled pid)?
ours() {
    local cmdline
    cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline") || return 1
    [[ -n $cmdline && $cmdline == *"$DIR/"* ]]
}

for name in kube-apiserver etcd; do
    pidfile=$DIR/$name.pid
    [[ -f $pidfile ]] || continue
    pid=$(cat "$pidfile" 2>/dev/null || true)
    if [[ $pid =~ ^[0-9]+$ ]] && ours "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        deadline=$((SECONDS + TIMEOUT))
        while ours "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
        if ours "$pid"; then
            echo "kube-down: $name (pid $pid) still running after ${TIMEOUT}s; SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
            deadline=$((SECONDS + 10))
            while ours "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
        fi
        echo "kube-down: stopped $name (pid $pid)" >&2
    fi
    rm -f "$pidfile"
done
