#!/usr/bin/env bash
# Prepares what e2e/kube needs and caches it, so that only the first run pays:
#  - etcd from Debian's etcd-server package, installed when missing;
#  - kube-apiserver and kubectl built from the module pinned in e2e/kube/apiserver (about 10
#    minutes cold on 2 cores, nothing when cached) into $GANGLION_KUBE_CACHE/<hash of go.mod+go.sum>.
# The test finds the binaries at the same place (see bins_test.go); it never builds them itself,
# so a test timeout never has to cover a cold build.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${GANGLION_KUBE_CACHE:-/var/cache/ganglion-kube}

if ! command -v etcd >/dev/null; then
	echo "e2e-kube: installing etcd-server"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y --no-install-recommends etcd-server >/dev/null ||
		{ apt-get update >/dev/null && apt-get install -y --no-install-recommends etcd-server >/dev/null; }
fi

key=$(cat "$here/apiserver/go.mod" "$here/apiserver/go.sum" | sha256sum | cut -c1-16)
dir=$cache/$key
if [[ -x $dir/kube-apiserver && -x $dir/kubectl ]]; then
	echo "e2e-kube: kube-apiserver and kubectl cached in $dir"
	exit 0
fi
mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "e2e-kube: building kube-apiserver and kubectl into $dir (about 10 minutes the first time)"
start=$SECONDS
(cd "$here/apiserver" && CGO_ENABLED=0 nice -n 10 "${GO:-go}" build -trimpath -o "$tmp/" \
	k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl)
# A rename, so that a build interrupted half-way never looks cached.
mv -T "$tmp" "$dir"
trap - EXIT
echo "e2e-kube: built in $((SECONDS - start))s"
