//go:build kubernetes

package main

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
)

// No test of this package asks a real API server for --pod.
func init() {
	newPodClient = func() (clientset.Interface, error) { return nil, errors.New("no Kubernetes API in tests") }
}

// TestRunPodFromAPI: with the API, --pod finds the pod by the UID the API
// gives (the UID in its cgroup), not by the HOSTNAME its processes carry;
// a pod the API does not know is an error that says so.
func TestRunPodFromAPI(t *testing.T) {
	podNS := podTestNS()
	etc := t.TempDir()
	if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	proc, uid := podWithEtc(t, podNS, "some-hostname", etc)
	client := fake.NewClientset(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: podNS, Name: "api-1", UID: types.UID(uid)}})
	old := newPodClient
	newPodClient = func() (clientset.Interface, error) { return client, nil }
	t.Cleanup(func() { newPodClient = old })

	err, _, stderr := runCmd(t.Context(), "--pod", podNS+"/api-1", "--timeout", "2s", "127.0.0.1:1")
	if want := "netns /proc/" + strconv.Itoa(proc.Process.Pid) + "/ns/net"; !errors.Is(err, errFailed) || !strings.Contains(stderr, want) {
		t.Errorf("--pod by API UID: err %v (want the probe run, refused), stderr %q (want %q)", err, stderr, want)
	}
	err, _, _ = runCmd(t.Context(), "--pod", podNS+"/ghost", "127.0.0.1:1")
	if err == nil || !strings.Contains(err.Error(), "not found in the Kubernetes API") {
		t.Errorf("pod unknown to the API: %v", err)
	}
}
