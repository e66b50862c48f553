package compute

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// canon is Ganglion's own canonical encoding of resource content. Protobuf's deterministic output
// is not promised to be stable across library versions, and versions must agree between brain
// replicas built at different times, so the hash is taken over this fixed layout instead. Any
// change here changes every version: agents then receive everything once again, nothing worse.
type canon struct{ b []byte }

func (c *canon) uint(v uint64) { c.b = binary.AppendUvarint(c.b, v) }

func (c *canon) str(s string) {
	c.uint(uint64(len(s)))
	c.b = append(c.b, s...)
}

func (c *canon) flag(v bool) {
	if v {
		c.uint(1)
	} else {
		c.uint(0)
	}
}

func (c *canon) servicePort(s *v1.ServicePort) {
	c.str("service/1")
	c.str(s.Namespace)
	c.str(s.Name)
	c.str(s.PortName)
	c.uint(uint64(s.Family))
	c.uint(uint64(s.Protocol))
	c.uint(uint64(len(s.Frontends)))
	for _, f := range s.Frontends {
		c.uint(uint64(f.Kind))
		c.str(f.Address)
		c.uint(uint64(f.Port))
		c.uint(uint64(len(f.SourceRanges)))
		for _, r := range f.SourceRanges {
			c.str(r)
		}
	}
	c.str(s.Scheduler)
	c.flag(s.SessionAffinity != nil)
	c.uint(uint64(s.GetSessionAffinity().GetTimeoutSeconds()))
	c.policy(s.Internal)
	c.policy(s.External)
	c.uint(uint64(s.HealthCheckNodePort))
}

func (c *canon) policy(p *v1.TrafficPolicy) {
	c.flag(p != nil)
	c.uint(uint64(p.GetScope()))
	c.flag(p.GetMasquerade())
}

func (c *canon) endpointSet(e *v1.EndpointSet) {
	c.str("endpoints/1")
	c.uint(uint64(e.Action))
	c.uint(uint64(e.LocalReadyEndpoints))
	c.uint(uint64(len(e.Backends)))
	for _, b := range e.Backends {
		c.str(b.Address)
		c.uint(uint64(b.Port))
		c.uint(uint64(b.Weight))
		c.flag(b.Terminating)
	}
}

func (c *canon) probeSet(p *v1.ProbeSet) {
	c.str("probes/1")
	c.str(p.Namespace)
	c.str(p.Service)
	hc := p.Check
	switch a := hc.GetAction().(type) {
	case *v1.HealthCheck_HttpGet:
		c.str("http")
		c.str(a.HttpGet.Path)
		c.uint(uint64(a.HttpGet.Port))
		c.str(a.HttpGet.Scheme)
	case *v1.HealthCheck_TcpSocket:
		c.str("tcp")
		c.uint(uint64(a.TcpSocket.Port))
	case *v1.HealthCheck_Exec:
		c.str("exec")
		c.uint(uint64(len(a.Exec.Command)))
		for _, s := range a.Exec.Command {
			c.str(s)
		}
	}
	for _, v := range []uint32{hc.GetInitialDelaySeconds(), hc.GetPeriodSeconds(), hc.GetTimeoutSeconds(), hc.GetSuccessThreshold(), hc.GetFailureThreshold()} {
		c.uint(uint64(v))
	}
	c.uint(uint64(len(p.Targets)))
	for _, t := range p.Targets {
		c.str(t.Address)
		c.uint(uint64(t.Port))
	}
}

func (c *canon) dnsRecords(d *v1.DNSRecords) {
	c.str("dns/1")
	c.str(d.Namespace)
	c.str(d.Name)
	c.uint(uint64(len(d.Endpoints)))
	for _, e := range d.Endpoints {
		c.str(e.Address)
		c.str(e.Hostname)
	}
	c.uint(uint64(len(d.Ports)))
	for _, p := range d.Ports {
		c.str(p.Name)
		c.uint(uint64(p.Protocol))
		c.uint(uint64(p.Port))
	}
	c.str(d.ExternalName)
}

func (c *canon) strs(ss []string) {
	c.uint(uint64(len(ss)))
	for _, s := range ss {
		c.str(s)
	}
}

func (c *canon) announcement(a *v1.Announcement) {
	c.str("announce/1")
	c.str(a.Namespace)
	c.str(a.Name)
	c.strs(a.Bgp)
	c.strs(a.L2)
}

func (c *canon) bgpConfig(b *v1.BGPConfig) {
	c.str("bgp/1")
	c.uint(uint64(b.LocalAsn))
	c.str(b.RouterId)
	c.uint(uint64(len(b.Peers)))
	for _, p := range b.Peers {
		c.str(p.Address)
		c.uint(uint64(p.Asn))
		c.uint(uint64(p.Port))
		c.str(p.Password)
		c.uint(uint64(p.HoldTimeSeconds))
	}
	c.strs(b.Communities)
	c.uint(uint64(b.GracefulRestartSeconds))
}

// version hashes the encoding: 64 bits of SHA-256, hex, so collisions need ~2^32 live versions.
func (c *canon) version() string {
	sum := sha256.Sum256(c.b)
	return hex.EncodeToString(sum[:8])
}
