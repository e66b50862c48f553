package nftables

// kernel is the seam between the executor and nf_tables. The executor commits plans through it
// and reads tables back through it; netlinkKernel is the real one, Fake an in-memory one that
// applies the same operations.
type kernel interface {
	tableReader
	// commit sends every family's operations of p as one transaction: the kernel applies all of
	// them or none.
	commit(p *Plan) error
	// generation returns the ruleset's generation, which every committed transaction (anyone's,
	// on any table) moves: equal generations mean nothing was committed in between.
	generation() (uint32, error)
	// forget deletes the UDP conntrack entries jobs describe.
	forget(jobs []conntrackJob) error
	// close releases the kernel's handles; the tables stay.
	close() error
}

var (
	_ kernel = (*netlinkKernel)(nil)
	_ kernel = (*Fake)(nil)
)
