package probe

import "time"

// SetTick shortens one period second so that tests see many periods quickly; call it before the
// first Update.
func (p *Prober) SetTick(d time.Duration) { p.tick = d }
