package stream

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// Rebuilding a port decodes its service and endpoint sets on every change to any of them, so
// their decoding is the agent's most frequent work. The decoders here build each message from a
// few allocations (one string for every text field, one array for every repeated message) where
// protobuf's reflection allocates per field and per element, which the collector then pays for.
// They read only the fields of state.proto they know, and hand anything else (a field they do
// not know, an unexpected wire type, a message field given twice, invalid UTF-8) to protobuf, so
// their result is always protobuf's; decode_test.go fails when state.proto gains a field.

// fields walks an encoded message's fields. Only varint and length-delimited fields are read:
// any other wire type stops the walk as bad, unless the walk is lenient, which skips them.
type fields struct {
	b       []byte
	lenient bool
	num     protowire.Number
	typ     protowire.Type
	v       uint64 // a varint field's value
	bs      []byte // a length-delimited field's bytes
	bad     bool
	err     error // why the walk stopped as bad
}

func (f *fields) next() bool {
	if len(f.b) == 0 || f.bad {
		return false
	}
	num, typ, n := protowire.ConsumeTag(f.b)
	if n >= 0 {
		f.b = f.b[n:]
		f.bs = nil
		switch {
		case typ == protowire.VarintType:
			f.v, n = protowire.ConsumeVarint(f.b)
		case typ == protowire.BytesType:
			f.bs, n = protowire.ConsumeBytes(f.b)
		case f.lenient:
			n = protowire.ConsumeFieldValue(num, typ, f.b)
		default:
			f.bad, f.err = true, fmt.Errorf("field %d: unexpected wire type %d", num, typ)
			return false
		}
	}
	if n < 0 {
		f.bad, f.err = true, protowire.ParseError(n)
		return false
	}
	f.b, f.num, f.typ = f.b[n:], num, typ
	return true
}

// text is a string field's bytes, when the field is one and valid UTF-8.
func (f *fields) text() ([]byte, bool) {
	return f.bs, f.typ == protowire.BytesType && utf8.Valid(f.bs)
}

// decodeEndpointSet decodes an EndpointSet.
func decodeEndpointSet(b []byte) (*v1.EndpointSet, error) {
	if s, ok := fastEndpointSet(b); ok {
		return s, nil
	}
	s := &v1.EndpointSet{}
	return s, proto.Unmarshal(b, s)
}

// fastEndpointSet decodes an EndpointSet from four allocations; ok is false when b needs protobuf.
func fastEndpointSet(b []byte) (*v1.EndpointSet, bool) {
	// The backends are counted first, and their encodings measured: their addresses, gathered
	// into one string, take no more.
	n, size := 0, 0
	for f := (fields{b: b}); f.next(); {
		if f.num == 2 {
			n++
			size += len(f.bs)
		}
	}
	s := &v1.EndpointSet{}
	var backends []v1.Backend
	var text strings.Builder
	if n > 0 {
		backends = make([]v1.Backend, n)
		s.Backends = make([]*v1.Backend, 0, n)
		text.Grow(size)
	}
	var ok bool
	f := fields{b: b}
	for f.next() {
		switch {
		case f.num == 1 && f.typ == protowire.VarintType:
			s.Action = v1.TrafficAction(int32(f.v))
		case f.num == 3 && f.typ == protowire.VarintType:
			s.LocalReadyEndpoints = uint32(f.v)
		case f.num == 2 && f.typ == protowire.BytesType:
			be := &backends[len(s.Backends)]
			s.Backends = append(s.Backends, be)
			g := fields{b: f.bs}
			for g.next() {
				switch {
				case g.num == 1 && g.typ == protowire.BytesType:
					if be.Address, ok = str(&text, &g); !ok {
						return nil, false
					}
				case g.num == 2 && g.typ == protowire.VarintType:
					be.Port = uint32(g.v)
				case g.num == 3 && g.typ == protowire.VarintType:
					be.Weight = uint32(g.v)
				case g.num == 4 && g.typ == protowire.VarintType:
					be.Terminating = g.v != 0
				default:
					return nil, false
				}
			}
			if g.bad {
				return nil, false
			}
		default:
			return nil, false
		}
	}
	return s, !f.bad
}

// str reads a string field into text, which was grown to hold every string of the message (so
// that it never moves), and returns it as a part of text's string.
func str(text *strings.Builder, f *fields) (string, bool) {
	if !utf8.Valid(f.bs) {
		return "", false
	}
	from := text.Len()
	text.Write(f.bs)
	return text.String()[from:], true
}

// decodeServicePort decodes a ServicePort.
func decodeServicePort(b []byte) (*v1.ServicePort, error) {
	if s, ok := fastServicePort(b); ok {
		return s, nil
	}
	s := &v1.ServicePort{}
	return s, proto.Unmarshal(b, s)
}

// servicePort holds a ServicePort with its single message fields, in one allocation.
type servicePort struct {
	port     v1.ServicePort
	affinity v1.SessionAffinity
	policies [2]v1.TrafficPolicy
}

// fastServicePort decodes a ServicePort from a few allocations; ok is false when b needs protobuf.
func fastServicePort(b []byte) (*v1.ServicePort, bool) {
	// The frontends and their source ranges are counted first, and every string measured.
	frontends, ranges, size := 0, 0, 0
	for f := (fields{b: b}); f.next(); {
		size += len(f.bs)
		if f.num == 6 {
			frontends++
			for g := (fields{b: f.bs}); g.next(); {
				if g.num == 4 {
					ranges++
				}
			}
		}
	}
	var text strings.Builder
	text.Grow(size)
	m := &servicePort{}
	s := &m.port
	var fronts []v1.Frontend
	var srcs []string
	if frontends > 0 {
		fronts = make([]v1.Frontend, frontends)
		s.Frontends = make([]*v1.Frontend, 0, frontends)
	}
	if ranges > 0 {
		srcs = make([]string, 0, ranges)
	}
	var seen uint16 // the single message fields given so far, by number
	f := fields{b: b}
	for f.next() {
		ok := true
		bytes, varint := f.typ == protowire.BytesType, f.typ == protowire.VarintType
		switch {
		case f.num == 1 && bytes:
			s.Namespace, ok = str(&text, &f)
		case f.num == 2 && bytes:
			s.Name, ok = str(&text, &f)
		case f.num == 3 && bytes:
			s.PortName, ok = str(&text, &f)
		case f.num == 7 && bytes:
			s.Scheduler, ok = str(&text, &f)
		case f.num == 4 && varint:
			s.Family = v1.IPFamily(int32(f.v))
		case f.num == 5 && varint:
			s.Protocol = v1.Protocol(int32(f.v))
		case f.num == 11 && varint:
			s.HealthCheckNodePort = uint32(f.v)
		case f.num == 6 && bytes:
			fe := &fronts[len(s.Frontends)]
			s.Frontends = append(s.Frontends, fe)
			first := len(srcs)
			g := fields{b: f.bs}
			for g.next() && ok {
				switch {
				case g.num == 1 && g.typ == protowire.VarintType:
					fe.Kind = v1.FrontendKind(int32(g.v))
				case g.num == 2 && g.typ == protowire.BytesType:
					fe.Address, ok = str(&text, &g)
				case g.num == 3 && g.typ == protowire.VarintType:
					fe.Port = uint32(g.v)
				case g.num == 4 && g.typ == protowire.BytesType:
					var r string
					r, ok = str(&text, &g)
					srcs = append(srcs, r)
				default:
					ok = false
				}
			}
			ok = ok && !g.bad
			if len(srcs) > first {
				fe.SourceRanges = srcs[first:len(srcs):len(srcs)]
			}
		case (f.num == 8 || f.num == 9 || f.num == 10) && bytes:
			if seen&(1<<f.num) != 0 {
				return nil, false // protobuf merges a message field given twice
			}
			seen |= 1 << f.num
			g := fields{b: f.bs}
			switch f.num {
			case 8:
				s.SessionAffinity = &m.affinity
				for g.next() && ok {
					ok = g.num == 1 && g.typ == protowire.VarintType
					m.affinity.TimeoutSeconds = uint32(g.v)
				}
			default:
				p := &m.policies[f.num-9]
				if f.num == 9 {
					s.Internal = p
				} else {
					s.External = p
				}
				for g.next() && ok {
					switch {
					case g.num == 1 && g.typ == protowire.VarintType:
						p.Scope = v1.EndpointScope(int32(g.v))
					case g.num == 2 && g.typ == protowire.VarintType:
						p.Masquerade = g.v != 0
					default:
						ok = false
					}
				}
			}
			ok = ok && !g.bad
		default:
			ok = false
		}
		if !ok {
			return nil, false
		}
	}
	return s, !f.bad
}
