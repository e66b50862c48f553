package kube

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// announceClass is the loadBalancerClass the brains announce; Kubernetes mode announces nothing
// else, so it never fights another load-balancer implementation over an address.
const announceClass = "ganglion-proxy.io/lb"

// announceConfig writes the brains' --announce-config: ARP for our class only.
func (c *cluster) announceConfig() string {
	p := filepath.Join(c.top.TempDir(), "announce.yaml")
	if err := os.WriteFile(p, []byte("l2: true\nloadBalancerClasses: ["+announceClass+"]\n"), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return p
}

// createLoadBalancer creates a LoadBalancer service of class and writes its ingress address into
// its status, as the class's IPAM controller would.
func (c *cluster) createLoadBalancer(name, class, ip string) {
	c.t.Helper()
	svcs := c.api.client.CoreV1().Services("default")
	obj, err := svcs.Create(context.Background(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: ptr.To(class),
			Ports: []corev1.ServicePort{{Name: "p", Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatalf("create service %s: %v", name, err)
	}
	obj.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip}}
	if _, err := svcs.UpdateStatus(context.Background(), obj, metav1.UpdateOptions{}); err != nil {
		c.t.Fatalf("status of service %s: %v", name, err)
	}
}

// testAnnounce: an outside client on the nodes' segment reaches a load balancer of our class
// through the node that answers ARP for it; one of another class is left to its announcer, and
// nobody answers for it.
func (c *cluster) testAnnounce(t *testing.T) {
	const ours, theirs = "192.168.77.201", "192.168.77.202"
	c.createLoadBalancer("lb-ours", announceClass, ours)
	c.createLoadBalancer("lb-theirs", "example.com/other-lb", theirs)
	for _, s := range []string{"lb-ours", "lb-theirs"} {
		c.setEndpoints(s, ep{node: 1, pod: 0}, ep{node: 2, pod: 0}, ep{node: 3, pod: 0})
	}
	c.eventually("the client reaches "+ours+" over ARP", func() bool {
		_, err := c.lab.Client.AskTCP(net.JoinHostPort(ours, "80"))
		return err == nil
	})
	// The same brains and nodes that answered ours have had as long for theirs.
	if _, err := c.lab.Client.DialNet("tcp", net.JoinHostPort(theirs, "80"), 2*time.Second); err == nil {
		t.Fatalf("%s, of another loadBalancerClass, answered: Ganglion announced an address it does not own", theirs)
	}
	if out := c.lab.Client.Run(t, "ip", "neigh", "show", theirs); strings.Contains(out, "lladdr") {
		t.Fatalf("a node answered ARP for %s of another class: %s", theirs, out)
	}
}
