package syn

// SendStamps reports how many of the SYNs p's IPv4 path sent were timed by
// the kernel's send timestamp, and how many by the clock before sendmsg.
func SendStamps(p *Prober) (stamped, unstamped uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pa := p.paths[0]; pa != nil {
		return pa.stamped.Load(), pa.unstamped.Load()
	}
	return 0, 0
}
