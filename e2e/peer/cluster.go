package peer

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// The generated cluster: services with EndpointSlices written as the EndpointSlice controller
// would (there is none), every endpoint on a third node that runs no proxy, so both proxied
// nodes see every endpoint as remote.
const (
	// NodeKubeProxy and NodeGanglion are the proxied nodes; NodePods holds the endpoints.
	NodeKubeProxy = "peer-kube-proxy"
	NodeGanglion  = "peer-ganglion"
	NodePods      = "peer-pods"
	// ClusterCIDR holds every endpoint address, the first ones and those changes bring in.
	ClusterCIDR = "10.128.0.0/12"
	// EndpointsPerService is how many endpoints each service has.
	EndpointsPerService = 5
	// PodPort is the endpoints' port, ServicePort the services'.
	PodPort     = 8080
	ServicePort = 80
	namespace   = "default"
)

// ServiceName is service i's name.
func ServiceName(i int) string { return fmt.Sprintf("svc-%05d", i) }

// ClusterIP is service i's address, 10.96.10.10 onwards, 200 per /24 (10,000 fit up to 10.96.59.x):
// it avoids 10.96.0.1, which the API server gives its own kubernetes Service.
func ClusterIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 96, byte(10 + i/200), byte(10 + i%200)})
}

// EndpointIP is endpoint k of service i in the loaded cluster: 10.128.0.0 onwards.
func EndpointIP(i, k int) netip.Addr { return offset(10<<24|128<<16, i*EndpointsPerService+k) }

// ChangeIP is the address change c brings in: 10.136.0.0 onwards, never one loaded.
func ChangeIP(c int) netip.Addr { return offset(10<<24|136<<16, c) }

func offset(base uint32, n int) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], base+uint32(n))
	return netip.AddrFrom4(b)
}

// Cluster writes the generated services through the API and keeps each EndpointSlice as last
// written, so a change is one write (its resourceVersion is known) with no read before it.
type Cluster struct {
	client clientset.Interface
	mu     sync.Mutex
	slices []*discoveryv1.EndpointSlice
}

// NewCluster writes through client.
func NewCluster(client clientset.Interface) *Cluster { return &Cluster{client: client} }

// Len is how many services are loaded.
func (c *Cluster) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.slices)
}

// CreateNode registers a ready node with its internal address, as a kubelet would.
func (c *Cluster) CreateNode(ctx context.Context, name, ip string) error {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelHostname: name}},
		Status: corev1.NodeStatus{
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		},
	}
	_, err := c.client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
	return err
}

// Load creates services Len() to n-1, each with its EndpointSlice, on workers concurrent
// writers. The client's own rate limit must allow it (raise QPS and Burst).
func (c *Cluster) Load(ctx context.Context, n, workers int) error {
	from := c.Len()
	if n <= from {
		return nil
	}
	c.mu.Lock()
	c.slices = append(c.slices, make([]*discoveryv1.EndpointSlice, n-from)...)
	c.mu.Unlock()
	next := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				sl, err := c.create(ctx, i)
				if err != nil {
					errs <- err
					return
				}
				c.mu.Lock()
				c.slices[i] = sl
				c.mu.Unlock()
			}
		})
	}
	var err error
feed:
	for i := from; i < n; i++ {
		select {
		case next <- i:
		case err = <-errs:
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return err
}

func (c *Cluster) create(ctx context.Context, i int) (*discoveryv1.EndpointSlice, error) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: ServiceName(i)},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeClusterIP, ClusterIP: ClusterIP(i).String(),
			Ports: []corev1.ServicePort{{Name: "p", Port: ServicePort, TargetPort: intstr.FromInt32(PodPort), Protocol: corev1.ProtocolTCP}},
		},
	}
	if _, err := c.client.CoreV1().Services(namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("create service %s: %w", svc.Name, err)
	}
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: ServiceName(i) + "-peer",
			Labels: map[string]string{discoveryv1.LabelServiceName: svc.Name, discoveryv1.LabelManagedBy: "peer.ganglion-proxy.io"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("p"), Port: ptr.To[int32](PodPort), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for k := range EndpointsPerService {
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{EndpointIP(i, k).String()},
			NodeName:   ptr.To(NodePods),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
		})
	}
	out, err := c.client.DiscoveryV1().EndpointSlices(namespace).Create(ctx, sl, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create endpointslice %s: %w", sl.Name, err)
	}
	return out, nil
}

// triggerTime is the annotation the EndpointSlice controller sets to when a change began: each
// proxy measures its own network programming latency from it (kube-proxy's
// kubeproxy_network_programming_duration_seconds, the brain's
// ganglion_network_programming_duration_seconds), a cross-check of the monitor's figures.
const triggerTime = "endpoints.kubernetes.io/last-change-trigger-time"

// Replace gives endpoint k of service i the address addr, a change that began at trigger: one
// EndpointSlice update, the change both proxies are timed on.
func (c *Cluster) Replace(ctx context.Context, i, k int, addr netip.Addr, trigger time.Time) error {
	c.mu.Lock()
	sl := c.slices[i].DeepCopy()
	c.mu.Unlock()
	sl.Endpoints[k].Addresses = []string{addr.String()}
	if sl.Annotations == nil {
		sl.Annotations = map[string]string{}
	}
	sl.Annotations[triggerTime] = trigger.UTC().Format(time.RFC3339Nano)
	out, err := c.client.DiscoveryV1().EndpointSlices(namespace).Update(ctx, sl, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("update endpointslice %s: %w", sl.Name, err)
	}
	c.mu.Lock()
	c.slices[i] = out
	c.mu.Unlock()
	return nil
}
