package baremetal

import (
	"cmp"
	"fmt"
	"path"
	"slices"
	"strings"
)

// validateHealthCheck checks a service's health check on its own. Agents run it against each of
// their node's backends, so it may aim only there: a path is a path, never an authority; a port
// is one of the backends' own; an exec check runs a program by its full path, never a shell.
// Whether the nodes' agents allow that program is checked against their registrations.
func validateHealthCheck(o *Object) error {
	hc := o.Service.Spec.HealthCheck
	if hc == nil {
		return nil
	}
	n := 0
	for _, set := range []bool{hc.HTTPGet != nil, hc.TCPSocket != nil, hc.Exec != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return o.fail("spec.healthCheck", "exactly one of httpGet, tcpSocket and exec is required (%d given)", n)
	}
	if g := hc.HTTPGet; g != nil {
		if why := badProbePath(g.Path); why != "" {
			return o.fail("spec.healthCheck.httpGet.path", "%q %s: the probe must go to the backend itself", g.Path, why)
		}
		if err := checkProbePort(o, "spec.healthCheck.httpGet.port", g.Port); err != nil {
			return err
		}
		if g.Scheme != "" && g.Scheme != "HTTP" && g.Scheme != "HTTPS" {
			return o.fail("spec.healthCheck.httpGet.scheme", "%q is not HTTP or HTTPS", g.Scheme)
		}
	}
	if t := hc.TCPSocket; t != nil {
		if err := checkProbePort(o, "spec.healthCheck.tcpSocket.port", t.Port); err != nil {
			return err
		}
	}
	if e := hc.Exec; e != nil {
		if len(e.Command) == 0 {
			return o.fail("spec.healthCheck.exec.command", "required")
		}
		if !path.IsAbs(e.Command[0]) {
			return o.fail("spec.healthCheck.exec.command[0]", "%q is not an absolute path: exec checks run a program by its full path, never through a shell or $PATH", e.Command[0])
		}
	}
	for field, v := range map[string]int32{
		"initialDelaySeconds": hc.InitialDelaySeconds, "periodSeconds": hc.PeriodSeconds, "timeoutSeconds": hc.TimeoutSeconds,
		"successThreshold": hc.SuccessThreshold, "failureThreshold": hc.FailureThreshold,
	} {
		if v < 0 {
			return o.fail("spec.healthCheck."+field, "%d is negative", v)
		}
	}
	return nil
}

// badProbePath says why p is not a plain absolute path, or "" when it is (an empty path is the
// root). Agents put it after scheme://address:port, so anything that could read as a scheme,
// a host or user info ("@host", "//host/x", "http://host/") would send the probe elsewhere.
func badProbePath(p string) string {
	switch {
	case p == "":
		return ""
	case !strings.HasPrefix(p, "/"):
		return "is not an absolute path (it must start with /)"
	case strings.HasPrefix(p, "//"):
		return "starts with //, which reads as a host"
	case strings.ContainsRune(p, '#'):
		return "has a fragment (#)"
	case strings.ContainsRune(p, '\\'):
		return "has a backslash, which some clients read as /"
	case strings.ContainsFunc(p, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return "has a space or a control character"
	}
	return ""
}

// checkProbePort refuses a probe port override that is not one of the backends' own ports.
func checkProbePort(o *Object, field string, port int32) error {
	if err := checkPort(o, field, port, true); err != nil || port == 0 {
		return err
	}
	own := targetPorts(&o.Service.Spec)
	if !slices.Contains(own, port) {
		return o.fail(field, "%d is not a port of the service's backends (%s): probes go only to the backends' own ports", port, portList(own))
	}
	return nil
}

// targetPorts are the ports the service's backends serve on: its target ports, and the ports
// backends override them with.
func targetPorts(sp *ServiceSpec) []int32 {
	var out []int32
	for _, p := range sp.Ports {
		out = append(out, cmp.Or(p.TargetPort, p.Port))
	}
	for _, b := range sp.Backends {
		if b.Port != 0 {
			out = append(out, b.Port)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func portList(ports []int32) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = fmt.Sprint(p)
	}
	return strings.Join(s, ", ")
}
