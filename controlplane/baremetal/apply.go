package baremetal

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"

	"github.com/ganglion-proxy/ganglion/store"
)

// Settings are the cluster-wide choices validation and allocation follow.
type Settings struct {
	// ServiceCIDR is where VIPs are allocated from for services that give none.
	ServiceCIDR netip.Prefix
	// NodePortMin and NodePortMax bound node ports (default 30000-32767).
	NodePortMin, NodePortMax int32
	// AllowedAddressRanges are where services and backends may use addresses that are otherwise
	// refused: loopback, unspecified, multicast, link-local, and, for services, nodes' own
	// addresses (--allow-address-range). None by default.
	AllowedAddressRanges []netip.Prefix
}

// DefaultSettings are Kubernetes' defaults.
func DefaultSettings() Settings {
	return Settings{ServiceCIDR: netip.MustParsePrefix("10.96.0.0/16"), NodePortMin: 30000, NodePortMax: 32767}
}

// Applied says what an apply did with each object.
type Applied struct {
	// Stored were written (in a dry run: would be).
	Stored []store.Key
	// Unchanged are stored exactly so already: applying a file twice writes nothing the second time.
	Unchanged []store.Key
}

// Apply validates objects against each other and against what the store holds, allocates the VIPs
// and node ports they leave out, and stores them all in one transaction, or none of them. With
// dryRun nothing is stored. When another commit gets in first, it starts over from a fresh read,
// allocations included.
func Apply(ctx context.Context, st *store.Store, objs []*Object, set Settings, dryRun bool) (Applied, error) {
	for _, o := range objs {
		if err := validate(o, set); err != nil {
			return Applied{}, err
		}
	}
	var res Applied
	err := retryConflicts(ctx, func() error {
		var err error
		res, err = applyOnce(ctx, st, cloneForAttempt(objs), set, dryRun)
		return err
	})
	return res, err
}

// applyOnce is one attempt of Apply against one read of the store; it fails with
// store.ErrConflict when the store changed since that read.
func applyOnce(ctx context.Context, st *store.Store, objs []*Object, set Settings, dryRun bool) (Applied, error) {
	snap, change, err := plan(ctx, st, objs, set)
	if err != nil {
		return Applied{}, err
	}
	res := Applied{Unchanged: change.unchanged}
	for _, it := range change.Puts {
		res.Stored = append(res.Stored, it.Key)
	}
	if dryRun || len(change.Puts) == 0 {
		return res, nil
	}
	if _, err := st.CommitChange(ctx, snap.Generation, change.Change); err != nil {
		return Applied{}, err
	}
	return res, nil
}

// planned is the change an apply would commit, and the objects it leaves out as already stored.
type planned struct {
	store.Change
	unchanged []store.Key
}

// plan checks objs against one read of the store, allocates what they leave out, and returns
// that read and the change that would store them: what Apply commits and Diff computes with.
func plan(ctx context.Context, st *store.Store, objs []*Object, set Settings) (*store.Snapshot, planned, error) {
	var change planned
	snap, err := st.Snapshot(ctx)
	if err != nil {
		return nil, change, err
	}
	stored, unreadable := decodeSnapshot(snap)
	for _, k := range unreadable {
		st.SkipUnreadable(k.Key, k.Err)
	}
	leased, err := st.Leases(ctx)
	if err != nil {
		return nil, change, err
	}
	w := newWorld(stored, objs, decodeLeases(leased))
	if err := w.check(set); err != nil {
		return nil, change, err
	}
	held := make(map[store.Key][]byte, len(snap.Items))
	for _, it := range snap.Items {
		held[it.Key] = it.Value
	}
	for _, o := range objs {
		b, err := o.Encode()
		if err != nil {
			return nil, change, fmt.Errorf("%s: encode: %w", o.Source, err)
		}
		if old, ok := held[o.Key]; ok && bytes.Equal(old, b) {
			change.unchanged = append(change.unchanged, o.Key)
			continue
		}
		change.Puts = append(change.Puts, store.Item{Key: o.Key, Value: b})
		if o.Service != nil && w.stored[o.Key] == nil {
			// A new service starts healthy, whatever an earlier one of its name left.
			change.Prune = append(change.Prune, servicePrefix(o.Key.Namespace, o.Key.Name))
		}
	}
	return snap, change, nil
}

// Delete removes the named objects, all or none. Naming one that does not exist is an error.
func Delete(ctx context.Context, st *store.Store, keys []store.Key) error {
	return retryConflicts(ctx, func() error { return deleteOnce(ctx, st, keys) })
}

func deleteOnce(ctx context.Context, st *store.Store, keys []store.Key) error {
	snap, err := st.Snapshot(ctx)
	if err != nil {
		return err
	}
	have := map[store.Key]bool{}
	for _, it := range snap.Items {
		have[it.Key] = true
	}
	for _, k := range keys {
		if !have[k] {
			return fmt.Errorf("%s %s/%s: %w", k.Kind, k.Namespace, k.Name, ErrNotFound)
		}
	}
	change := store.Change{Deletes: keys}
	for _, k := range keys {
		if k.Kind == KindService {
			change.Prune = append(change.Prune, servicePrefix(k.Namespace, k.Name)) // its probe results go with it
		}
	}
	_, err = st.CommitChange(ctx, snap.Generation, change)
	return err
}

// ErrNotFound is returned for an object the store does not hold.
var ErrNotFound = errors.New("not found")

func validate(o *Object, set Settings) error {
	switch {
	case o.Service != nil:
		return validateService(o, set)
	case o.Slice != nil:
		return validateSlice(o, set)
	default:
		return validateNode(o)
	}
}

// decodeLeases reads registered nodes' lease values; an unreadable one still registers its node.
func decodeLeases(leased map[string][]byte) map[string]leaseInfo {
	out := make(map[string]leaseInfo, len(leased))
	for n, b := range leased {
		var l leaseInfo
		_ = json.Unmarshal(b, &l)
		out[n] = l
	}
	return out
}

// unreadableItem is a stored object that cannot be decoded, and why.
type unreadableItem struct {
	Key store.Key
	Err error
}

// decodeSnapshot decodes every stored object it can and lists the others: one corrupt object
// must not block applies of the rest. A skipped object claims nothing (its addresses and ports
// cannot be known; the brain does not serve it either), and applying a good one over it, or
// deleting it, is the way out.
func decodeSnapshot(snap *store.Snapshot) ([]*Object, []unreadableItem) {
	out := make([]*Object, 0, len(snap.Items))
	var bad []unreadableItem
	for _, it := range snap.Items {
		o, err := DecodeStored(it)
		if err != nil {
			bad = append(bad, unreadableItem{Key: it.Key, Err: err})
			continue
		}
		out = append(out, o)
	}
	return out, bad
}
