package main

import (
	"bytes"
	"os"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"
)

// TestDeployArgsParse checks that the container args in deploy/ name real
// subcommands and flags: a renamed flag would otherwise crash-loop every
// agent in a cluster.
func TestDeployArgsParse(t *testing.T) {
	for _, file := range []string{"../../deploy/daemonset.yaml", "../../deploy/responder.yaml"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, doc := range bytes.Split(b, []byte("\n---")) {
			var w struct {
				Kind string `json:"kind"`
			}
			if err := yaml.Unmarshal(doc, &w); err != nil {
				t.Fatal(err)
			}
			var spec *appsv1.DeploymentSpec
			switch w.Kind {
			case "DaemonSet":
				var ds appsv1.DaemonSet
				if err := yaml.Unmarshal(doc, &ds); err != nil {
					t.Fatal(err)
				}
				spec = &appsv1.DeploymentSpec{Template: ds.Spec.Template}
			case "Deployment":
				var d appsv1.Deployment
				if err := yaml.Unmarshal(doc, &d); err != nil {
					t.Fatal(err)
				}
				spec = &d.Spec
			default:
				continue
			}
			for _, c := range spec.Template.Spec.Containers {
				n++
				root := newRootCmd()
				cmd, rest, err := root.Find(c.Args)
				if err != nil || cmd == root {
					t.Errorf("%s: args %v: no such subcommand (%v)", file, c.Args, err)
					continue
				}
				if err := cmd.ParseFlags(rest); err != nil {
					t.Errorf("%s: args %v: %v", file, c.Args, err)
					continue
				}
				if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
					t.Errorf("%s: args %v: %v", file, c.Args, err)
				}
			}
		}
		if n == 0 {
			t.Errorf("%s: no containers found", file)
		}
	}
}
