package proc

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/ganglion-proxy/ganglion/internal/testenv"
	"github.com/ganglion-proxy/ganglion/internal/testpki"
)

// Ctl runs ganglionctl with args, adding env to this process's environment, and returns what
// it printed; err is its exit status.
func Ctl(t testing.TB, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(Binaries(t), "ganglionctl"), args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Grpcurl runs the real grpcurl with args and returns what it printed; err is its exit status.
// It is found on PATH, else in the checkout's .bin/ where `make tools` puts it; without it the
// test skips (fails in CI).
func Grpcurl(t testing.TB, args ...string) (string, error) {
	t.Helper()
	path, err := exec.LookPath("grpcurl")
	if err != nil {
		path = filepath.Join(Root(), ".bin", "grpcurl")
		_, err = os.Stat(path)
		testenv.Require(t, err == nil, "grpcurl not found on PATH or in .bin/: run make tools")
	}
	out, err := exec.Command(path, args...).CombinedOutput()
	return string(out), err
}

// GrpcurlTLS are grpcurl's flags to trust the CA in caFile and, unless id is nil, to present id.
func GrpcurlTLS(caFile string, id *testpki.Pair) []string {
	args := []string{"-cacert", caFile}
	if id != nil {
		args = append(args, "-cert", id.Cert, "-key", id.Key)
	}
	return args
}

// HealthProtoset writes the descriptors of grpc.health.v1 to a file for grpcurl's -protoset: a
// peer without a certificate may not use reflection, so it brings the schema, as a load
// balancer's probe has it compiled in.
func HealthProtoset(t testing.TB) string {
	t.Helper()
	set := &descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{
		protodesc.ToFileDescriptorProto(healthpb.File_grpc_health_v1_health_proto),
	}}
	b, err := proto.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "health.protoset")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
