package baremetal_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ganglion-proxy/ganglion/controlplane/auth"
	"github.com/ganglion-proxy/ganglion/controlplane/baremetal"
	"github.com/ganglion-proxy/ganglion/controlplane/brain"
	"github.com/ganglion-proxy/ganglion/controlplane/stream"
	"github.com/ganglion-proxy/ganglion/internal/testenv"
	"github.com/ganglion-proxy/ganglion/internal/testwait"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
	"github.com/ganglion-proxy/ganglion/store"
)

// startEtcd runs a single-member etcd (Debian's etcd-server) in a directory of the test and
// returns its client URL and the process, killed when the test ends.
func startEtcd(t *testing.T) (string, *exec.Cmd) {
	t.Helper()
	bin := testenv.RequireCommand(t, "etcd")
	client, peer := freeURL(t), freeURL(t)
	cmd := exec.Command(bin, "--name", "outage", "--data-dir", filepath.Join(t.TempDir(), "data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "outage="+peer,
		"--log-level", "error")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return client, cmd
}

// TestNodeLeasesComeBackAfterAStoreOutageLongerThanTheirTTL pauses the store (SIGSTOP of its
// etcd) for longer than the node lease TTL while two agents' streams are open, as the probe of
// issue 12 did for real: the brain must show the leases lost while the store is away, and once it
// is back re-establish them and use the nodes' endpoints again, without any agent restarting.
// Before, the leases were never renewed again and every node went down for good.
func TestNodeLeasesComeBackAfterAStoreOutageLongerThanTheirTTL(t *testing.T) {
	endpoint, etcd := startEtcd(t)
	st, err := store.Open(context.Background(), store.Config{Endpoints: []string{endpoint}, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const ttl = 2 * time.Second
	mem := &baremetal.Membership{Store: st, LeaseTTL: ttl, Log: quiet}
	ctx, addr := startBareMetalBrain(t, st, mem)
	applyTwoNodeService(t, ctx, st, "")
	a1 := startAgent(t, "n1", addr)
	a2 := startAgent(t, "n2", addr)
	both := func(a *testAgent) bool { return slices.Equal(a.backends(), []string{"127.0.0.1", "127.0.0.2"}) }
	testwait.Eventually(t, "both nodes forward to both backends", func() bool { return both(a1) && both(a2) })
	leaseIs := func(node string, state v1.LeaseState) bool { return mem.NodeLeases()[node].GetState() == state }
	testwait.Eventually(t, "both leases held", func() bool {
		return leaseIs("n1", v1.LeaseState_LEASE_STATE_HELD) && leaseIs("n2", v1.LeaseState_LEASE_STATE_HELD)
	})

	if err := etcd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	// The client gives a lease up a TTL after its last renewal was answered, or, when the store
	// stopped before the first one was (as here, right after the grants), after its first
	// keep-alive's timeout: etcd's dial timeout plus a second, 11s.
	testwait.Eventually(t, "both leases shown lost while the store is away", func() bool {
		return leaseIs("n1", v1.LeaseState_LEASE_STATE_LOST) && leaseIs("n2", v1.LeaseState_LEASE_STATE_LOST)
	})
	t.Logf("leases shown lost %v after the store stopped", time.Since(stopped).Round(time.Millisecond))
	// Away for longer than the TTL whatever the machine's speed: etcd expires the leases when it
	// is back.
	time.Sleep(max(0, 2*ttl-time.Since(stopped)))
	if err := etcd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	held := func(node string) bool {
		l := mem.NodeLeases()[node]
		return l.GetState() == v1.LeaseState_LEASE_STATE_HELD && l.Losses > 0
	}
	testwait.Eventually(t, "both leases held again", func() bool { return held("n1") && held("n2") })
	testwait.Eventually(t, "both nodes forward to both backends again", func() bool { return both(a1) && both(a2) })
	t.Logf("store away %v (lease TTL %v); leases and endpoints back %v after it returned",
		resumed.Sub(stopped).Round(time.Millisecond), ttl, time.Since(resumed).Round(time.Millisecond))
	// The registrations are under live leases: they will not expire while the streams last.
	for _, n := range []string{"n1", "n2"} {
		assertRegisteredUnderLiveLease(t, st, n)
	}
}

// startBareMetalBrain serves an insecure brain on loopback whose source is st and whose stream
// hooks are mem's, with the admin service; it returns a context that ends with the test and the
// brain's address.
func startBareMetalBrain(t *testing.T, st *store.Store, mem *baremetal.Membership) (context.Context, string) {
	t.Helper()
	b, err := brain.New(brain.Options{Log: quiet, Stream: stream.Options{Hooks: mem.Hooks()}, Auth: auth.Config{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	v1.RegisterAdminServiceServer(b.GRPC(), &baremetal.Admin{Store: st, Settings: baremetal.DefaultSettings()})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go (&baremetal.Source{Store: st, Log: quiet, Grace: time.Second}).Run(ctx, b.Hub, b.MarkSynced)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go b.Serve(lis)
	t.Cleanup(b.Stop)
	return ctx, lis.Addr().String()
}

// applyTwoNodeService stores nodes n1 and n2 and a service web with one loopback backend on
// each, serving 200 until the test changes the first one's code (returned); extra adds spec
// lines such as a health check.
func applyTwoNodeService(t *testing.T, ctx context.Context, st *store.Store, extra string) *atomic.Int32 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	first := backendServer(t, fmt.Sprintf("127.0.0.1:%d", port))
	backendServer(t, fmt.Sprintf("127.0.0.2:%d", port))
	objs, err := baremetal.Decode("test", []byte(fmt.Sprintf(`apiVersion: ganglion-proxy.io/v1
kind: Node
metadata: {name: n1}
---
apiVersion: ganglion-proxy.io/v1
kind: Node
metadata: {name: n2}
---
apiVersion: ganglion-proxy.io/v1
kind: Service
metadata: {name: web}
spec:
  vips: [10.0.0.10]
  ports: [{port: 80, targetPort: %d}]
%s  backends: [{address: 127.0.0.1, node: n1}, {address: 127.0.0.2, node: n2}]
`, port, extra)))
	if err != nil {
		t.Fatal(err)
	}
	// The backends are on loopback, where the test can serve them: allowed as an operator would.
	set := baremetal.DefaultSettings()
	set.AllowedAddressRanges = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	if _, err := baremetal.Apply(ctx, st, objs, set, false); err != nil {
		t.Fatal(err)
	}
	return first
}

// assertRegisteredUnderLiveLease checks that node's registration is stored under a lease etcd
// still has.
func assertRegisteredUnderLiveLease(t *testing.T, st *store.Store, node string) {
	t.Helper()
	ctx := context.Background()
	resp, err := st.Client().Get(ctx, "/ganglion/leases/"+node)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("%s's registration: %v, %v", node, resp, err)
	}
	ttl, err := st.Client().TimeToLive(ctx, clientv3.LeaseID(resp.Kvs[0].Lease))
	if err != nil || ttl.TTL <= 0 {
		t.Errorf("%s registered under lease %x, which etcd does not hold (%v, %v)", node, resp.Kvs[0].Lease, ttl, err)
	}
}
