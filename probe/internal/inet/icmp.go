package inet

// ICMPName names an ICMP (v4) or ICMPv6 error, mostly with the words of
// nft's reject types (`reject with icmp type host-prohibited`), so the
// evidence points at the rule that sent it: codes 9, 10 and 13 are three
// different reject types (net-, host-, admin-prohibited).
func ICMPName(v6 bool, typ, code uint8) string {
	if v6 {
		switch {
		case typ == 1 && code == 0:
			return "no-route"
		case typ == 1 && code == 1:
			return "admin-prohibited"
		case typ == 1 && code == 2:
			return "beyond-scope"
		case typ == 1 && code == 3:
			return "address-unreachable"
		case typ == 1 && code == 4:
			return "port-unreachable"
		case typ == 1 && code == 5:
			return "policy-fail"
		case typ == 1 && code == 6:
			return "reject-route"
		case typ == 3:
			return "time-exceeded"
		}
		return "unreachable"
	}
	if typ == 3 {
		switch code {
		case 0:
			return "net-unreachable"
		case 1:
			return "host-unreachable"
		case 2:
			return "prot-unreachable"
		case 3:
			return "port-unreachable"
		case 4:
			return "frag-needed"
		case 9:
			return "net-prohibited"
		case 10:
			return "host-prohibited"
		case 13:
			return "admin-prohibited"
		}
		return "unreachable"
	}
	if typ == 11 {
		return "time-exceeded"
	}
	return "error"
}
