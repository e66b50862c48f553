package ipvs

import (
	"errors"
	"net/netip"
	"sync"

	mobyipvs "github.com/moby/ipvs"
	"golang.org/x/sys/unix"
)

// fakeIPVS is an in-memory IPVS that counts operations, so tests can assert what a change costs.
type fakeIPVS struct {
	mu       sync.Mutex
	svcs     map[vsKey]*fakeVS
	ops      int
	dumps    int
	failDump bool
	// failDel fails every DelService while set.
	failDel error
	// beforeList, when set, runs at the start of GetServices, outside the lock (tests block on it).
	beforeList func()
}

type fakeVS struct {
	spec  vsSpec
	reals map[netip.AddrPort]*mobyipvs.Destination
}

var (
	_ ipvsHandle  = (*fakeIPVS)(nil)
	_ addrDevice  = (*fakeDevice)(nil)
	_ flowCleaner = (*fakeConntrack)(nil)
)

func newFakeIPVS() *fakeIPVS { return &fakeIPVS{svcs: map[vsKey]*fakeVS{}} }

func key(s *mobyipvs.Service) vsKey { k, _, _ := fromService(s); return k }

func (f *fakeIPVS) NewService(s *mobyipvs.Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops++
	k, spec, _ := fromService(s)
	if _, ok := f.svcs[k]; ok {
		return unix.EEXIST
	}
	f.svcs[k] = &fakeVS{spec: spec, reals: map[netip.AddrPort]*mobyipvs.Destination{}}
	return nil
}

func (f *fakeIPVS) UpdateService(s *mobyipvs.Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops++
	k, spec, _ := fromService(s)
	vs, ok := f.svcs[k]
	if !ok {
		return unix.ESRCH
	}
	vs.spec = spec
	return nil
}

func (f *fakeIPVS) DelService(s *mobyipvs.Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops++
	if f.failDel != nil {
		return f.failDel
	}
	if _, ok := f.svcs[key(s)]; !ok {
		return unix.ESRCH
	}
	delete(f.svcs, key(s))
	return nil
}

func (f *fakeIPVS) dest(s *mobyipvs.Service, d *mobyipvs.Destination, create bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops++
	vs, ok := f.svcs[key(s)]
	if !ok {
		return unix.ESRCH
	}
	rs, _ := fromDestination(d)
	_, exists := vs.reals[rs]
	switch {
	case create && exists:
		return unix.EEXIST
	case !create && !exists:
		return unix.ENOENT
	}
	cp := *d
	if old := vs.reals[rs]; old != nil {
		cp.ActiveConnections, cp.InactiveConnections = old.ActiveConnections, old.InactiveConnections
	}
	vs.reals[rs] = &cp
	return nil
}

func (f *fakeIPVS) NewDestination(s *mobyipvs.Service, d *mobyipvs.Destination) error {
	return f.dest(s, d, true)
}

func (f *fakeIPVS) UpdateDestination(s *mobyipvs.Service, d *mobyipvs.Destination) error {
	return f.dest(s, d, false)
}

func (f *fakeIPVS) DelDestination(s *mobyipvs.Service, d *mobyipvs.Destination) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops++
	vs, ok := f.svcs[key(s)]
	if !ok {
		return unix.ESRCH
	}
	rs, _ := fromDestination(d)
	if _, ok := vs.reals[rs]; !ok {
		return unix.ENOENT
	}
	delete(vs.reals, rs)
	return nil
}

func (f *fakeIPVS) GetServices() ([]*mobyipvs.Service, error) {
	f.mu.Lock()
	hook := f.beforeList
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dumps++
	if f.failDump {
		return nil, errors.New("dump interrupted")
	}
	var out []*mobyipvs.Service
	for k, vs := range f.svcs {
		out = append(out, toService(k, vs.spec))
	}
	return out, nil
}

func (f *fakeIPVS) GetDestinations(s *mobyipvs.Service) ([]*mobyipvs.Destination, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dumps++
	if f.failDump {
		return nil, errors.New("dump interrupted")
	}
	vs, ok := f.svcs[key(s)]
	if !ok {
		return nil, unix.ESRCH
	}
	var out []*mobyipvs.Destination
	for _, d := range vs.reals {
		cp := *d
		out = append(out, &cp)
	}
	return out, nil
}

func (f *fakeIPVS) Close() {}

// reals returns a virtual server's real servers with their weights; nil when it does not exist.
func (f *fakeIPVS) reals(k vsKey) map[netip.AddrPort]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	vs, ok := f.svcs[k]
	if !ok {
		return nil
	}
	out := map[netip.AddrPort]int{}
	for rs, d := range vs.reals {
		out[rs] = d.Weight
	}
	return out
}

func (f *fakeIPVS) setConns(k vsKey, rs netip.AddrPort, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.svcs[k].reals[rs].ActiveConnections = n
}

func (f *fakeIPVS) opCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ops
}

type fakeDevice struct{ addrs map[netip.Addr]bool }

func (f *fakeDevice) Ensure() error { return nil }
func (f *fakeDevice) List() ([]netip.Addr, error) {
	var out []netip.Addr
	for a := range f.addrs {
		out = append(out, a)
	}
	return out, nil
}
func (f *fakeDevice) Add(a netip.Addr) error { f.addrs[a] = true; return nil }
func (f *fakeDevice) Del(a netip.Addr) error { delete(f.addrs, a); return nil }

type fakeConntrack struct{ deleted []string }

func (f *fakeConntrack) DeleteUDP(vs vsKey, rs netip.AddrPort) error {
	f.deleted = append(f.deleted, vs.String()+"->"+rs.String())
	return nil
}

// fakeKernel is the kernel that survives a restart of the agent in tests.
type fakeKernel struct {
	ipvs *fakeIPVS
	nft  *fakeNFT
	dev  *fakeDevice
	ct   *fakeConntrack
}

func newFakeKernel() *fakeKernel {
	return &fakeKernel{
		ipvs: newFakeIPVS(),
		nft:  newFakeNFT(),
		dev:  &fakeDevice{addrs: map[netip.Addr]bool{}},
		ct:   &fakeConntrack{},
	}
}
