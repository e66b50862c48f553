package dns

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/ganglion-proxy/ganglion/internal/benchstat"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

const (
	benchServices  = 1000            // ClusterIP services in the zone
	benchClients   = 32              // concurrent UDP clients, one query in flight each
	benchRuns      = 5               // measured runs (benchstat: median and spread)
	benchWindow    = 2 * time.Second // each run's length
	benchFloorQPS  = 20000           // the floor
	benchTimeout   = 20 * time.Millisecond
	benchServerEnv = "GANGLION_DNS_BENCH_SERVER"
)

// benchVIP is service i's ClusterIP.
func benchVIP(i int) string { return fmt.Sprintf("10.96.%d.%d", i/250, 1+i%250) }

// TestMain runs the benchmark's server when BenchmarkDNS starts the test binary as one.
func TestMain(m *testing.M) {
	if os.Getenv(benchServerEnv) != "" {
		if err := benchServer(); err != nil {
			fmt.Fprintln(os.Stderr, "bench server:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// benchServer is the benchmark's server process, started with GOMAXPROCS=1 so that the figure
// is one agent's on one core. It serves until its stdin closes.
func benchServer() error {
	table := NewTable("cluster.local", DefaultTTL)
	ports := map[string]*v1.ServicePort{}
	for i := range benchServices {
		name := fmt.Sprintf("svc%d", i)
		ports["default/"+name+"/v4"] = clusterIP("default", name, "http", tcp, benchVIP(i)+":80")
	}
	table.updatePorts(ports)
	synced(table)
	srv, err := Listen(Config{Listen: []string{"127.0.0.1:0"}}, table)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _, _ = bufio.NewReader(os.Stdin).ReadString('\n'); cancel() }()
	fmt.Printf("listening %s\n", srv.Addrs()[0])
	srv.Serve(ctx)
	return nil
}

// BenchmarkDNS prints `BENCH dns qps=... p99_us=...`: answers per second from one server process
// limited to one core (GOMAXPROCS=1), asked over loopback UDP by concurrent clients each with one
// question in flight, over benchRuns windows. Every answer is checked: the right id, NOERROR and
// the asked service's VIP. Run it with -benchtime 1x.
func BenchmarkDNS(b *testing.B) {
	for range b.N {
		addr, pid, stop := startBenchServer(b)
		var qps []float64
		var p99 benchstat.Runs
		var cpu, perCPU []float64
		for run := 0; run <= benchRuns; run++ {
			cpu0 := cpuTime(b, pid)
			n, lat := benchWindowRun(b, addr)
			used := (cpuTime(b, pid) - cpu0).Seconds()
			if run == 0 {
				continue // warm-up: sockets, caches, the CPU's frequency
			}
			qps = append(qps, float64(n)/benchWindow.Seconds())
			p99 = append(p99, lat)
			cpu = append(cpu, used/benchWindow.Seconds())
			perCPU = append(perCPU, float64(n)/max(used, 0.01))
		}
		stop()
		slices.Sort(qps)
		slices.Sort(cpu)
		slices.Sort(perCPU)
		med := qps[len(qps)/2]
		if med < benchFloorQPS {
			b.Fatalf("median %.0f answers/s (runs %v) is under the floor %d", med, qps, benchFloorQPS)
		}
		// server_cores below 1 means other processes had part of the core: answers_per_cpu_s is
		// then the figure a whole core would give.
		fmt.Printf("BENCH dns qps=%.0f qps_min=%.0f qps_max=%.0f %s server_cores=%.2f answers_per_cpu_s=%.0f services=%d clients=%d runs=%d\n",
			med, qps[0], qps[len(qps)-1], p99.UsKeys("p99_us"), cpu[len(cpu)/2], perCPU[len(perCPU)/2], benchServices, benchClients, benchRuns)
	}
}

// startBenchServer runs benchServer in a child with GOMAXPROCS=1 and returns its address.
func startBenchServer(b *testing.B) (addr string, pid int, stop func()) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), benchServerEnv+"=1", "GOMAXPROCS=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "listening ") {
		_ = cmd.Process.Kill()
		b.Fatalf("bench server: %q %v", line, err)
	}
	return strings.TrimSpace(strings.TrimPrefix(line, "listening ")), cmd.Process.Pid, func() {
		stdin.Close()
		_ = cmd.Wait()
	}
}

// benchWindowRun asks for benchWindow from benchClients clients and returns the answers counted
// and the 99th percentile latency.
func benchWindowRun(b *testing.B, addr string) (int, time.Duration) {
	var mu sync.Mutex
	var all []time.Duration
	var wg sync.WaitGroup
	deadline := time.Now().Add(benchWindow)
	for c := range benchClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat, err := benchClient(addr, c, deadline)
			if err != nil {
				b.Error(err)
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if b.Failed() || len(all) == 0 {
		b.FailNow()
	}
	slices.Sort(all)
	return len(all), all[len(all)*99/100]
}

// benchClient asks for service names in turn until deadline and checks every answer; it returns
// each answer's latency. A question lost to an overfull socket is asked again, counted once.
func benchClient(addr string, c int, deadline time.Time) ([]time.Duration, error) {
	conn, err := net.Dial("udp", addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	var lat []time.Duration
	buf := make([]byte, 512)
	q := new(dns.Msg)
	for i := c; time.Now().Before(deadline); i += benchClients {
		svc := i % benchServices
		q.SetQuestion(fmt.Sprintf("svc%d.default.svc.cluster.local.", svc), dns.TypeA)
		q.Id = uint16(i)
		wire, err := q.Pack()
		if err != nil {
			return nil, err
		}
		start := time.Now()
		if _, err := conn.Write(wire); err != nil {
			return nil, err
		}
		_ = conn.SetReadDeadline(start.Add(benchTimeout))
		m, err := await(conn, buf, q.Id)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			continue
		}
		if err != nil {
			return nil, err
		}
		took := time.Since(start)
		if err := checkBenchAnswer(m, svc); err != nil {
			return nil, err
		}
		lat = append(lat, took)
	}
	return lat, nil
}

// await reads until the answer to id comes, skipping late answers to questions given up on.
func await(conn net.Conn, buf []byte, id uint16) (*dns.Msg, error) {
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return nil, err
		}
		m := new(dns.Msg)
		if err := m.Unpack(buf[:n]); err != nil {
			return nil, err
		}
		if m.Id == id {
			return m, nil
		}
	}
}

func checkBenchAnswer(m *dns.Msg, svc int) error {
	if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
		return fmt.Errorf("svc%d: %s with %d answers", svc, dns.RcodeToString[m.Rcode], len(m.Answer))
	}
	if a, ok := m.Answer[0].(*dns.A); !ok || a.A.String() != benchVIP(svc) {
		return fmt.Errorf("svc%d answered %v, want %s", svc, m.Answer[0], benchVIP(svc))
	}
	return nil
}

// cpuTime is a process's user and system time so far, from /proc.
func cpuTime(b *testing.B, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name (which may hold spaces), from field 3: utime and stime are 14
	// and 15, in clock ticks (100 per second on Linux).
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	utime, _ := strconv.Atoi(f[11])
	stime, _ := strconv.Atoi(f[12])
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// BenchmarkZoneChange measures what an applied change of one service costs an agent with DNS
// on, in a zone of 10,000 ClusterIP services: its records rebuilt and a new zone swapped in.
func BenchmarkZoneChange(b *testing.B) {
	table := NewTable("cluster.local", DefaultTTL)
	ports := map[string]*v1.ServicePort{}
	for i := range 10000 {
		name := fmt.Sprintf("svc%d", i)
		ports["default/"+name+"/v4"] = clusterIP("default", name, "http", tcp, fmt.Sprintf("10.%d.%d.%d:80", 96+i/62500, i/250%250, 1+i%250))
	}
	table.updatePorts(ports)
	b.ResetTimer()
	for i := range b.N {
		vip := fmt.Sprintf("10.200.0.%d:80", 1+i%2)
		table.updatePorts(map[string]*v1.ServicePort{"default/svc1/v4": clusterIP("default", "svc1", "http", tcp, vip)})
	}
}
