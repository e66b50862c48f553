package baremetal

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/ganglion-proxy/ganglion/store"
)

// clients is how many admins apply at once: as many as made 9 applies in 10 fail.
const clients = 10

// applyAtOnce applies each document from its own client, all released together so that their
// commits collide, and returns each one's error.
func applyAtOnce(st *store.Store, docs []string) []error {
	errs := make([]error, len(docs))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, doc := range docs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = applyWith(st, DefaultSettings(), false, doc)
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

// TestConcurrentAppliesOfDisjointServicesAllSucceed: services that ask for no VIP and no node
// port never clash, however their applies interleave; a retry after a conflict allocates afresh
// instead of refusing what an earlier attempt picked and another apply took meanwhile.
func TestConcurrentAppliesOfDisjointServicesAllSucceed(t *testing.T) {
	st := openStore(t)
	for round := range 3 {
		var docs []string
		for i := range clients {
			name := fmt.Sprintf("svc-%d-%d", round, i)
			docs = append(docs, strings.Replace(native("  type: LoadBalancer\n  externalTrafficPolicy: Local\n  ports: [{port: 80}]\n"), "name: web", "name: "+name, 1))
		}
		for i, err := range applyAtOnce(st, docs) {
			if err != nil {
				t.Errorf("round %d client %d: %v", round, i, err)
			}
		}
	}
	vips, ports := map[string]string{}, map[int32]string{}
	for round := range 3 {
		for i := range clients {
			name := fmt.Sprintf("svc-%d-%d", round, i)
			sp := storedService(t, st, name).Spec
			if len(sp.VIPs) != 1 || sp.Ports[0].NodePort == 0 || sp.HealthCheckNodePort == 0 {
				t.Fatalf("%s: not allocated: %+v", name, sp)
			}
			if other, dup := vips[sp.VIPs[0]]; dup {
				t.Errorf("%s and %s share VIP %s", name, other, sp.VIPs[0])
			}
			vips[sp.VIPs[0]] = name
			for _, p := range []int32{sp.Ports[0].NodePort, sp.HealthCheckNodePort} {
				if other, dup := ports[p]; dup {
					t.Errorf("%s and %s share node port %d", name, other, p)
				}
				ports[p] = name
			}
		}
	}
}

// TestConcurrentlyRequestedAddressGoesToOneApply: an address the user asked for is theirs only
// if nobody took it first; the applies that lose the race fail, naming the address and who has
// it, rather than taking another one.
func TestConcurrentlyRequestedAddressGoesToOneApply(t *testing.T) {
	st := openStore(t)
	var docs []string
	for i := range clients {
		docs = append(docs, strings.Replace(native("  vips: [10.0.0.50]\n  ports: [{port: 80}]\n"), "name: web", fmt.Sprintf("name: want-%d", i), 1))
	}
	won := -1
	errs := applyAtOnce(st, docs)
	for i, err := range errs {
		if err == nil {
			if won >= 0 {
				t.Fatalf("want-%d and want-%d both got 10.0.0.50:80", won, i)
			}
			won = i
		}
	}
	if won < 0 {
		t.Fatalf("no apply got the address: %v", errs)
	}
	for i, err := range errs {
		if i == won {
			continue
		}
		want := fmt.Sprintf("spec.ports[0]: 10.0.0.50:80/TCP is already taken by Service default/want-%d", won)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("want-%d: %v\nwant an invalid-document error containing %q", i, err, want)
		}
	}
}
