package store

import (
	"context"
	"fmt"
	"strings"
)

// checkRaw refuses a raw path or prefix that reaches into the objects space or the commit
// generation: those change only through commits. A prefix of them ("", "o", "meta") would
// reach in as well.
func checkRaw(path string) error {
	for _, owned := range []string{objectsSpace, "meta/"} {
		if strings.HasPrefix(path, owned) || strings.HasPrefix(owned, path) {
			return fmt.Errorf("store: %q is not writable raw", path)
		}
	}
	return nil
}

// PutRaw writes a value outside the objects space (probe results, leases), where writes are not
// versioned against commits.
func (s *Store) PutRaw(ctx context.Context, path string, value []byte) error {
	if err := checkRaw(path); err != nil {
		return err
	}
	if _, err := s.cli.Put(ctx, s.prefix+path, string(value)); err != nil {
		return fmt.Errorf("store: put %s: %w", path, err)
	}
	return nil
}

// DeleteRaw removes a value outside the objects space.
func (s *Store) DeleteRaw(ctx context.Context, path string) error {
	if err := checkRaw(path); err != nil {
		return err
	}
	if _, err := s.cli.Delete(ctx, s.prefix+path); err != nil {
		return fmt.Errorf("store: delete %s: %w", path, err)
	}
	s.deleted()
	return nil
}
