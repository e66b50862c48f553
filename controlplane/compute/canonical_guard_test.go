package compute

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// The guard of the canonical encoding. canonical.go lists the fields of every resource message by
// hand; a field it leaves out would change what agents must do without changing the version, and
// agents that hold the old version would never receive the change. These tests walk the messages
// by reflection from Resource's content oneof, so a content type or field added to state.proto is
// checked the day it lands, without anyone listing it here.

// contentMembers are the fields of Resource's content oneof.
func contentMembers(t *testing.T) []protoreflect.FieldDescriptor {
	od := (&v1.Resource{}).ProtoReflect().Descriptor().Oneofs().ByName("content")
	if od == nil {
		t.Fatal("Resource has no oneof named content")
	}
	var out []protoreflect.FieldDescriptor
	for i := 0; i < od.Fields().Len(); i++ {
		out = append(out, od.Fields().Get(i))
	}
	return out
}

// filledResource is a Resource whose content is member fd with every field filled.
func filledResource(fd protoreflect.FieldDescriptor) *v1.Resource {
	r := &v1.Resource{}
	(&filler{}).fillField(r.ProtoReflect(), fd, 0)
	return r
}

// versionOf is the version compute gives r's content (r is not modified).
func versionOf(r *v1.Resource) string {
	return newResource("guard", proto.Clone(r).(*v1.Resource)).Version
}

// edited is a filled resource of member fd before and after edit e.
func edited(fd protoreflect.FieldDescriptor, e edit) (before, after *v1.Resource) {
	before = filledResource(fd)
	content := func(r *v1.Resource) protoreflect.Message { return r.ProtoReflect().Mutable(fd).Message() }
	if e.prep != nil {
		e.prep(content(before))
	}
	after = proto.Clone(before).(*v1.Resource)
	e.apply(content(after))
	return before, after
}

// sameMeaning lists the changes that may keep the version, each because the agent reads both
// sides alike. Keep it short: every entry is a change an agent never receives.
var sameMeaning = map[string]bool{
	// An unset check and an empty one both mean "no probe" (GetCheck().GetAction() is nil), and
	// compute always sets the check; encoding its presence would change every probe set's version.
	"ProbeSet.check (set empty)": true,
}

// TestEveryContentFieldChangesTheVersion changes every field of every message reachable from a
// resource's content, one at a time, and requires a new version for each change.
func TestEveryContentFieldChangesTheVersion(t *testing.T) {
	for _, fd := range contentMembers(t) {
		t.Run(string(fd.Name()), func(t *testing.T) {
			edits := editsOf(fd.Message(), 0)
			if len(edits) == 0 {
				t.Fatalf("%s has no fields to change", fd.Message().FullName())
			}
			for _, e := range edits {
				before, after := edited(fd, e)
				if proto.Equal(before, after) {
					t.Errorf("%s: the edit changes nothing (a fault of this test's filler)", e.path)
					continue
				}
				path := string(fd.Message().Name()) + "." + e.path
				if v := versionOf(before); v == versionOf(after) && !sameMeaning[path] {
					t.Errorf("%s: the version stays %s: canonical.go does not encode this field", path, v)
				}
			}
			if !t.Failed() {
				t.Logf("%d changes of %s each change the version", len(edits), fd.Message().FullName())
			}
		})
	}
}

// TestEqualContentHasEqualVersions builds each edited resource again through the wire and through
// Clone, and requires the same version: the encoding reads only the message's content, never its
// history (pointer identity, map order, how the lists were grown).
func TestEqualContentHasEqualVersions(t *testing.T) {
	for _, fd := range contentMembers(t) {
		for _, e := range append(editsOf(fd.Message(), 0), edit{path: "(as filled)", apply: func(protoreflect.Message) {}}) {
			_, r := edited(fd, e)
			wire, err := proto.Marshal(r)
			if err != nil {
				t.Fatalf("%s.%s: %v", fd.Name(), e.path, err)
			}
			var decoded v1.Resource
			if err := proto.Unmarshal(wire, &decoded); err != nil {
				t.Fatalf("%s.%s: %v", fd.Name(), e.path, err)
			}
			_, again := edited(fd, e)
			want := versionOf(r)
			for _, equal := range []*v1.Resource{&decoded, again, proto.Clone(r).(*v1.Resource)} {
				if !proto.Equal(r, equal) {
					t.Fatalf("%s.%s: the copies differ (a fault of this test)", fd.Name(), e.path)
				}
				if got := versionOf(equal); got != want {
					t.Errorf("%s.%s: equal resources have versions %s and %s", fd.Name(), e.path, want, got)
				}
			}
		}
	}
}

// TestContentTypesNeverShareAVersion: an empty message of one content type and of another (or no
// content at all) are different resources, so each encoding starts with its own tag.
func TestContentTypesNeverShareAVersion(t *testing.T) {
	seen := map[string]string{versionOf(&v1.Resource{}): "no content"}
	for _, fd := range contentMembers(t) {
		r := &v1.Resource{}
		rm := r.ProtoReflect()
		rm.Set(fd, rm.NewField(fd))
		v := versionOf(r)
		if other, dup := seen[v]; dup {
			t.Errorf("an empty %s has version %s, as %s has", fd.Name(), v, other)
		}
		seen[v] = string(fd.Name())
	}
}

// TestSameMeaningIsCurrent keeps the exceptions honest: each names a change the guard makes, and
// that change still keeps the version (else the entry is stale and would hide a regression).
func TestSameMeaningIsCurrent(t *testing.T) {
	found := map[string]bool{}
	for _, fd := range contentMembers(t) {
		for _, e := range editsOf(fd.Message(), 0) {
			path := string(fd.Message().Name()) + "." + e.path
			if !sameMeaning[path] {
				continue
			}
			found[path] = true
			if before, after := edited(fd, e); versionOf(before) != versionOf(after) {
				t.Errorf("%s now changes the version: remove it from sameMeaning", path)
			}
		}
	}
	for path := range sameMeaning {
		if !found[path] {
			t.Errorf("sameMeaning names %s, which no edit makes", path)
		}
	}
}
