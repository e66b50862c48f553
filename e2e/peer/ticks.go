package peer

import (
	"strings"
	"time"
)

// logTime is the time of the first line of a log in Go's slog text format (time=... msg=...)
// whose message is msg.
func logTime(output, msg string) (time.Time, bool) {
	for line := range strings.Lines(output) {
		if !strings.Contains(line, `msg="`+msg+`"`) && !strings.Contains(line, "msg="+msg+" ") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "time="); ok {
				t, err := time.Parse(time.RFC3339Nano, v)
				return t, err == nil
			}
		}
	}
	return time.Time{}, false
}

// tickAt is the first tick at or after at of a ticker started at base with period every (its
// first tick is base+every).
func tickAt(base time.Time, every time.Duration, at time.Time) time.Time {
	k := max(1, (at.Sub(base)+every-1)/every)
	return base.Add(k * every)
}
