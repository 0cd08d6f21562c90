package inet

import "testing"

func TestICMPName(t *testing.T) {
	for _, tc := range []struct {
		v6        bool
		typ, code uint8
		want      string
	}{
		{false, 3, 1, "host-unreachable"},
		{false, 3, 9, "net-prohibited"},
		{false, 3, 10, "host-prohibited"}, // iptables --reject-with icmp-host-prohibited
		{false, 3, 13, "admin-prohibited"},
		{false, 3, 4, "frag-needed"},
		{false, 3, 99, "unreachable"},
		{false, 11, 0, "time-exceeded"},
		{false, 5, 0, "error"},
		{true, 1, 1, "admin-prohibited"},
		{true, 1, 2, "beyond-scope"},
		{true, 1, 5, "policy-fail"},
		{true, 1, 6, "reject-route"},
		{true, 1, 9, "unreachable"},
		{true, 3, 0, "time-exceeded"},
	} {
		if got := ICMPName(tc.v6, tc.typ, tc.code); got != tc.want {
			t.Errorf("ICMPName(v6=%v, %d, %d) = %q, want %q", tc.v6, tc.typ, tc.code, got, tc.want)
		}
	}
}
