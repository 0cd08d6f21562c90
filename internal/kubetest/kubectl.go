package kubetest

import (
	"fmt"
	"os"
	"path/filepath"
)

// AdminKubeconfig writes a kubeconfig for the admin client certificate
// (group system:masters) into dir and returns its path: for running
// kubectl against the cluster as an administrator would.
func (c *Cluster) AdminKubeconfig(dir string) (string, error) {
	path := filepath.Join(dir, "admin.kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kubetest
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: admin
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: kubetest
  context: {cluster: kubetest, user: admin}
current-context: kubetest
`, c.Host, filepath.Join(c.Dir, "ca.crt"), filepath.Join(c.Dir, "admin.crt"), filepath.Join(c.Dir, "admin.key"))
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return "", fmt.Errorf("kubetest: %w", err)
	}
	return path, nil
}
