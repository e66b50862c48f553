package stream

import (
	"context"
	"errors"
	"testing"
	"time"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

func endpointResult(address string, ready bool) *v1.EndpointHealth {
	return &v1.EndpointHealth{Namespace: "default", Service: "web", Address: address, Ready: ready}
}

// TestHealthQueueKeepsTheNewestPerEndpoint: a result replaces the waiting one of its endpoint
// in place; other endpoints keep their order.
func TestHealthQueueKeepsTheNewestPerEndpoint(t *testing.T) {
	q := newHealthQueue(10)
	replaced, err := q.push(context.Background(), []*v1.EndpointHealth{
		endpointResult("a", false), endpointResult("b", false), endpointResult("a", true),
	}, func() { t.Error("full") })
	if err != nil || replaced != 1 {
		t.Fatalf("push: %d replaced, %v; want 1, nil", replaced, err)
	}
	got := q.take()
	if len(got) != 2 || got[0].Address != "a" || !got[0].Ready || got[1].Address != "b" || got[1].Ready {
		t.Errorf("took %v, want a ready then b failing", got)
	}
	if rest := q.take(); len(rest) != 0 {
		t.Errorf("took %v after emptying", rest)
	}
}

// TestHealthQueueWaitsWhenFull: with as many endpoints waiting as it may hold, a result of
// another endpoint waits for the worker (or the stream's end) rather than being dropped: agents
// report transitions only, so a dropped one would never be told again.
func TestHealthQueueWaitsWhenFull(t *testing.T) {
	q := newHealthQueue(1)
	if _, err := q.push(context.Background(), []*v1.EndpointHealth{endpointResult("a", false)}, nil); err != nil {
		t.Fatal(err)
	}
	full := 0
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := q.push(ended, []*v1.EndpointHealth{endpointResult("b", false)}, func() { full++ }); !errors.Is(err, context.Canceled) || full != 1 {
		t.Fatalf("push into a full queue of an ended stream: %v, %d times full; want context.Canceled, 1", err, full)
	}

	pushed := make(chan error, 1)
	go func() {
		_, err := q.push(context.Background(), []*v1.EndpointHealth{endpointResult("b", false)}, func() {})
		pushed <- err
	}()
	if got := q.take(); len(got) != 1 || got[0].Address != "a" {
		t.Fatalf("took %v, want a", got)
	}
	select {
	case err := <-pushed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the waiting result was not queued once there was room")
	}
	if got := q.take(); len(got) != 1 || got[0].Address != "b" {
		t.Errorf("took %v, want b", got)
	}
}
