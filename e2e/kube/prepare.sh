#!/usr/bin/env bash
# Prepares what e2e/kube needs and caches it, so that only the first run pays:
#  - etcd from Debian's etcd-server package, installed when missing;
#  - kube-apiserver and kubectl built from the module pinned in e2e/kube/apiserver (about 10
#    minutes cold on 2 cores, nothing when cached) into $GANGLION_KUBE_CACHE/<hash of go.mod+go.sum>.
#  - with the argument kube-proxy (make bench-peer): also upstream kube-proxy, from the same pinned
#    module, so at the same Kubernetes version as kube-apiserver, into the same directory.
# The test finds the binaries at the same place (see e2e/kubelab); it never builds them itself,
# so a test timeout never has to cover a cold build.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${GANGLION_KUBE_CACHE:-/var/cache/ganglion-kube}
want_proxy=
for arg in "$@"; do
	case $arg in
	kube-proxy) want_proxy=1 ;;
	*) echo "usage: $0 [kube-proxy]" >&2; exit 2 ;;
	esac
done

if ! command -v etcd >/dev/null; then
	echo "e2e-kube: installing etcd-server"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y --no-install-recommends etcd-server >/dev/null ||
		{ apt-get update >/dev/null && apt-get install -y --no-install-recommends etcd-server >/dev/null; }
fi

key=$(cat "$here/apiserver/go.mod" "$here/apiserver/go.sum" | sha256sum | cut -c1-16)
dir=$cache/$key
mkdir -p "$cache"

if [[ -x $dir/kube-apiserver && -x $dir/kubectl ]]; then
	echo "e2e-kube: kube-apiserver and kubectl cached in $dir"
else
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
fi

[[ -n $want_proxy ]] || exit 0
if [[ -x $dir/kube-proxy ]]; then
	echo "e2e-kube: kube-proxy cached in $dir"
	exit 0
fi
tmp=$(mktemp -d "$cache/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "e2e-kube: building kube-proxy into $dir (about 5-10 minutes the first time)"
start=$SECONDS
# The pinned module's go.sum covers kube-apiserver and kubectl only. A copy of it records the
# checksums kube-proxy's packages add (checked against the Go checksum database); the versions are
# the ones the pinned go.mod selects, so the committed module stays the single pin.
cp "$here/apiserver/go.mod" "$here/apiserver/go.sum" "$tmp/"
(cd "$tmp" && CGO_ENABLED=0 nice -n 10 "${GO:-go}" build -mod=mod -trimpath -o "$tmp/" \
	k8s.io/kubernetes/cmd/kube-proxy)
if ! diff <(grep -v '^$' "$here/apiserver/go.mod") <(grep -v '^$' "$tmp/go.mod") >/dev/null; then
	echo "e2e-kube: building kube-proxy changed the pinned requirements:" >&2
	diff "$here/apiserver/go.mod" "$tmp/go.mod" >&2 || true
	exit 1
fi
# The directory exists already: a rename of the finished file, never a half-written binary.
mv -T "$tmp/kube-proxy" "$dir/kube-proxy"
echo "e2e-kube: kube-proxy built in $((SECONDS - start))s"
