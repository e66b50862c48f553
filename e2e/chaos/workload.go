package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"sigs.k8s.io/yaml"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// The workload's objects: services Prefix0..Prefix<Keys-1> in Namespace.
const (
	Namespace = "default"
	Prefix    = "w-"
	Keys      = 6
	// CallTimeout bounds every admin call: one that runs into it is a hang, not a fast failure.
	CallTimeout = 10 * time.Second
)

// Workload is clients applying, deleting and reading services concurrently through the admin
// API, each on one brain, recording every call.
type Workload struct {
	// Timeout bounds each call (CallTimeout unless a test sets another before starting).
	Timeout time.Duration
	h       *Harness
	History *History
	version atomic.Int64
	// writing counts applies and deletes in flight per brain, so a fault can strike mid-apply.
	writing []atomic.Int32
	stop    chan struct{}
	wg      sync.WaitGroup
}

// NewWorkload records into a fresh history; versions start at 1000 so that none is a default.
func NewWorkload(h *Harness) *Workload {
	w := &Workload{Timeout: CallTimeout, h: h, History: &History{}, writing: make([]atomic.Int32, h.Brains())}
	w.version.Store(1000)
	return w
}

// Start runs n clients until Stop; client i talks to brain i mod the number of brains.
func (w *Workload) Start(n int) {
	w.stop = make(chan struct{})
	for i := range n {
		w.wg.Add(1)
		go w.client(i)
	}
}

// Stop ends the clients and waits for their last calls.
func (w *Workload) Stop() {
	close(w.stop)
	w.wg.Wait()
}

func (w *Workload) client(id int) {
	defer w.wg.Done()
	r := rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))
	admin := v1.NewAdminServiceClient(w.h.Conn(id))
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		var op Op
		switch x := r.IntN(4); {
		case x < 2:
			op = w.Apply(admin, id, r)
		case x == 2:
			op = w.Delete(admin, id, []string{key(r.IntN(Keys))})
		default:
			op = w.Get(admin, id)
		}
		if op.Outcome != OK {
			// Back off a little: an outage should not become a flood of unknown outcomes, each of
			// which the checker must place.
			time.Sleep(time.Duration(100+r.IntN(200)) * time.Millisecond)
		}
	}
}

func key(i int) string { return fmt.Sprintf("%s%d", Prefix, i) }

// Apply stores one or two services, each with a fresh version, in one call.
func (w *Workload) Apply(admin v1.AdminServiceClient, id int, r *rand.Rand) Op {
	puts := State{}
	for range 1 + r.IntN(2) {
		puts[key(r.IntN(Keys))] = int(w.version.Add(1)%60000) + 1000
	}
	var docs []*v1.Document
	for n, v := range puts {
		docs = append(docs, &v1.Document{Source: n, Content: w.document(n, v)})
	}
	op := Op{Client: id, Kind: KindApply, Puts: puts}
	w.record(&op, func(ctx context.Context) error {
		defer w.writingOn(id)()
		_, err := admin.Apply(ctx, &v1.ApplyRequest{Documents: docs})
		return err
	})
	return op
}

// document is service name with version as its port, backed by every agent's node.
func (w *Workload) document(name string, version int) string {
	var backends []string
	for _, a := range w.h.Agents {
		backends = append(backends, fmt.Sprintf("{address: %s, node: %s}", a.Backend, a.Node))
	}
	return fmt.Sprintf(`apiVersion: ganglion-proxy.io/v1
kind: Service
metadata: {name: %s, namespace: %s}
spec:
  ports: [{port: %d, targetPort: 8080}]
  backends: [%s]
`, name, Namespace, version, strings.Join(backends, ", "))
}

// Delete removes names in one call.
func (w *Workload) Delete(admin v1.AdminServiceClient, id int, names []string) Op {
	op := Op{Client: id, Kind: KindDelete, Deletes: names}
	var refs []*v1.ObjectRef
	for _, n := range names {
		refs = append(refs, &v1.ObjectRef{Kind: "service", Namespace: Namespace, Name: n})
	}
	w.record(&op, func(ctx context.Context) error {
		defer w.writingOn(id)()
		_, err := admin.Delete(ctx, &v1.DeleteRequest{Objects: refs})
		return err
	})
	return op
}

// writingOn counts a write of client id in flight on its brain until the returned func runs.
func (w *Workload) writingOn(id int) func() {
	if id < 0 {
		return func() {}
	}
	c := &w.writing[id%len(w.writing)]
	c.Add(1)
	return func() { c.Add(-1) }
}

// Writing reports whether a write is in flight on brain i.
func (w *Workload) Writing(i int) bool { return w.writing[i].Load() > 0 }

// Get reads every workload service.
func (w *Workload) Get(admin v1.AdminServiceClient, id int) Op {
	op := Op{Client: id, Kind: KindGet}
	w.record(&op, func(ctx context.Context) error {
		resp, err := admin.Get(ctx, &v1.GetRequest{Selector: &v1.ObjectRef{Kind: "service", Namespace: Namespace}})
		if err != nil {
			return err
		}
		op.Read, err = parseRead(resp.Objects)
		return err
	})
	return op
}

func (w *Workload) record(op *Op, call func(ctx context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), w.Timeout)
	defer cancel()
	op.Start = time.Now()
	err := call(ctx)
	op.End = time.Now()
	op.Outcome, op.Code = Classify(err)
	if err != nil {
		op.Err = err.Error()
	}
	w.History.Add(*op)
}

// stored is the part of a stored service the workload reads back.
type stored struct {
	Metadata struct{ Name string }
	Spec     struct {
		Ports []struct{ Port int }
	}
}

func parseRead(docs []*v1.Document) (State, error) {
	s := State{}
	for _, d := range docs {
		var o stored
		if err := yaml.Unmarshal([]byte(d.Content), &o); err != nil {
			return nil, fmt.Errorf("%s: %w", d.Source, err)
		}
		if !strings.HasPrefix(o.Metadata.Name, Prefix) {
			continue
		}
		if len(o.Spec.Ports) == 0 {
			return nil, fmt.Errorf("%s: no port", d.Source)
		}
		s[o.Metadata.Name] = o.Spec.Ports[0].Port
	}
	return s, nil
}

// Read returns what brain i's admin API holds now, retrying until it answers.
func (w *Workload) Read(i int, within time.Duration) (State, error) {
	admin := v1.NewAdminServiceClient(w.h.Conn(i))
	deadline := time.Now().Add(within)
	for {
		op := w.Get(admin, -1)
		if op.Outcome == OK {
			return op.Read, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("read brain %d: %s", i, op.Err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
