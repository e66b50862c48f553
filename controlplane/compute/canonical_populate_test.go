package compute

import (
	"fmt"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// filler sets every field of a message, recursively, to a value no other field holds, so that
// swapping, dropping or changing any one of them is a visible difference. It knows nothing of
// Ganglion's messages: it walks their descriptors, so a field added to state.proto is filled the
// day it lands.
type filler struct{ n int }

// maxDepth stops a recursive message type from filling for ever; Ganglion's have depth 3.
const maxDepth = 8

// fill sets every field of m: two elements or entries in repeated fields and maps, the first member
// of each oneof (the guard sets the others in turn).
func (f *filler) fill(m protoreflect.Message, depth int) {
	if depth > maxDepth {
		return
	}
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() && od.Fields().Get(0) != fd {
			continue
		}
		f.fillField(m, fd, depth)
	}
}

// fillField sets one field of m to fresh values.
func (f *filler) fillField(m protoreflect.Message, fd protoreflect.FieldDescriptor, depth int) {
	switch {
	case fd.IsMap():
		mp := m.Mutable(fd).Map()
		for range 2 {
			k := f.scalar(fd.MapKey()).MapKey()
			mp.Set(k, f.value(mp.NewValue, fd.MapValue(), depth))
		}
	case fd.IsList():
		l := m.Mutable(fd).List()
		for range 2 {
			l.Append(f.value(l.NewElement, fd, depth))
		}
	case fd.Message() != nil:
		f.fill(m.Mutable(fd).Message(), depth+1)
	default:
		m.Set(fd, f.scalar(fd))
	}
}

// value makes one element of a list or map: a filled message, or a fresh scalar.
func (f *filler) value(newValue func() protoreflect.Value, fd protoreflect.FieldDescriptor, depth int) protoreflect.Value {
	if fd.Message() == nil {
		return f.scalar(fd)
	}
	v := newValue()
	f.fill(v.Message(), depth+1)
	return v
}

// scalar returns a value of fd's kind that no earlier call returned (enums: a declared non-zero
// value where the enum has one, since an undeclared number is not what compute would build).
func (f *filler) scalar(fd protoreflect.FieldDescriptor) protoreflect.Value {
	f.n++
	return scalarOf(fd, f.n)
}

// scalarOf is the n-th value of fd's kind.
func scalarOf(fd protoreflect.FieldDescriptor, n int) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(n%2 == 1)
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		if vals.Len() < 2 {
			return protoreflect.ValueOfEnum(vals.Get(0).Number())
		}
		return protoreflect.ValueOfEnum(vals.Get(1 + n%(vals.Len()-1)).Number())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(n))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(int64(n))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(n))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(uint64(n))
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(float32(n) + 0.5)
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(float64(n) + 0.5)
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(fmt.Sprintf("s%d", n))
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte(fmt.Sprintf("b%d", n)))
	}
	panic("filler: no value for kind " + fd.Kind().String())
}

// changed returns a value of fd's kind different from v and from every value the filler makes.
func changed(fd protoreflect.FieldDescriptor, v protoreflect.Value) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(!v.Bool())
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		for i := 0; i < vals.Len(); i++ {
			if n := vals.Get(i).Number(); n != 0 && n != v.Enum() {
				return protoreflect.ValueOfEnum(n)
			}
		}
		return protoreflect.ValueOfEnum(v.Enum() + 1)
	}
	return scalarOf(fd, 1_000_000)
}
