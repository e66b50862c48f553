package nftables

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"
)

// errNoTable means the family's table does not exist.
var errNoTable = errors.New("table does not exist")

// errInterrupted means a dump was torn: a transaction committed while the kernel sent it in
// parts (NLM_F_DUMP_INTR), and a hash set's parts then miss or repeat elements, touched by the
// transaction or not (measured: 11 untouched elements of 100,000 missed while one service's
// endpoints changed every 20 ms).
var errInterrupted = errors.New("dump interrupted by a commit")

// tableReader is what reading a table back needs from a kernel: names, rule comments and set
// elements. It is used at start and by Reconcile (without the apply lock), never by Apply. Rules are read as (chain,
// comment) pairs only: the comment is the rule's hash.
type tableReader interface {
	// chains lists the table's chains; errNoTable when the table does not exist.
	chains(f *family) ([]string, error)
	// rules calls fn for each rule of the table, in order within each chain.
	rules(f *family, fn func(chain, comment string)) error
	// sets lists the table's named sets.
	sets(f *family) ([]string, error)
	// elements calls fn for each element of a set, with the chain of its verdict if any; a
	// missing set has none.
	elements(f *family, set string, fn func(e nftables.SetElement, chain string)) error
}

// readState reads one family's table into a kernelState; errNoTable when it is missing.
func readState(r tableReader, f *family) (*kernelState, error) {
	k := newKernelState()
	chains, err := r.chains(f)
	if err != nil {
		return nil, err
	}
	for _, c := range chains {
		k.chains[c] = []string{}
	}
	if err := r.rules(f, func(chain, comment string) {
		if _, ok := k.chains[chain]; ok {
			hash, id := parseComment(comment)
			k.chains[chain] = append(k.chains[chain], hash)
			if id != 0 {
				k.ids[chain] = id
			}
		}
	}); err != nil {
		return nil, fmt.Errorf("list rules: %w", err)
	}
	if err := readSets(r, f, k); err != nil {
		return nil, err
	}
	return k, readElements(r, f, k)
}

// readSets reads the set names, and the elements of the data path's sets.
func readSets(r tableReader, f *family, k *kernelState) error {
	sets, err := r.sets(f)
	if err != nil {
		return fmt.Errorf("list sets: %w", err)
	}
	defs, err := staticDataSets(f)
	if err != nil {
		return err
	}
	static := map[string]bool{}
	for _, s := range defs {
		static[s.Name] = true
	}
	for _, name := range sets {
		if strings.HasPrefix(name, "__") {
			continue // an anonymous set (__map0, __set0): part of its rule, not the table's
		}
		k.setNames[name] = true
		if _, _, ok := parseObjectName(name); ok {
			k.sets[name] = true
			continue
		}
		c, isClass := parseClassSet(name)
		if isClass {
			k.classes[c] = true
		}
		if !isClass && !static[name] {
			continue
		}
		if err := r.elements(f, name, func(e nftables.SetElement, _ string) {
			if de, ok := newDataElem(name, e.Key, e.Val, e.Comment); ok {
				k.data[de.id] = de.dataVal // else not of a shape we write: skipped, like readElements'
			}
		}); err != nil {
			return fmt.Errorf("elements of %s: %w", name, err)
		}
	}
	return nil
}

// readElements reads the table-wide sets' elements into k. Elements of a shape this package
// never writes are skipped: Reconcile then finds them unwanted, or they were never ours.
func readElements(r tableReader, f *family, k *kernelState) error {
	al := int(f.addrLen)
	read := func(set string, fn func(key []byte, chain string)) error {
		return r.elements(f, set, func(e nftables.SetElement, chain string) { fn(e.Key, chain) })
	}
	addr := func(b []byte) netip.Addr { a, _ := netip.AddrFromSlice(b); return a }
	var errs []error
	for i := range uint32(endpointBuckets) {
		errs = append(errs, r.elements(f, bucketOf(i), func(e nftables.SetElement, _ string) {
			if len(e.Key) != 4 {
				return
			}
			key := binary.BigEndian.Uint32(e.Key)
			if e.IntervalEnd {
				key-- // an end element holds end+1, which may be the next set's first slot
			}
			id := key >> slotBits
			k.ep[id] = append(k.ep[id], e)
		}))
	}
	errs = append(errs,
		read(setVIPs, func(key []byte, chain string) {
			if len(key) == al+8 {
				k.vips[vipKey{addr(key[:al]), key[al], binary.BigEndian.Uint16(key[al+4:])}] = chain
			}
		}),
		read(setNodePorts, func(key []byte, chain string) {
			if len(key) == 8 {
				k.nodeports[npKey{key[0], binary.BigEndian.Uint16(key[4:])}] = chain
			}
		}),
		read(setClusterIPs, func(key []byte, _ string) {
			if len(key) == al {
				k.clusterIPs[addr(key)] = true
			}
		}),
		read(setNodePortAddrs, func(key []byte, _ string) {
			if len(key) == al {
				k.npAddrs[addr(key)] = true
			}
		}),
		read(setHairpin, func(key []byte, _ string) {
			if len(key) == 2*al {
				k.hairpin[addr(key[:al])] = true
			}
		}),
	)
	return errors.Join(errs...)
}
