#!/usr/bin/env bash
# Starts a real control plane on loopback for tests: etcd and kube-apiserver
# (built by build.sh), RBAC on, an admin token, service-account signing keys
# so TokenRequest works. Usage: up.sh [STATE_DIR]; prints the admin
# kubeconfig's path. down.sh STATE_DIR stops exactly what this started.
set -euo pipefail
BIN=${CLUSTO_KUBE_CACHE:-$HOME/.cache/clusto-kube}/bin
D=${1:-$(mktemp -d /tmp/clusto-kube.XXXXXX)}
mkdir -p "$D/certs"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
EP=$(free_port); PP=$(free_port); AP=$(free_port)
TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "$TOKEN,admin,admin-uid,\"system:masters\"" > "$D/tokens.csv"
openssl genrsa -out "$D/certs/sa.key" 2048 2>/dev/null
openssl rsa -in "$D/certs/sa.key" -pubout -out "$D/certs/sa.pub" 2>/dev/null

"$BIN/etcd" --name test --data-dir "$D/etcd" --unsafe-no-fsync --log-level error \
  --listen-client-urls "http://127.0.0.1:$EP" --advertise-client-urls "http://127.0.0.1:$EP" \
  --listen-peer-urls "http://127.0.0.1:$PP" --initial-advertise-peer-urls "http://127.0.0.1:$PP" \
  --initial-cluster "test=http://127.0.0.1:$PP" >"$D/etcd.log" 2>&1 &
echo $! > "$D/etcd.pid"

"$BIN/kube-apiserver" --etcd-servers "http://127.0.0.1:$EP" \
  --bind-address 127.0.0.1 --secure-port "$AP" --cert-dir "$D/certs" \
  --token-auth-file "$D/tokens.csv" --authorization-mode RBAC \
  --service-cluster-ip-range 10.0.0.0/24 --allow-privileged=true \
  --disable-admission-plugins ServiceAccount \
  --service-account-issuer "https://127.0.0.1:$AP/" \
  --service-account-key-file "$D/certs/sa.pub" \
  --service-account-signing-key-file "$D/certs/sa.key" >"$D/apiserver.log" 2>&1 &
echo $! > "$D/apiserver.pid"

for _ in $(seq 1 300); do
  if curl -sfk -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$AP/readyz" >/dev/null 2>&1; then
    cat > "$D/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: https://127.0.0.1:$AP
    certificate-authority: $D/certs/apiserver.crt
users:
- name: admin
  user:
    token: $TOKEN
contexts:
- name: test
  context: {cluster: test, user: admin, namespace: default}
current-context: test
KC
    echo "$D/kubeconfig"
    exit 0
  fi
  if ! kill -0 "$(cat "$D/apiserver.pid")" 2>/dev/null; then break; fi
  sleep 0.1
done
echo "kube-apiserver did not become ready; last lines of $D/apiserver.log:" >&2
tail -20 "$D/apiserver.log" >&2
"$(dirname "$0")/down.sh" "$D" --keep
exit 1
