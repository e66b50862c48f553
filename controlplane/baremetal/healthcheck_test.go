package baremetal

import "testing"

func probing(check string) string {
	return native("  ports: [{port: 80, targetPort: 8080}]\n  healthCheck: " + check + "\n")
}

// TestHealthChecksAimOnlyAtTheirBackends: a probe path is a path, never a host; a port override
// is one of the backends' own ports; the scheme is HTTP or HTTPS; an exec check names its
// program by full path.
func TestHealthChecksAimOnlyAtTheirBackends(t *testing.T) {
	st := openStore(t)
	bad := []struct{ name, doc, want string }{
		{"user info", probing("{httpGet: {path: '@host'}}"), `spec.healthCheck.httpGet.path: "@host" is not an absolute path`},
		{"user info and path", probing("{httpGet: {path: 'evil.example@host/x'}}"), `spec.healthCheck.httpGet.path: "evil.example@host/x" is not an absolute path`},
		{"network path", probing("{httpGet: {path: '//evil/x'}}"), `spec.healthCheck.httpGet.path: "//evil/x" starts with //`},
		{"absolute URL", probing("{httpGet: {path: 'http://x/'}}"), `spec.healthCheck.httpGet.path: "http://x/" is not an absolute path`},
		{"relative path", probing("{httpGet: {path: healthz}}"), `spec.healthCheck.httpGet.path: "healthz" is not an absolute path`},
		{"fragment", probing("{httpGet: {path: '/a#b'}}"), `spec.healthCheck.httpGet.path: "/a#b" has a fragment`},
		{"space", probing("{httpGet: {path: '/a b'}}"), `spec.healthCheck.httpGet.path: "/a b" has a space or a control character`},
		{"control character", probing(`{httpGet: {path: "/a\r\nHost: evil"}}`), `spec.healthCheck.httpGet.path: "/a\r\nHost: evil" has a space or a control character`},
		{"backslash", probing(`{httpGet: {path: '/\evil/x'}}`), `spec.healthCheck.httpGet.path: "/\\evil/x" has a backslash`},
		{"another port", probing("{httpGet: {path: /healthz, port: 22}}"), "spec.healthCheck.httpGet.port: 22 is not a port of the service's backends (8080)"},
		{"the service port, not the target", probing("{httpGet: {port: 80}}"), "spec.healthCheck.httpGet.port: 80 is not a port of the service's backends (8080)"},
		{"TCP to another port", probing("{tcpSocket: {port: 6379}}"), "spec.healthCheck.tcpSocket.port: 6379 is not a port of the service's backends (8080)"},
		{"TCP port out of range", probing("{tcpSocket: {port: 70000}}"), "spec.healthCheck.tcpSocket.port: 70000 is not a port number"},
		{"scheme", probing("{httpGet: {scheme: FILE}}"), `spec.healthCheck.httpGet.scheme: "FILE" is not HTTP or HTTPS`},
		{"lowercase scheme", probing("{httpGet: {scheme: http}}"), `spec.healthCheck.httpGet.scheme: "http" is not HTTP or HTTPS`},
		{"exec by name", probing("{exec: {command: [check, --web]}}"), `spec.healthCheck.exec.command[0]: "check" is not an absolute path`},
		{"exec through a shell line", probing("{exec: {command: ['sh -c id']}}"), `spec.healthCheck.exec.command[0]: "sh -c id" is not an absolute path`},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) { rejects(t, st, DefaultSettings(), c.doc, c.want) })
	}
	good := []struct{ name, doc string }{
		{"plain path", probing("{httpGet: {path: /healthz, scheme: HTTPS}}")},
		{"no path", probing("{httpGet: {}}")},
		{"query", probing("{httpGet: {path: '/healthz?full=1&next=%2F%2Fx'}}")},
		{"@ after the first /", probing("{httpGet: {path: '/users/@me'}}")},
		{"target port", probing("{httpGet: {path: /, port: 8080}}")},
		{"TCP to the target port", probing("{tcpSocket: {port: 8080}}")},
		{"another port of the service", native("  ports: [{name: a, port: 80, targetPort: 8080}, {name: b, port: 81}]\n  healthCheck: {tcpSocket: {port: 81}}\n")},
		{"a backend's port override", native("  ports: [{port: 80}]\n  healthCheck: {httpGet: {port: 9000}}\n  backends: [{address: 10.1.0.5, port: 9000}]\n")},
	}
	for _, c := range good {
		t.Run(c.name, func(t *testing.T) {
			if _, err := applyWith(st, DefaultSettings(), true, c.doc); err != nil {
				t.Error(err)
			}
		})
	}
}
