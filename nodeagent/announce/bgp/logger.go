package bgp

import (
	"context"
	"log/slog"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
)

// slogAdapter hands GoBGP's logging to the agent's slog logger. GoBGP narrates every session
// step at info level; the agent logs peer state changes itself, so GoBGP's info and debug go to
// debug, and its warnings and errors keep their level.
type slogAdapter struct{ l *slog.Logger }

var _ gobgplog.Logger = slogAdapter{}

func attrs(f gobgplog.Fields) []any {
	out := make([]any, 0, 2*len(f))
	for k, v := range f {
		out = append(out, k, v)
	}
	return out
}

// Panic keeps GoBGP's contract (the call does not return).
func (a slogAdapter) Panic(msg string, f gobgplog.Fields) {
	a.l.Error(msg, attrs(f)...)
	panic(msg)
}

// Fatal logs without exiting: GoBGP calls it only where its gRPC listener fails, which the
// speaker never starts, and a library must not end the agent.
func (a slogAdapter) Fatal(msg string, f gobgplog.Fields) { a.l.Error(msg, attrs(f)...) }

// Error logs at error level.
func (a slogAdapter) Error(msg string, f gobgplog.Fields) { a.l.Error(msg, attrs(f)...) }

// Warn logs at warn level.
func (a slogAdapter) Warn(msg string, f gobgplog.Fields) { a.l.Warn(msg, attrs(f)...) }

// Info logs at debug level (see slogAdapter).
func (a slogAdapter) Info(msg string, f gobgplog.Fields) { a.l.Debug(msg, attrs(f)...) }

// Debug logs at debug level.
func (a slogAdapter) Debug(msg string, f gobgplog.Fields) { a.l.Debug(msg, attrs(f)...) }

// SetLevel is ignored: the slog handler decides.
func (a slogAdapter) SetLevel(gobgplog.LogLevel) {}

// GetLevel tells GoBGP whether debug output is wanted, so it skips building messages nobody
// reads.
func (a slogAdapter) GetLevel() gobgplog.LogLevel {
	if a.l.Enabled(context.Background(), slog.LevelDebug) {
		return gobgplog.DebugLevel
	}
	return gobgplog.InfoLevel
}
