package kubernetes

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The documented `kubeconfig: ~/.kube/config` is the user's home, as in a
// shell; ~user/ is refused with a reason rather than read as a relative
// path.
func TestNewClientExpandsHome(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	cfg := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`
	if err := os.MkdirAll(filepath.Join(home, ".kube"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".kube", "config"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewClient("~/.kube/config"); err != nil {
		t.Fatalf("NewClient(~/.kube/config) with the file in $HOME: %v", err)
	}
	_, err := NewClient("~bob/.kube/config")
	if err == nil || !strings.Contains(err.Error(), "only ~/ (your own home directory) is expanded") {
		t.Fatalf("NewClient(~bob/...) = %v, want the ~user error", err)
	}
	if _, err := New(nil, Config{Role: RoleService, Kubeconfig: "~bob/cfg"}, Options{}); err == nil {
		t.Error("New accepted kubeconfig ~bob/cfg")
	}
}
