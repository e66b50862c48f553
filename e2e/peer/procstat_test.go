package peer

import (
	"testing"
	"time"
)

// A real /proc/<pid>/stat line of a process whose name holds a space and a parenthesis.
const statLine = "4242 (kube (proxy) 1) S 7 4242 7 0 -1 4194560 9999 0 0 0 " +
	"250 120 30 5 20 0 12 0 1791377 3133440 384 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"

func TestParseStatCPUAddsThreadsAndWaitedChildren(t *testing.T) {
	got, err := parseStatCPU(statLine)
	if err != nil {
		t.Fatal(err)
	}
	// utime 250 + stime 120 + cutime 30 + cstime 5 ticks of 10 ms.
	if want := 4050 * time.Millisecond; got != want {
		t.Errorf("cpu = %v, want %v", got, want)
	}
	children, err := parseStatChildCPU(statLine)
	if err != nil || children != 350*time.Millisecond {
		t.Errorf("children's cpu = %v, %v; want 350ms", children, err)
	}
	if _, err := parseStatCPU("4242 (x) S 1 2"); err == nil {
		t.Error("a short stat line parsed")
	}
}

func TestParseStatPPIDKeepsTheWholeName(t *testing.T) {
	ppid, comm, err := parseStatPPID(statLine)
	if err != nil || ppid != 7 || comm != "kube (proxy) 1" {
		t.Errorf("ppid %d comm %q err %v", ppid, comm, err)
	}
}

func TestParseSchedstatIsNanoseconds(t *testing.T) {
	got, err := parseSchedstat("205918912 48071548 807\n")
	if err != nil || got != 205918912*time.Nanosecond {
		t.Errorf("schedstat = %v, %v", got, err)
	}
}

func TestParseStatusRSS(t *testing.T) {
	status := "Name:\tganglion-agent\nVmHWM:\t  40000 kB\nVmRSS:\t   30720 kB\nThreads:\t9\n"
	got, err := parseStatusRSS(status)
	if err != nil || got != 30 {
		t.Errorf("rss = %v MiB, %v; want 30", got, err)
	}
	if _, err := parseStatusRSS("Name:\tkthreadd\n"); err == nil {
		t.Error("a status without VmRSS (a kernel thread) parsed")
	}
}

func TestLogTimeFindsTheLineOfAMessage(t *testing.T) {
	out := "time=2026-12-01T06:33:13.100Z level=INFO msg=\"dataplane ready\"\n" +
		"time=2026-12-01T06:33:13.123Z level=INFO msg=\"agent starting\" node=peer-ganglion\n"
	got, ok := logTime(out, "agent starting")
	if want := time.Date(2026, 12, 1, 6, 33, 13, 123e6, time.UTC); !ok || !got.Equal(want) {
		t.Errorf("logTime = %v, %v; want %v", got, ok, want)
	}
	if _, ok := logTime(out, "agent stopping"); ok {
		t.Error("found a message the log does not hold")
	}
}

func TestTickAtIsTheTickerPeriodAfterItsStart(t *testing.T) {
	base := time.Unix(1000, 0)
	for _, c := range []struct{ at, want time.Duration }{
		{0, 30 * time.Second}, {10 * time.Second, 30 * time.Second}, {30 * time.Second, 30 * time.Second},
		{30*time.Second + time.Millisecond, 60 * time.Second}, {95 * time.Second, 120 * time.Second},
	} {
		if got := tickAt(base, 30*time.Second, base.Add(c.at)); !got.Equal(base.Add(c.want)) {
			t.Errorf("tick at or after +%v = +%v, want +%v", c.at, got.Sub(base), c.want)
		}
	}
}
