package kernel

import (
	"strings"
	"testing"
	"time"
)

// defaults are a kernel 6.x's own values (this machine's).
func defaults() Sysctls {
	return Sysctls{
		"net.ipv4.ip_local_port_range":     "32768 60999",
		"net.ipv4.tcp_syn_retries":         "6",
		"net.ipv4.tcp_synack_retries":      "5",
		"net.ipv4.tcp_syn_linear_timeouts": "4",
		"net.ipv4.tcp_keepalive_time":      "7200",
		"net.ipv4.tcp_tw_reuse":            "2",
		"net.ipv4.tcp_timestamps":          "1",
		"net.ipv4.tcp_syncookies":          "1",
	}
}

func with(kv ...string) Sysctls {
	s := defaults()
	for i := 0; i < len(kv); i += 2 {
		s[kv[i]] = kv[i+1]
	}
	return s
}

func TestLint(t *testing.T) {
	tests := []struct {
		name string
		s    Sysctls
		cfg  LintConfig
		want []string // "key: problem substring", in order
	}{
		{"kernel defaults are quiet", defaults(), LintConfig{}, nil},
		{"overlapping port range (incident 002)", with("net.ipv4.ip_local_port_range", "1024 65535"), LintConfig{},
			[]string{"net.ipv4.ip_local_port_range: ephemeral ports 1024-65535 overlap the NodePort range 30000-32767"}},
		{"range touching the NodePort range at one end", with("net.ipv4.ip_local_port_range", "32767 60999"), LintConfig{},
			[]string{"net.ipv4.ip_local_port_range: overlap"}},
		{"overlap fully reserved (the fix lint suggests)", with("net.ipv4.ip_local_port_range", "1024 65535", "net.ipv4.ip_local_reserved_ports", "30000-32767"), LintConfig{}, nil},
		{"overlap reserved in pieces", with("net.ipv4.ip_local_port_range", "1024 65535", "net.ipv4.ip_local_reserved_ports", "8080,30000-31000,31001-32767"), LintConfig{}, nil},
		{"overlap partly reserved", with("net.ipv4.ip_local_port_range", "1024 65535", "net.ipv4.ip_local_reserved_ports", "30000-31999,32500"), LintConfig{},
			[]string{"net.ipv4.ip_local_port_range: leaves 32000-32499,32501-32767 unreserved"}},
		{"malformed reserved ports", with("net.ipv4.ip_local_port_range", "1024 65535", "net.ipv4.ip_local_reserved_ports", "30000-x"), LintConfig{},
			[]string{"net.ipv4.ip_local_reserved_ports: not understood"}},
		{"custom NodePort range", with("net.ipv4.ip_local_port_range", "20000 25000"), LintConfig{NodePortLow: 24000, NodePortHigh: 24999},
			[]string{"net.ipv4.ip_local_port_range: overlap the NodePort range 24000-24999"}},
		{"127 s connect budget with classic backoff", with("net.ipv4.tcp_syn_linear_timeouts", "0"), LintConfig{},
			[]string{"net.ipv4.tcp_syn_retries: hangs 2m7s"}},
		{"127 s connect budget on a kernel without linear timeouts", func() Sysctls { s := defaults(); delete(s, "net.ipv4.tcp_syn_linear_timeouts"); return s }(), LintConfig{},
			[]string{"net.ipv4.tcp_syn_retries: hangs 2m7s"}},
		{"many SYN retries even with linear timeouts", with("net.ipv4.tcp_syn_retries", "9"), LintConfig{},
			[]string{"net.ipv4.tcp_syn_retries: hangs 1m7s"}},
		{"synack retries", with("net.ipv4.tcp_synack_retries", "6"), LintConfig{},
			[]string{"net.ipv4.tcp_synack_retries: retransmitting an unacknowledged SYN/ACK 1m3s"}},
		{"keepalive longer than the IPVS timeout", with(IPVSKey, "1"), LintConfig{},
			[]string{"net.ipv4.tcp_keepalive_time: not shorter than the path's idle timeout 15m0s"}},
		{"keepalive vs configured path timeout", with("net.ipv4.tcp_keepalive_time", "600"), LintConfig{PathIdleTimeout: 300 * time.Second},
			[]string{"net.ipv4.tcp_keepalive_time: 10m0s idle"}},
		{"keepalive fine under IPVS", with(IPVSKey, "1", "net.ipv4.tcp_keepalive_time", "600"), LintConfig{}, nil},
		{"tw_reuse everywhere", with("net.ipv4.tcp_tw_reuse", "1"), LintConfig{}, []string{"net.ipv4.tcp_tw_reuse: reused"}},
		{"tw_recycle on an old kernel", with("net.ipv4.tcp_tw_recycle", "1"), LintConfig{}, []string{"net.ipv4.tcp_tw_recycle: recycling is on"}},
		{"timestamps behind NAT", defaults(), LintConfig{NAT: true}, []string{"net.ipv4.tcp_timestamps: shared NAT"}},
		{"malformed values", with("net.ipv4.ip_local_port_range", "65535", "net.ipv4.tcp_syn_retries", "x"), LintConfig{},
			[]string{"net.ipv4.ip_local_port_range: not understood", "net.ipv4.tcp_syn_retries: not understood"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Lint(tt.s, tt.cfg)
			if len(got) != len(tt.want) {
				t.Fatalf("Lint() = %d findings %v, want %d %q", len(got), got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				key, sub, _ := strings.Cut(w, ": ")
				if got[i].Key != key || !containsWords(got[i].Problem, sub) {
					t.Errorf("finding %d = %s: %q, want %s: %q", i, got[i].Key, got[i].Problem, key, sub)
				}
				if got[i].Why == "" || got[i].Fix == "" {
					t.Errorf("finding %d lacks why or fix: %+v", i, got[i])
				}
			}
		})
	}
}

// containsWords reports whether every word of sub appears in s.
func containsWords(s, sub string) bool {
	for _, w := range strings.Fields(sub) {
		if !strings.Contains(s, w) {
			return false
		}
	}
	return true
}

func TestSynBudget(t *testing.T) {
	tests := []struct {
		n, linear int
		want      time.Duration
	}{
		{6, 0, 127 * time.Second}, // 1+2+4+8+16+32+64
		{6, 4, 11 * time.Second},  // SYNs at 0,1,2,3,4,5,7; gives up at 11 s
		{2, 0, 7 * time.Second},
		{0, 0, time.Second},
	}
	for _, tt := range tests {
		if got := SynBudget(tt.n, tt.linear); got != tt.want {
			t.Errorf("SynBudget(%d, %d) = %s, want %s", tt.n, tt.linear, got, tt.want)
		}
	}
	if got, want := SynAckBudget(5), 31*time.Second; got != want {
		t.Errorf("SynAckBudget(5) = %s, want %s", got, want)
	}
}

func TestParsePortRange(t *testing.T) {
	if lo, hi, err := ParsePortRange("30000-32767"); err != nil || lo != 30000 || hi != 32767 {
		t.Errorf("ParsePortRange = %d, %d, %v", lo, hi, err)
	}
	for _, bad := range []string{"", "30000", "2-1", "1-70000", "a-b"} {
		if _, _, err := ParsePortRange(bad); err == nil {
			t.Errorf("ParsePortRange(%q) = nil error", bad)
		}
	}
}

func TestSynAckFindingExplainsTheSynAckBudget(t *testing.T) {
	got := Lint(with("net.ipv4.tcp_synack_retries", "6"), LintConfig{})
	if len(got) != 1 {
		t.Fatalf("Lint() = %v, want one finding", got)
	}
	why := got[0].Why
	for _, want := range []string{"tcp_synack_retries=6", "0,1,3,7,15,31,63 s", "1m3s"} {
		if !strings.Contains(why, want) {
			t.Errorf("why = %q, want it to contain %q", why, want)
		}
	}
	if strings.Contains(why, "tcp_syn_retries") || strings.Contains(why, "127 s") {
		t.Errorf("why = %q talks about the SYN retries, not the SYN/ACK retries", why)
	}
	syn := Lint(with("net.ipv4.tcp_syn_retries", "9"), LintConfig{})
	if len(syn) != 1 || !strings.Contains(syn[0].Why, "tcp_syn_retries=9 sends SYNs at 0,1,2,3,4,5,7,11,19,35 s") {
		t.Errorf("syn retries finding = %v, want the SYN ladder with linear timeouts", syn)
	}
}
