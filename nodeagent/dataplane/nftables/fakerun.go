package nftables

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Run changes the fake from outside, as an administrator's nft command would, for tests of drift
// repair. It understands a few of nft's commands, in nft's syntax, and applies them with the
// kernel's refusals:
//
//	delete table ip ganglion
//	flush chain ip ganglion <chain>
//	delete chain ip ganglion <chain>
//	delete element ip ganglion <set> { <key> }
//	add element ip ganglion <set> { <key> [: goto <chain>] }
//	add table ip <other>     (another owner's table: the fake keeps no other table, but
//	delete table ip <other>   the transaction moves the ruleset generation, as the kernel's does)
//
// Keys are written as Dump writes them, fields joined by " . ".
func (k *Fake) Run(cmd string) error {
	verb, rest, _ := strings.Cut(strings.TrimSpace(cmd), " ")
	obj, rest, _ := strings.Cut(rest, " ")
	fields := strings.Fields(rest)
	if obj == "table" && (verb == "add" || verb == "delete") && len(fields) == 2 && fields[1] != TableName {
		k.mu.Lock()
		defer k.mu.Unlock()
		k.bump()
		return nil
	}
	if len(fields) < 2 || fields[1] != TableName {
		return fmt.Errorf("fake nft %q: want <family> %s after the object", cmd, TableName)
	}
	f := familyV4
	if fields[0] == familyV6.word {
		f = familyV6
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	next := map[nftables.TableFamily]*fakeTable{}
	for fam, t := range k.tables {
		next[fam] = t.clone()
	}
	if err := runOn(next, f, verb, obj, fields[2:]); err != nil {
		return fmt.Errorf("fake nft %q: %w", cmd, err)
	}
	k.tables = next
	k.bump()
	return nil
}

func runOn(tables map[nftables.TableFamily]*fakeTable, f *family, verb, obj string, args []string) error {
	switch {
	case verb == "delete" && obj == "table":
		if tables[f.table] == nil {
			return unix.ENOENT
		}
		delete(tables, f.table)
		return nil
	case verb == "flush" && obj == "chain" && len(args) == 1:
		return applyOp(tables, f, op{kind: opFlushChain, name: args[0]})
	case verb == "delete" && obj == "chain" && len(args) == 1:
		return applyOp(tables, f, op{kind: opDelChain, name: args[0]})
	case obj == "element" && (verb == "add" || verb == "delete") && len(args) > 1:
		t := tables[f.table]
		if t == nil || t.sets[args[0]] == nil {
			return unix.ENOENT
		}
		e, err := parseElem(&t.sets[args[0]].def, strings.Join(args[1:], " "))
		if err != nil {
			return err
		}
		kind := opAddElems
		if verb == "delete" {
			kind, e.VerdictData = opDelElems, nil
		}
		return applyOp(tables, f, op{kind: kind, name: args[0], elems: []nftables.SetElement{e}})
	}
	return fmt.Errorf("not a command the fake knows: %w", unix.EINVAL)
}

// parseElem reads "{ key [: goto chain] }" by the set's key type.
func parseElem(s *nftables.Set, text string) (nftables.SetElement, error) {
	text = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(text), "{"), "}"))
	keyText, data, hasData := strings.Cut(text, " : ")
	key, err := parseValue(s.KeyType, strings.TrimSpace(keyText))
	if err != nil {
		return nftables.SetElement{}, err
	}
	e := nftables.SetElement{Key: key}
	if chain, ok := strings.CutPrefix(strings.TrimSpace(data), "goto "); hasData && ok {
		e.VerdictData = &expr.Verdict{Kind: expr.VerdictGoto, Chain: strings.TrimSpace(chain)}
	} else if hasData {
		return e, fmt.Errorf("element data %q: only goto verdicts are understood: %w", data, unix.EINVAL)
	}
	return e, nil
}

// parseValue is formatValue's inverse.
func parseValue(t nftables.SetDatatype, text string) ([]byte, error) {
	parts := nftables.ConcatSetTypeElements(t)
	if len(parts) <= 1 {
		return parseField(t, text)
	}
	fields := strings.Split(text, " . ")
	if len(fields) != len(parts) {
		return nil, fmt.Errorf("%q has %d fields, type %s has %d: %w", text, len(fields), t.Name, len(parts), unix.EINVAL)
	}
	var out []byte
	for i, p := range parts {
		v, err := parseField(p, strings.TrimSpace(fields[i]))
		if err != nil {
			return nil, err
		}
		out = append(out, make([]byte, int(p.Bytes+3)/4*4)...)
		copy(out[len(out)-int(p.Bytes+3)/4*4:], v)
	}
	return out, nil
}

func parseField(t nftables.SetDatatype, text string) ([]byte, error) {
	switch t.Name {
	case "ipv4_addr", "ipv6_addr":
		a, err := netip.ParseAddr(text)
		if err != nil || len(a.AsSlice()) != int(t.Bytes) {
			return nil, fmt.Errorf("address %q for %s: %w", text, t.Name, unix.EINVAL)
		}
		return a.AsSlice(), nil
	case "inet_proto":
		for p := range 256 {
			if protoText(byte(p)) == text {
				return []byte{byte(p)}, nil
			}
		}
	case "inet_service":
		if n, err := strconv.ParseUint(text, 10, 16); err == nil {
			return binary.BigEndian.AppendUint16(nil, uint16(n)), nil
		}
	case "mark", "integer":
		if n, err := strconv.ParseUint(text, 0, 32); err == nil {
			if t.Name == "mark" {
				return binary.NativeEndian.AppendUint32(nil, uint32(n)), nil
			}
			return binary.BigEndian.AppendUint32(nil, uint32(n)), nil
		}
	}
	return nil, fmt.Errorf("%q is not a %s: %w", text, t.Name, unix.EINVAL)
}
