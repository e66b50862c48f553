package nftables

import (
	"fmt"
	"maps"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
)

// elemChunk bounds the elements per netlink message: the element list is one attribute, whose
// length field has 16 bits.
const elemChunk = 256

func addChainOp(t *nftables.Table, name string) op {
	return func(cc *nftables.Conn) error {
		cc.AddChain(&nftables.Chain{Table: t, Name: name})
		return nil
	}
}

func addBaseChainOp(t *nftables.Table, c skeletonChain) op {
	return func(cc *nftables.Conn) error {
		ch := &nftables.Chain{Table: t, Name: c.name}
		if c.hook != nil {
			ch.Type, ch.Hooknum, ch.Priority = c.typ, c.hook, c.priority
		}
		cc.AddChain(ch)
		return nil
	}
}

func flushChainOp(t *nftables.Table, name string) op {
	return func(cc *nftables.Conn) error {
		cc.FlushChain(&nftables.Chain{Table: t, Name: name})
		return nil
	}
}

func delChainOp(t *nftables.Table, name string) op {
	return func(cc *nftables.Conn) error {
		cc.DelChain(&nftables.Chain{Table: t, Name: name})
		return nil
	}
}

func addSetOp(t *nftables.Table, s *nftables.Set) op {
	return func(cc *nftables.Conn) error {
		c := *s
		c.Table = t
		if err := cc.AddSet(&c, nil); err != nil {
			return fmt.Errorf("add set %s: %w", s.Name, err)
		}
		return nil
	}
}

func delSetOp(t *nftables.Table, name string) op {
	return func(cc *nftables.Conn) error {
		cc.DelSet(&nftables.Set{Table: t, Name: name})
		return nil
	}
}

// addRuleOp appends a rule, creating its anonymous map first. The rule's comment is its hash.
func addRuleOp(t *nftables.Table, chain string, r rule) op {
	return func(cc *nftables.Conn) error {
		if r.anon != nil {
			s := &nftables.Set{Table: t, Anonymous: true, Constant: true, IsMap: true,
				KeyType: r.anon.keyType, DataType: r.anon.dataType}
			if err := cc.AddSet(s, r.anon.elems); err != nil {
				return fmt.Errorf("add anonymous map: %w", err)
			}
			r.anon.lookup.SetName, r.anon.lookup.SetID = s.Name, s.ID
		}
		cc.AddRule(&nftables.Rule{Table: t, Chain: &nftables.Chain{Table: t, Name: chain}, Exprs: r.exprs,
			UserData: userdata.AppendString(nil, userdata.TypeComment, r.comment())})
		return nil
	}
}

// elemOp adds or deletes elements of a named set, a chunk per message.
func elemOp(t *nftables.Table, set string, del bool, elems []nftables.SetElement) op {
	return func(cc *nftables.Conn) error {
		s := &nftables.Set{Table: t, Name: set}
		for c := range slices.Chunk(elems, elemChunk) {
			var err error
			if del {
				err = cc.SetDeleteElements(s, c)
			} else {
				err = cc.SetAddElements(s, c)
			}
			if err != nil {
				return fmt.Errorf("elements of %s: %w", set, err)
			}
		}
		return nil
	}
}

// vipElem encodes a frontend map element; chain empty leaves the verdict out (for deletes).
func vipElem(f *family, k vipKey, chain string) nftables.SetElement {
	key := append(append(f.addr(k.addr), padProto(k.proto)...), padPort(uint32(k.port))...)
	e := nftables.SetElement{Key: key}
	if chain != "" {
		e.VerdictData = &expr.Verdict{Kind: expr.VerdictGoto, Chain: chain}
	}
	return e
}

func nodePortElem(k npKey, chain string) nftables.SetElement {
	e := nftables.SetElement{Key: append(padProto(k.proto), padPort(uint32(k.port))...)}
	if chain != "" {
		e.VerdictData = &expr.Verdict{Kind: expr.VerdictGoto, Chain: chain}
	}
	return e
}

// emit writes the planned transaction into cc's batch, in phase order.
func (tx *txn) emit(cc *nftables.Conn) error {
	for phase := range numPhases {
		for _, o := range tx.phases[phase] {
			if err := o(cc); err != nil {
				return err
			}
		}
		for _, k := range slices.SortedFunc(maps.Keys(tx.elems), func(a, b elemBatchKey) int {
			if a.set < b.set {
				return -1
			}
			if a.set > b.set {
				return 1
			}
			return 0
		}) {
			if k.phase != phase {
				continue
			}
			del := phase == phaseElemDel || phase == phaseDelete
			if err := elemOp(tx.t.table, k.set, del, tx.elems[k])(cc); err != nil {
				return err
			}
			tx.messages += (len(tx.elems[k]) + elemChunk - 1) / elemChunk
		}
	}
	return nil
}
