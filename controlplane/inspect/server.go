// Package inspect answers operators' questions over gRPC: which nodes are in sync, what a node is
// told, and why a service's endpoints are or are not used on a node.
package inspect

import (
	"context"
	"errors"
	"slices"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	"github.com/ganglion-proxy/ganglion/controlplane/model"
	"github.com/ganglion-proxy/ganglion/controlplane/stream"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// Server implements InspectService.
type Server struct {
	v1.UnimplementedInspectServiceServer
	hub    *stream.Hub
	leases Leases
}

var _ v1.InspectServiceServer = (*Server)(nil)

// Leases reports the node leases this replica holds for connected agents (bare-metal mode): a
// node can be connected while its lease is lost, and then it is taken down everywhere.
type Leases interface {
	NodeLeases() map[string]*v1.NodeLease
}

// NewServer returns the inspect service of hub; leases may be nil (Kubernetes mode).
func NewServer(hub *stream.Hub, leases Leases) *Server { return &Server{hub: hub, leases: leases} }

// ListNodes lists every node known to the model or connected, with its sync status.
func (s *Server) ListNodes(context.Context, *v1.ListNodesRequest) (*v1.ListNodesResponse, error) {
	sessions := s.hub.Sessions()
	var leases map[string]*v1.NodeLease
	if s.leases != nil {
		leases = s.leases.NodeLeases()
	}
	resp := &v1.ListNodesResponse{}
	s.hub.View(func(e *compute.Engine) {
		names := e.Nodes()
		for n := range sessions {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
		slices.Sort(names)
		for _, n := range names {
			st := &v1.NodeStatus{Name: n, Zone: e.Zone(n), Resources: uint32(e.StateSize())}
			if ss, ok := sessions[n]; ok {
				st.Connected = true
				st.Pending = uint32(ss.Pending)
				st.Rejected = uint32(ss.Rejected)
				st.LastError = ss.LastError
				st.LagSeconds = ss.Lag.Seconds()
				st.AckedGeneration = ss.Acked
				st.AgentVersion = ss.AgentVersion
				st.Lease = leases[n]
			}
			resp.Nodes = append(resp.Nodes, st)
		}
	})
	return resp, nil
}

// GetNodeState returns one node's desired state.
func (s *Server) GetNodeState(_ context.Context, req *v1.GetNodeStateRequest) (*v1.GetNodeStateResponse, error) {
	if req.Node == "" {
		return nil, status.Error(codes.InvalidArgument, "node: required")
	}
	resp := &v1.GetNodeStateResponse{}
	sessions := s.hub.Sessions()
	var err error
	s.hub.View(func(e *compute.Engine) {
		if err = known(e, sessions, req.Node); err == nil {
			for _, r := range e.NodeState(req.Node) {
				resp.Resources = append(resp.Resources, r.Msg)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// known refuses a node the brain neither computes state for nor holds a stream of: answering for
// a typo as if it were a node with no zone would mislead.
func known(e *compute.Engine, sessions map[string]stream.SessionStatus, node string) error {
	if _, connected := sessions[node]; connected || slices.Contains(e.Nodes(), node) {
		return nil
	}
	return status.Errorf(codes.NotFound, "node %q: not known and not connected", node)
}

// ExplainService explains one service on one node.
func (s *Server) ExplainService(_ context.Context, req *v1.ExplainServiceRequest) (*v1.ExplainServiceResponse, error) {
	if req.Node == "" || req.Name == "" {
		return nil, status.Error(codes.InvalidArgument, "node and name: required")
	}
	ns := req.Namespace
	if ns == "" {
		ns = "default"
	}
	var ports []*v1.PortExplanation
	var announcements []*v1.AddressAnnouncement
	var err error
	sessions := s.hub.Sessions()
	var unknown error
	s.hub.View(func(e *compute.Engine) {
		if unknown = known(e, sessions, req.Node); unknown == nil {
			key := model.ServiceKey{Namespace: ns, Name: req.Name}
			ports, err = e.Explain(req.Node, key)
			announcements = e.ExplainAnnouncements(req.Node, key)
		}
	})
	if unknown != nil {
		return nil, unknown
	}
	if errors.Is(err, compute.ErrNotFound) {
		return nil, status.Error(codes.NotFound, err.Error())
	}
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &v1.ExplainServiceResponse{Ports: ports, Announcements: announcements}, nil
}
