package compute

import (
	"fmt"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// edit is one change to a filled message. prep brings the message to the state the change starts
// from (a oneof member chosen); apply makes the change. Both start from the same filled message,
// so "prep" alone is the before and "prep, apply" the after.
type edit struct {
	path  string
	prep  func(protoreflect.Message)
	apply func(protoreflect.Message)
}

// editsOf lists a change of every field of md, recursively: every scalar and enum changed and
// zeroed, every repeated field and map shortened, lengthened, emptied and each element changed,
// every message field cleared, set from unset to empty and each of its fields changed, every oneof
// member chosen.
func editsOf(md protoreflect.MessageDescriptor, depth int) []edit {
	if depth > maxDepth {
		return nil
	}
	var out []edit
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		own := fieldEdits(fd, depth)
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			own = oneofEdits(od, fd, own)
		}
		for _, e := range own {
			e.path = string(fd.Name()) + e.path
			out = append(out, e)
		}
	}
	return out
}

// oneofEdits chooses member fd of od (from whichever member the filler chose) and runs fd's own
// edits with fd chosen; the filler's choice (the first member) is cleared instead of chosen.
func oneofEdits(od protoreflect.OneofDescriptor, fd protoreflect.FieldDescriptor, own []edit) []edit {
	choose := func(m protoreflect.Message) {
		if m.WhichOneof(od) != fd {
			(&filler{n: 500_000}).fillField(m, fd, 0)
		}
	}
	var out []edit
	if od.Fields().Get(0) == fd { // the filler's choice: clear it
		out = append(out, edit{path: " (oneof " + string(od.Name()) + " cleared)", apply: func(m protoreflect.Message) {
			m.Clear(m.WhichOneof(od))
		}})
	} else {
		out = append(out, edit{path: " (chosen)", apply: choose})
	}
	for _, e := range own {
		out = append(out, edit{path: e.path, prep: then(choose, e.prep), apply: e.apply})
	}
	return out
}

// fieldEdits lists the changes of one field of a filled message.
func fieldEdits(fd protoreflect.FieldDescriptor, depth int) []edit {
	switch {
	case fd.IsMap():
		return mapEdits(fd, depth)
	case fd.IsList():
		return listEdits(fd, depth)
	case fd.Message() != nil:
		out := []edit{
			{path: " (cleared)", apply: func(m protoreflect.Message) { m.Clear(fd) }},
			{path: " (set empty)", prep: func(m protoreflect.Message) { m.Clear(fd) }, apply: func(m protoreflect.Message) {
				m.Set(fd, m.NewField(fd))
			}},
		}
		return append(out, within("", editsOf(fd.Message(), depth+1), func(m protoreflect.Message) protoreflect.Message {
			return m.Mutable(fd).Message()
		})...)
	}
	out := []edit{{path: " (changed)", apply: func(m protoreflect.Message) { m.Set(fd, changed(fd, m.Get(fd))) }}}
	if fd.Kind() != protoreflect.BoolKind { // a bool's change is its zero
		out = append(out, edit{path: " (zeroed)", apply: func(m protoreflect.Message) { m.Clear(fd) }})
	}
	return out
}

// listEdits changes a repeated field's length and order, and each of its two elements.
func listEdits(fd protoreflect.FieldDescriptor, depth int) []edit {
	list := func(m protoreflect.Message) protoreflect.List { return m.Mutable(fd).List() }
	out := []edit{
		{path: " (emptied)", apply: func(m protoreflect.Message) { m.Clear(fd) }},
		{path: " (last dropped)", apply: func(m protoreflect.Message) { list(m).Truncate(1) }},
		{path: " (swapped)", apply: func(m protoreflect.Message) {
			l := list(m)
			a, b := l.Get(0), l.Get(1)
			l.Set(0, b)
			l.Set(1, a)
		}},
		{path: " (appended)", apply: func(m protoreflect.Message) {
			l := list(m)
			l.Append((&filler{n: 600_000}).value(l.NewElement, fd, depth))
		}},
	}
	for i := range 2 {
		at := func(m protoreflect.Message) protoreflect.Message { return list(m).Get(i).Message() }
		if fd.Message() != nil {
			out = append(out, within(fmt.Sprintf("[%d]", i), editsOf(fd.Message(), depth+1), at)...)
			continue
		}
		out = append(out, edit{path: fmt.Sprintf("[%d] (changed)", i), apply: func(m protoreflect.Message) {
			l := list(m)
			l.Set(i, changed(fd, l.Get(i)))
		}})
	}
	return out
}

// mapEdits removes, adds and changes entries of a map field.
func mapEdits(fd protoreflect.FieldDescriptor, depth int) []edit {
	mp := func(m protoreflect.Message) protoreflect.Map { return m.Mutable(fd).Map() }
	out := []edit{
		{path: " (emptied)", apply: func(m protoreflect.Message) { m.Clear(fd) }},
		{path: " (entry removed)", apply: func(m protoreflect.Message) { mp(m).Clear(firstKey(mp(m))) }},
		{path: " (entry added)", apply: func(m protoreflect.Message) {
			f := &filler{n: 700_000}
			mp(m).Set(f.scalar(fd.MapKey()).MapKey(), f.value(mp(m).NewValue, fd.MapValue(), depth))
		}},
	}
	if fd.MapValue().Message() != nil {
		return append(out, within("[first]", editsOf(fd.MapValue().Message(), depth+1), func(m protoreflect.Message) protoreflect.Message {
			return mp(m).Mutable(firstKey(mp(m))).Message()
		})...)
	}
	return append(out, edit{path: " (a value changed)", apply: func(m protoreflect.Message) {
		k := firstKey(mp(m))
		mp(m).Set(k, changed(fd.MapValue(), mp(m).Get(k)))
	}})
}

// firstKey is the smallest key of a non-empty map by its text, so every run edits the same entry.
func firstKey(m protoreflect.Map) protoreflect.MapKey {
	var first protoreflect.MapKey
	found := false
	m.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
		if !found || k.String() < first.String() {
			first, found = k, true
		}
		return true
	})
	return first
}

// within moves edits of a nested message to the message that holds it; label names the element.
func within(label string, edits []edit, at func(protoreflect.Message) protoreflect.Message) []edit {
	out := make([]edit, 0, len(edits))
	for _, e := range edits {
		out = append(out, edit{
			path: label + "." + e.path,
			prep: func(m protoreflect.Message) {
				if e.prep != nil {
					e.prep(at(m))
				}
			},
			apply: func(m protoreflect.Message) { e.apply(at(m)) },
		})
	}
	return out
}

// then runs a and then b (b may be nil).
func then(a, b func(protoreflect.Message)) func(protoreflect.Message) {
	return func(m protoreflect.Message) {
		a(m)
		if b != nil {
			b(m)
		}
	}
}
