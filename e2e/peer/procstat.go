package peer

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of /proc/<pid>/stat's CPU times (sysconf(_SC_CLK_TCK), 100 on Linux).
const userHZ = 100

// parseStatCPU is the CPU time in a /proc/<pid>/stat line: user and system time of every thread
// (utime, stime) and of the children it waited for (cutime, cstime). The children count: each of
// kube-proxy's syncs runs the nft binary, and that is its background work as much as its own.
func parseStatCPU(stat string) (time.Duration, error) {
	// comm, the second field, is in parentheses and may hold spaces or parentheses itself.
	end := strings.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, fmt.Errorf("stat: no command field in %q", stat)
	}
	f := strings.Fields(stat[end+1:])
	// After comm: state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17).
	const first = 14 - 3
	if len(f) < first+4 {
		return 0, fmt.Errorf("stat: %d fields after the command", len(f))
	}
	var ticks int64
	for _, s := range f[first : first+4] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("stat: %w", err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// parseStatPPID is the parent process id and the command name of a /proc/<pid>/stat line.
func parseStatPPID(stat string) (ppid int, comm string, err error) {
	start, end := strings.IndexByte(stat, '('), strings.LastIndexByte(stat, ')')
	if start < 0 || end < start {
		return 0, "", fmt.Errorf("stat: no command field in %q", stat)
	}
	f := strings.Fields(stat[end+1:])
	if len(f) < 2 {
		return 0, "", fmt.Errorf("stat: %d fields after the command", len(f))
	}
	ppid, err = strconv.Atoi(f[1])
	return ppid, stat[start+1 : end], err
}

// parseStatusRSS is VmRSS of a /proc/<pid>/status, in MiB.
func parseStatusRSS(status string) (float64, error) {
	for line := range strings.Lines(status) {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("status: VmRSS %q", strings.TrimSpace(rest))
		}
		kib, err := strconv.ParseFloat(f[0], 64)
		return kib / 1024, err
	}
	return 0, fmt.Errorf("status: no VmRSS")
}

// parseStatChildCPU is the CPU time of the waited-for children in a /proc/<pid>/stat line
// (cutime, cstime).
func parseStatChildCPU(stat string) (time.Duration, error) {
	all, err := parseStatCPU(stat)
	if err != nil {
		return 0, err
	}
	own, err := parseStatCPU(zeroChildCPU(stat))
	return all - own, err
}

// zeroChildCPU is stat with cutime and cstime set to 0.
func zeroChildCPU(stat string) string {
	end := strings.LastIndexByte(stat, ')')
	f := strings.Fields(stat[end+1:])
	if len(f) >= 15 {
		f[13], f[14] = "0", "0"
	}
	return stat[:end+1] + " " + strings.Join(f, " ")
}

// parseSchedstat is the time on CPU in a /proc/<pid>/task/<tid>/schedstat line, in
// nanoseconds where /proc/<pid>/stat counts 10 ms ticks: a change costs a few milliseconds.
func parseSchedstat(s string) (time.Duration, error) {
	f := strings.Fields(s)
	if len(f) < 1 {
		return 0, fmt.Errorf("schedstat: %q", s)
	}
	ns, err := strconv.ParseInt(f[0], 10, 64)
	return time.Duration(ns), err
}

// CPUOf is the CPU time pid and its waited-for children have used so far: its threads' time on
// CPU from schedstat (nanoseconds), and the children's from stat (ticks; the nft processes a
// kube-proxy sync runs). A thread that has exited takes its schedstat with it; Go programs keep
// their threads, and stat's own ticks are the fallback when no thread can be read.
func CPUOf(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	children, err := parseStatChildCPU(string(b))
	if err != nil {
		return 0, err
	}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/[0-9]*/schedstat", pid))
	var threads time.Duration
	read := 0
	for _, p := range tasks {
		s, err := os.ReadFile(p)
		if err != nil {
			continue // the thread ended meanwhile
		}
		d, err := parseSchedstat(string(s))
		if err != nil {
			return 0, err
		}
		threads += d
		read++
	}
	if read == 0 {
		return parseStatCPU(string(b))
	}
	return threads + children, nil
}

// RSSOf is pid's resident set size in MiB.
func RSSOf(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseStatusRSS(string(b))
}

// ChildPID finds the process this one started whose command name is comm (the kernel keeps the
// first 15 bytes of a program's name). "ip netns exec" execs the program it runs, so that
// process is our child.
func ChildPID(comm string) (int, error) {
	comm = comm[:min(len(comm), 15)]
	paths, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		ppid, c, err := parseStatPPID(string(b))
		if err == nil && ppid == os.Getpid() && c == comm {
			return strconv.Atoi(filepath.Base(filepath.Dir(p)))
		}
	}
	return 0, fmt.Errorf("no child process %q", comm)
}
