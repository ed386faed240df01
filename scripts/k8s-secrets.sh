#!/usr/bin/env bash
# Create bandvote's Kubernetes Secrets with generated passwords (idempotent:
# an existing Secret is left alone). Nothing secret is ever in the repository.
#   bandvote-mongo:   root-username, root-password, consumer-password, web-password,
#                     consumer-url (readWrite on bandvote), web-url (read only)
#   bandvote-redis:   consumer/web/grafana/intake passwords and URLs (ACL users of k8s/base/redis/users.acl)
#   bandvote-grafana: admin-user, admin-password
#   bandvote-contest: secret (voter tokens)
# Usage: scripts/k8s-secrets.sh [namespace]   (default bandvote; needs kubectl and openssl)
set -euo pipefail
NS=${1:-bandvote}
pw() { openssl rand -hex 24; }   # hex: safe inside URLs
exists() { kubectl -n "$NS" get secret "$1" >/dev/null 2>&1; }
create() { # name key=value...
  local name=$1; shift
  if exists "$name"; then echo "secret/$name exists: kept"; return; fi
  local args=()
  for kv in "$@"; do args+=(--from-literal="$kv"); done
  kubectl -n "$NS" create secret generic "$name" "${args[@]}"
}
kubectl get namespace "$NS" >/dev/null 2>&1 || kubectl create namespace "$NS"

ROOT_PW=$(pw) MC=$(pw) MW=$(pw)
create bandvote-mongo root-username=bandvote root-password="$ROOT_PW" \
  consumer-password="$MC" web-password="$MW" \
  consumer-url="mongodb://consumer:$MC@mongo:27017/bandvote?authSource=bandvote" \
  web-url="mongodb://web:$MW@mongo:27017/bandvote?authSource=bandvote"

RC=$(pw) RW=$(pw) RG=$(pw) RI=$(pw)
create bandvote-redis consumer-password="$RC" web-password="$RW" grafana-password="$RG" intake-password="$RI" \
  consumer-url="redis://consumer:$RC@redis:6379/" web-url="redis://web:$RW@redis:6379/" \
  intake-url="redis://intake:$RI@redis:6379/"

create bandvote-grafana admin-user=admin admin-password="$(pw)"

# Signs and verifies contests' voter tokens (intakes verify, `contest tokens` signs).
create bandvote-contest secret="$(openssl rand -hex 32)"
