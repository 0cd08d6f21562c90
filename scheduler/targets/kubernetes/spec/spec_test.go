package spec

import (
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // substring; "" means valid
	}{
		{"service ok", Config{Role: "service"}, ""},
		{"missing role", Config{}, "role is required"},
		{"bad role", Config{Role: "ingress"}, `role "ingress": want service, endpoints, pod or node`},
		{"bad selector", Config{Role: "pod", LabelSelector: "app in (a"}, `label_selector "app in (a"`},
		{"node needs one port", Config{Role: "node"}, "role node needs exactly one port number"},
		{"node named port", Config{Role: "node", Ports: []string{"http"}}, `ports[0] "http": role node needs a port number`},
		{"port out of range", Config{Role: "pod", Ports: []string{"70000"}}, "ports[0]: 70000 is not in 1-65535"},
		{"node_ports on pods", Config{Role: "pod", NodePorts: true}, "node_ports applies to role service, not pod"},
		{"this_node on services", Config{Role: "service", ThisNode: true}, "this_node applies to role pod, not service"},
		{"mesh on services", Config{Role: "service", Mesh: Mesh{PeersPerNode: 3}}, "mesh applies to roles node, pod and endpoints"},
		{"mesh agent selector", Config{Role: "node", Ports: []string{"1"}, Mesh: Mesh{PeersPerNode: 3, AgentSelector: "app in ("}}, "mesh.agent_selector"},
		{"mesh negative", Config{Role: "node", Ports: []string{"1"}, Mesh: Mesh{PeersPerNode: -1}}, "must not be negative"},
		{"empty namespace", Config{Role: "pod", Namespaces: []string{""}}, "namespaces[0]: empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("got %v, want valid", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
