package baremetal

import (
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

// Apply validates objects against each other and against what the store holds, allocates the VIPs
// and node ports they leave out, and stores them all in one transaction, or none of them. With
// dryRun nothing is stored. It returns the keys stored. When another commit gets in first, it
// starts over from a fresh read, allocations included.
func Apply(ctx context.Context, st *store.Store, objs []*Object, set Settings, dryRun bool) ([]store.Key, error) {
	for _, o := range objs {
		if err := validate(o, set); err != nil {
			return nil, err
		}
	}
	var keys []store.Key
	err := retryConflicts(ctx, func() error {
		var err error
		keys, err = applyOnce(ctx, st, cloneForAttempt(objs), set, dryRun)
		return err
	})
	if err != nil {
		return nil, err
	}
	return keys, nil
}

// applyOnce is one attempt of Apply against one read of the store; it fails with
// store.ErrConflict when the store changed since that read.
func applyOnce(ctx context.Context, st *store.Store, objs []*Object, set Settings, dryRun bool) ([]store.Key, error) {
	snap, change, err := plan(ctx, st, objs, set)
	if err != nil {
		return nil, err
	}
	keys := make([]store.Key, 0, len(change.Puts))
	for _, it := range change.Puts {
		keys = append(keys, it.Key)
	}
	if dryRun {
		return keys, nil
	}
	if _, err := st.CommitChange(ctx, snap.Generation, change); err != nil {
		return nil, err
	}
	return keys, nil
}

// plan checks objs against one read of the store, allocates what they leave out, and returns
// that read and the change that would store them: what Apply commits and Diff computes with.
func plan(ctx context.Context, st *store.Store, objs []*Object, set Settings) (*store.Snapshot, store.Change, error) {
	var change store.Change
	snap, err := st.Snapshot(ctx)
	if err != nil {
		return nil, change, err
	}
	stored, err := decodeSnapshot(snap)
	if err != nil {
		return nil, change, err
	}
	leased, err := st.Leases(ctx)
	if err != nil {
		return nil, change, err
	}
	w := newWorld(stored, objs, decodeLeases(leased))
	if err := w.check(set); err != nil {
		return nil, change, err
	}
	for _, o := range objs {
		b, err := o.Encode()
		if err != nil {
			return nil, change, fmt.Errorf("%s: encode: %w", o.Source, err)
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

func decodeSnapshot(snap *store.Snapshot) ([]*Object, error) {
	out := make([]*Object, 0, len(snap.Items))
	for _, it := range snap.Items {
		o, err := DecodeStored(it)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, nil
}
