package auth

import (
	"strings"

	"github.com/ganglion-proxy/ganglion/internal/pki"
)

// anyone marks a method every peer may call, authenticated or not.
const anyone pki.Role = "*"

// policy is which roles may call each method, by full method name or by service prefix
// ("/pkg.Service/"). What it does not name, nobody may call.
var policy = map[string][]pki.Role{
	"/grpc.health.v1.Health/":                    {anyone},
	"/ganglion.v1.AgentService/Stream":           {pki.RoleNode},
	"/ganglion.v1.AdminService/Apply":            {pki.RoleAdmin},
	"/ganglion.v1.AdminService/Delete":           {pki.RoleAdmin},
	"/ganglion.v1.AdminService/Get":              {pki.RoleAdmin, pki.RoleReader},
	"/ganglion.v1.AdminService/Diff":             {pki.RoleAdmin, pki.RoleReader},
	"/ganglion.v1.InspectService/":               {pki.RoleAdmin, pki.RoleReader},
	"/grpc.reflection.v1.ServerReflection/":      {pki.RoleAdmin, pki.RoleReader},
	"/grpc.reflection.v1alpha.ServerReflection/": {pki.RoleAdmin, pki.RoleReader},
}

// allowed says whether id may call method.
func allowed(id Identity, method string) bool {
	roles, ok := policy[method]
	if !ok {
		if i := strings.LastIndexByte(method, '/'); i > 0 {
			roles = policy[method[:i+1]]
		}
	}
	for _, r := range roles {
		if r == anyone || (id.Role != "" && (r == id.Role || id.Via == insecureIdentity.Via)) {
			return true
		}
	}
	return false
}
