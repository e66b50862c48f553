// Command demo shows Ganglion's bare-metal mode end to end on this machine (root needed): two
// nodes and three backends in network namespaces, the brain with its embedded etcd, one nftables
// agent per node, a service applied with ganglionctl, requests through its VIP, a backend whose
// health check fails and comes back. It removes everything it made, also when it fails.
//
// The same binary plays the backends and the client when re-executed with a role argument.
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	vip       = "10.96.0.80"
	brainAddr = "192.168.90.1:7070"
	runs      = 30
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "backend":
			backend(os.Args[2], os.Args[3])
			return
		case "ask":
			ask(os.Args[2], os.Args[3])
			return
		}
	}
	d := &demo{id: fmt.Sprintf("gd%d", os.Getpid()%100000)}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() { <-sig; d.cleanup(); os.Exit(1) }()
	err := d.run()
	d.cleanup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

// backend serves "<name>" on every path, and /healthz with the status in the file healthFile
// (200 when it is missing), so the demo can make its check fail.
func backend(name, healthFile string) {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			if b, err := os.ReadFile(healthFile); err == nil && strings.TrimSpace(string(b)) != "200" {
				w.WriteHeader(http.StatusInternalServerError)
				return
			}
		}
		fmt.Fprintln(w, name)
	})
	if err := http.ListenAndServe(":8080", nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// ask sends n requests to url and prints one answer per line.
func ask(url, n string) {
	var count int
	fmt.Sscan(n, &count)
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for range count {
		resp, err := c.Get(url)
		if err != nil {
			fmt.Println("error")
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(strings.TrimSpace(string(b)))
	}
}

type demo struct {
	id      string
	dir     string
	procs   []*exec.Cmd
	netns   []string
	steps   atomic.Int32
	summary []string
}

func (d *demo) step(format string, args ...any) {
	fmt.Printf("[%d] %s\n", d.steps.Add(1), fmt.Sprintf(format, args...))
}

func (d *demo) sh(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

func (d *demo) in(ns string, args ...string) error {
	return d.sh(append([]string{"ip", "netns", "exec", ns}, args...)...)
}

func (d *demo) ns(name string) (string, error) {
	full := d.id + name
	if err := d.sh("ip", "netns", "add", full); err != nil {
		return "", err
	}
	d.netns = append(d.netns, full)
	return full, d.in(full, "ip", "link", "set", "lo", "up")
}

func (d *demo) start(ns, logName string, args ...string) error {
	log, err := os.Create(filepath.Join(d.dir, logName+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return err
	}
	d.procs = append(d.procs, cmd)
	return nil
}

func (d *demo) cleanup() {
	for i := len(d.procs) - 1; i >= 0; i-- {
		_ = d.procs[i].Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func(c *exec.Cmd) { _ = c.Wait(); close(done) }(d.procs[i])
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			_ = d.procs[i].Process.Kill()
		}
	}
	d.procs = nil
	for _, n := range d.netns {
		_ = exec.Command("ip", "netns", "del", n).Run()
	}
	d.netns = nil
	if d.dir != "" {
		_ = os.RemoveAll(d.dir)
	}
}

// spread asks the VIP from node 1 and counts the answers per backend.
func (d *demo) spread(node string) (map[string]int, error) {
	self, _ := os.Executable()
	out, err := exec.Command("ip", "netns", "exec", node, self, "ask", "http://"+vip+"/", fmt.Sprint(runs)).Output()
	if err != nil {
		return nil, err
	}
	counts := map[string]int{}
	for _, l := range strings.Fields(string(out)) {
		counts[l]++
	}
	return counts, nil
}

func show(counts map[string]int) string {
	var keys []string
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, counts[k]))
	}
	return strings.Join(parts, " ")
}

func (d *demo) waitFor(what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out waiting for %s (last error: %v)", what, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}
