package ipvs

import (
	"context"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/ganglion-proxy/ganglion/e2e/vm"
	"github.com/ganglion-proxy/ganglion/internal/testenv"
)

// TestVMNeedsNoBinary runs the whole backend (sysctls, dummy device, nftables, IPVS, bulk
// netlink) with PATH set to an empty directory: New, Apply, Reconcile after drift, and the Prune
// of the cleanup. The test reads the kernel back and makes the drift with ipvsadm and nft by
// absolute path; the dataplane itself runs no program.
func TestVMNeedsNoBinary(t *testing.T) {
	vm.RequireInside(t)
	testenv.RequireRoot(t)
	ipvsadm, nft := testenv.RequireCommand(t, "ipvsadm"), testenv.RequireCommand(t, "nft")
	tp := setupTopology(t)
	t.Setenv("PATH", t.TempDir())
	if _, err := exec.LookPath("nft"); err == nil {
		t.Fatal("nft still on PATH")
	}
	d := newDataplane(t, tp, true)
	s := svc{name: "nopath", clusterIP: "10.96.0.30", cluster: []string{"a"}, lb: "203.0.113.30", ranges: []string{"10.0.0.0/8"}}
	applyAll(t, d, tp.port(s))
	client := tp.pods["client"]
	if b, _, err := client.request("tcp", "10.96.0.30:80"); err != nil || b != "a" {
		t.Fatalf("answered by %q (err %v), want a", b, err)
	}
	for _, c := range [][]string{{nft, "delete", "table", "inet", "ganglion-ipvs"}, {ipvsadm, "-D", "-t", "10.96.0.30:80"}} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", c, err, out)
		}
	}
	if err := d.Reconcile(context.Background()); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if b, _, err := client.request("tcp", "10.96.0.30:80"); err != nil || b != "a" {
		t.Errorf("after Reconcile: answered by %q (err %v), want a", b, err)
	}
	out, err := exec.Command(nft, "list", "table", "inet", "ganglion-ipvs").CombinedOutput()
	// The guest has no /etc/protocols: nft writes tcp as 6.
	if err != nil || !feRe.MatchString(string(out)) || !strings.Contains(string(out), "ip saddr 10.0.0.0/8 goto fwd-masq") {
		t.Errorf("table after Reconcile (err %v):\n%s", err, out)
	}
}

var feRe = regexp.MustCompile(`10\.96\.0\.30 \. (tcp|6) \. 80 : goto fwd-clusterip`)
