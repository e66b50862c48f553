package proc

import (
	"bufio"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Metric reads a process's Prometheus text at url and returns the sum of the samples of name
// whose labels include every one of labels (each written as in the exposition: `key="value"`),
// and whether there was any.
func Metric(t testing.TB, url, name string, labels ...string) (float64, bool) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("metrics %s: %v", url, err)
	}
	defer resp.Body.Close()
	var sum float64
	found := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest == "" || (rest[0] != ' ' && rest[0] != '{')) {
			continue
		}
		set, value := "", rest
		if rest[0] == '{' {
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				continue
			}
			set, value = rest[1:end], rest[end+1:]
		}
		if !hasLabels(set, labels) {
			continue
		}
		f := strings.Fields(value)
		if len(f) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(f[0], 64); err == nil {
			sum, found = sum+v, true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("metrics %s: %v", url, err)
	}
	return sum, found
}

// hasLabels says whether the exposition's label set (`a="1",b="2"`) holds every one of want.
// Label values the tests look for hold no commas or quotes, so a split is enough.
func hasLabels(set string, want []string) bool {
	have := strings.Split(set, ",")
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}
