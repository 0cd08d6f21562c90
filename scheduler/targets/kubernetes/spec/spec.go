// Package spec is the configuration of Kubernetes target discovery: the
// `kubernetes` block of a job's targets and its validation. It is kept apart
// from package kubernetes so that configs (and `probe lint`) can check a file
// without compiling client-go.
package spec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
)

// Roles.
const (
	RoleService   = "service"
	RoleEndpoints = "endpoints"
	RolePod       = "pod"
	RoleNode      = "node"
)

// Config is one `kubernetes` target block.
type Config struct {
	// Role is service, endpoints, pod or node.
	Role string `yaml:"role"`
	// Namespaces restricts discovery to these namespaces; empty: all.
	Namespaces []string `yaml:"namespaces"`
	// LabelSelector selects objects by label ("app=db,tier!=cache").
	LabelSelector string `yaml:"label_selector"`
	// Ports keeps only the ports with these names or numbers; empty: every
	// TCP port. For role node (nodes have no ports) it must hold exactly one
	// number.
	Ports []string `yaml:"ports"`
	// NodePorts (role service) adds each NodePort on this node's address.
	NodePorts bool `yaml:"node_ports"`
	// ThisNode (role pod) keeps only the pods scheduled on this node.
	ThisNode bool `yaml:"this_node"`
	// Mesh, when PeersPerNode > 0, probes only the targets that chose this
	// node's agent among the running agents (roles node, pod, endpoints).
	Mesh Mesh `yaml:"mesh"`
	// Kubeconfig is the kubeconfig file to use outside a cluster; empty: the
	// in-cluster service account, else $KUBECONFIG or ~/.kube/config. A
	// leading "~/" is the user's home directory (ExpandHome).
	Kubeconfig string `yaml:"kubeconfig"`
}

// ExpandHome returns path with a leading "~" or "~/" replaced by the
// user's home directory ($HOME), as a shell would; other paths are
// returned unchanged. "~user/..." (another user's home) is an error.
func ExpandHome(path string) (string, error) {
	if path != "~" && !strings.HasPrefix(path, "~/") {
		if strings.HasPrefix(path, "~") {
			return "", fmt.Errorf("%q: only ~/ (your own home directory) is expanded, not ~user/", path)
		}
		return path, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("%q: %w", path, err)
	}
	return filepath.Join(home, strings.TrimPrefix(path, "~")), nil
}

func kubeconfigErrs(path string) []error {
	if strings.HasPrefix(path, "~") && path != "~" && !strings.HasPrefix(path, "~/") {
		_, err := ExpandHome(path)
		return []error{fmt.Errorf("kubeconfig %w", err)}
	}
	return nil
}

// Mesh is the mesh-mode block.
type Mesh struct {
	// PeersPerNode is k: every target is probed by min(k, running agents)
	// agents, each agent probes about k targets' worth. 0: off, probe every
	// target.
	PeersPerNode int `yaml:"peers_per_node"`
	// AgentSelector is the label selector of the agent pods, in every
	// namespace: the probers are the nodes with a running, ready agent pod.
	// Empty: DefaultAgentSelector (the label deploy/daemonset.yaml sets).
	AgentSelector string `yaml:"agent_selector"`
}

// DefaultAgentSelector selects the agent pods of deploy/daemonset.yaml.
const DefaultAgentSelector = "app.kubernetes.io/name=connprobe-agent"

// Agents returns the agent selector in force: AgentSelector or the default.
func (m Mesh) Agents() string {
	if m.AgentSelector == "" {
		return DefaultAgentSelector
	}
	return m.AgentSelector
}

// Validate reports every problem of c; paths are relative to the block.
func (c Config) Validate() error {
	var errs []error
	switch c.Role {
	case RoleService, RoleEndpoints, RolePod, RoleNode:
	case "":
		errs = append(errs, errors.New("role is required (service, endpoints, pod or node)"))
	default:
		errs = append(errs, fmt.Errorf("role %q: want service, endpoints, pod or node", c.Role))
	}
	errs = append(errs, selectorErrs(c.Namespaces, c.LabelSelector)...)
	errs = append(errs, kubeconfigErrs(c.Kubeconfig)...)
	for i, p := range c.Ports {
		if n, err := strconv.Atoi(p); err == nil && (n < 1 || n > 65535) {
			errs = append(errs, fmt.Errorf("ports[%d]: %d is not in 1-65535", i, n))
		} else if p == "" {
			errs = append(errs, fmt.Errorf("ports[%d]: empty", i))
		}
	}
	if c.Role == RoleNode {
		if len(c.Ports) != 1 {
			errs = append(errs, errors.New("ports: role node needs exactly one port number (nodes have no named ports)"))
		} else if _, err := strconv.Atoi(c.Ports[0]); err != nil {
			errs = append(errs, fmt.Errorf("ports[0] %q: role node needs a port number", c.Ports[0]))
		}
	}
	if c.NodePorts && c.Role != RoleService {
		errs = append(errs, fmt.Errorf("node_ports applies to role service, not %s", c.Role))
	}
	if c.ThisNode && c.Role != RolePod {
		errs = append(errs, fmt.Errorf("this_node applies to role pod, not %s", c.Role))
	}
	if c.Mesh.PeersPerNode < 0 {
		errs = append(errs, fmt.Errorf("mesh.peers_per_node %d must not be negative", c.Mesh.PeersPerNode))
	}
	if c.Mesh.PeersPerNode > 0 && c.Role == RoleService {
		errs = append(errs, errors.New("mesh applies to roles node, pod and endpoints, not service"))
	}
	if c.Mesh.AgentSelector != "" {
		if _, err := labels.Parse(c.Mesh.AgentSelector); err != nil {
			errs = append(errs, fmt.Errorf("mesh.agent_selector %q: %w", c.Mesh.AgentSelector, err))
		}
	}
	if c.Mesh.PeersPerNode > 0 && c.ThisNode {
		errs = append(errs, errors.New("mesh and this_node exclude each other (this_node keeps only local pods)"))
	}
	return errors.Join(errs...)
}

// selectorErrs checks the namespaces and label selector shared by Config
// and PodSelector.
func selectorErrs(namespaces []string, labelSelector string) []error {
	var errs []error
	if _, err := labels.Parse(labelSelector); err != nil {
		errs = append(errs, fmt.Errorf("label_selector %q: %w", labelSelector, err))
	}
	for i, ns := range namespaces {
		if ns == "" {
			errs = append(errs, fmt.Errorf("namespaces[%d]: empty", i))
		}
	}
	return errs
}

// PodSelector is the `pods_selector` of a job's vantage block: the pods on
// this node (NODE_NAME) whose network namespaces the job probes from, chosen
// by the API (a pod watch with field selector spec.nodeName and this label
// selector, server-side) rather than by name globs. Namespaces, LabelSelector
// and Kubeconfig mean what they mean in Config.
type PodSelector struct {
	// Namespaces restricts the pods to these namespaces; empty: all.
	Namespaces []string `yaml:"namespaces"`
	// LabelSelector selects pods by label ("app=web"); empty: every pod.
	LabelSelector string `yaml:"label_selector"`
	// Kubeconfig is the kubeconfig file to use outside a cluster.
	Kubeconfig string `yaml:"kubeconfig"`
}

// Validate reports every problem of p; paths are relative to the block.
func (p PodSelector) Validate() error {
	return errors.Join(append(selectorErrs(p.Namespaces, p.LabelSelector), kubeconfigErrs(p.Kubeconfig)...)...)
}
