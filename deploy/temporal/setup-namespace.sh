#!/bin/sh
# One-shot (admin-tools image): create the namespace and register the custom search attributes
# the workflows upsert (ProjectId, BackupStep; both Keyword). Idempotent: each step first checks
# what exists. Retries while the server starts; exits non-zero if it never becomes healthy, so the
# worker (which waits for this container to complete successfully) does not start against it.
set -eu
: "${TEMPORAL_ADDRESS:?}"
ns="${TEMPORAL_NAMESPACE:-default}"
retention="${TEMPORAL_NAMESPACE_RETENTION:-7d}"
attributes="ProjectId BackupStep"

# Dial the IPv4 address: the official Temporal compose setup does the same because the CLI can
# fail on a container hostname that also resolves to IPv6.
host="${TEMPORAL_ADDRESS%:*}"
ipv4="$(getent ahosts "$host" 2>/dev/null | awk '$1 ~ /^[0-9.]+$/ { print $1; exit }')" || true
if [ -n "$ipv4" ]; then
  TEMPORAL_ADDRESS="$ipv4:${TEMPORAL_ADDRESS##*:}"
  export TEMPORAL_ADDRESS
fi

retry() { # CMD...: up to 60 attempts, 2 s apart
  n=0
  until "$@"; do
    n=$((n + 1))
    [ "$n" -lt 60 ] || { echo "giving up: $*" >&2; return 1; }
    echo "not yet: $* (attempt $n)"
    sleep 2
  done
}

ensure_namespace() {
  temporal operator namespace describe --namespace "$ns" >/dev/null 2>&1 ||
    temporal operator namespace create --namespace "$ns" --retention "$retention"
}

ensure_keyword_attribute() { # NAME
  # A freshly created namespace can take a few seconds to reach every service: retried by caller.
  if temporal operator search-attribute list --namespace "$ns" | grep -qw "$1"; then
    temporal operator search-attribute list --namespace "$ns" | grep -w "$1" | grep -qw Keyword ||
      { echo "search attribute $1 exists in $ns but is not Keyword: fix it by hand" >&2; exit 2; }
    return 0
  fi
  temporal operator search-attribute create --namespace "$ns" --name "$1" --type Keyword
}

retry temporal operator cluster health
retry ensure_namespace
for name in $attributes; do
  retry ensure_keyword_attribute "$name"
done
echo "namespace $ns ready with search attributes: $attributes"
