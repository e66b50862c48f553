package security

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ganglion-proxy/ganglion/internal/pki"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// nodeStreamsOnlyItself: node-a's certificate opens node-a's stream and not node-b's, which
// would hand over node-b's state and let it report health for node-b's endpoints.
func nodeStreamsOnlyItself(t *testing.T, b *bareMetal) {
	id := b.issue(t, pki.RoleNode, "node-a")
	agents := v1.NewAgentServiceClient(dial(t, b.Addr, clientTLS(t, b.caFile, &id)))
	open := func(node string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		s, err := agents.Stream(ctx)
		if err != nil {
			return err
		}
		if err := s.Send(&v1.StreamRequest{Message: &v1.StreamRequest_Hello{Hello: &v1.Hello{NodeName: node, AgentVersion: "e2e-security"}}}); err != nil {
			return err
		}
		_, err = s.Recv() // the brain's first answer, or why there is none
		return err
	}
	if err := open("node-b"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("node-a asking for node-b's stream: %v, want PermissionDenied", err)
	}
	if err := open("node-a"); err != nil {
		t.Errorf("node-a asking for its own stream: %v", err)
	}
}
