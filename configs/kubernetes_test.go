package configs

import (
	"strings"
	"testing"
)

func TestKubernetesBlock(t *testing.T) {
	c, err := Load(t.Context(), "kubernetes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	k := c.Job("agent-mesh").Targets.Kubernetes
	if len(k) != 1 || k[0].Role != "pod" || k[0].Mesh.PeersPerNode != 3 || k[0].Ports[0] != "metrics" {
		t.Errorf("agent-mesh kubernetes block = %+v", k)
	}
	_, err = Load(t.Context(), "testdata/k8s-bad.yaml")
	want := strings.Join([]string{
		`config testdata/k8s-bad.yaml: probes[0] "k8s": targets.kubernetes[0]: role "ingress": want service, endpoints, pod or node`,
		`probes[0] "k8s": targets.kubernetes[0]: label_selector "app in (a": unable to parse requirement: found '', expected: ',' or ')'`,
		`probes[0] "k8s": targets.kubernetes[1]: ports[0] "http": role node needs a port number`,
		`probes[0] "k8s": targets.kubernetes[1]: node_ports applies to role service, not node`,
		`probes[0] "k8s": targets.kubernetes[1]: mesh.peers_per_node -1 must not be negative`,
	}, "\n")
	if err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}
}
