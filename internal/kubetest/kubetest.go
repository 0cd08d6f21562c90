// Package kubetest runs a real Kubernetes control plane for tests: etcd
// (Debian's etcd-server) and kube-apiserver (built from the Go module proxy
// at the version of the project's client-go by scripts/kube-apiserver.sh,
// cached between runs), on loopback ports, with certificates generated per
// run, RBAC authorization and a service-account token issuer. There is no
// controller-manager, scheduler or kubelet: tests create EndpointSlices and
// set pod status themselves, and nothing the cluster describes is ever run.
//
// The API server can be stopped and started again on the same address
// (StopAPI, StartAPI) to test what clients do through an outage.
package kubetest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// ServiceCIDR is the API server's --service-cluster-ip-range: ClusterIPs
// are allocated from it. They exist only in the objects; a test that
// probes one configures it inside a network namespace of its own.
const ServiceCIDR = "10.96.0.0/16"

// Cluster is a running etcd and kube-apiserver.
type Cluster struct {
	// Dir holds certificates, keys, data and logs.
	Dir string
	// Host is the API server's URL (https://127.0.0.1:PORT).
	Host string
	// CA is the PEM certificate that signed the server's.
	CA []byte
	// Admin is a client with the system:masters group.
	Admin clientset.Interface
	// AdminConfig is Admin's rest.Config.
	AdminConfig *rest.Config

	etcdData   string // on tmpfs, removed by Stop
	apiserver  string // binary
	apiArgs    []string
	port       int
	mu         sync.Mutex
	etcd, api  *exec.Cmd
	etcdDone   chan error
	apiDone    chan error
	apiStarted int
}

// Start starts a cluster; Stop ends it. Most tests share one per package
// (Main).
func Start() (*Cluster, error) {
	bin, err := APIServerBinary()
	if err != nil {
		return nil, err
	}
	if _, err := exec.LookPath("etcd"); err != nil {
		return nil, fmt.Errorf("kubetest: etcd not found (Debian package etcd-server, in .ci/packages.txt): %w", err)
	}
	dir, err := os.MkdirTemp("", "kubetest-")
	if err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	c := &Cluster{Dir: dir, apiserver: bin}
	if err := c.start(); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start() error {
	if err := c.writeCerts(); err != nil {
		return err
	}
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	etcdClient, etcdPeer := ports[0], ports[1]
	c.port = ports[2]
	c.Host = fmt.Sprintf("https://127.0.0.1:%d", c.port)
	// etcd fsyncs every write; on tmpfs that costs nothing (a test cluster
	// needs no durability, and Debian's etcd 3.4 has no --unsafe-no-fsync).
	data := filepath.Join(c.Dir, "etcd")
	if d, err := os.MkdirTemp("/dev/shm", "kubetest-etcd-"); err == nil {
		c.etcdData, data = d, d
	}
	c.etcd = exec.Command("etcd",
		"--name", "kubetest",
		"--data-dir", data,
		"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdClient),
		"--advertise-client-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdClient),
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPeer),
		"--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPeer),
		"--initial-cluster", fmt.Sprintf("kubetest=http://127.0.0.1:%d", etcdPeer),
	)
	var err2 error
	c.etcdDone, err2 = startLogged(c.etcd, filepath.Join(c.Dir, "etcd.log"))
	if err2 != nil {
		return fmt.Errorf("kubetest: etcd: %w", err2)
	}
	p := func(name string) string { return filepath.Join(c.Dir, name) }
	c.apiArgs = []string{
		"--etcd-servers", fmt.Sprintf("http://127.0.0.1:%d", etcdClient),
		"--bind-address", "127.0.0.1",
		"--advertise-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(c.port),
		"--tls-cert-file", p("apiserver.crt"),
		"--tls-private-key-file", p("apiserver.key"),
		"--client-ca-file", p("ca.crt"),
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", p("sa.pub"),
		"--service-account-signing-key-file", p("sa.key"),
		"--authorization-mode", "RBAC",
		"--service-cluster-ip-range", ServiceCIDR,
		"--service-node-port-range", "30000-32767",
		// No controller-manager creates the default ServiceAccount a pod
		// would need, and nothing should reconcile the kubernetes Service's
		// endpoints to a loopback address.
		"--disable-admission-plugins", "ServiceAccount",
		"--endpoint-reconciler-type", "none",
		"--allow-privileged",
		"--storage-media-type", "application/json",
	}
	if err := c.StartAPI(); err != nil {
		return err
	}
	c.AdminConfig = &rest.Config{
		Host: c.Host,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   c.CA,
			CertFile: p("admin.crt"),
			KeyFile:  p("admin.key"),
		},
		QPS:   100,
		Burst: 200,
	}
	admin, err := clientset.NewForConfig(c.AdminConfig)
	if err != nil {
		return fmt.Errorf("kubetest: admin client: %w", err)
	}
	c.Admin = admin
	return nil
}

// StartAPI starts the API server (again, on the same address) and waits
// until /readyz says ok, RBAC's bootstrap roles included.
func (c *Cluster) StartAPI() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.api != nil {
		return errors.New("kubetest: the API server is running")
	}
	c.apiStarted++
	cmd := exec.Command(c.apiserver, c.apiArgs...)
	done, err := startLogged(cmd, filepath.Join(c.Dir, fmt.Sprintf("kube-apiserver.%d.log", c.apiStarted)))
	if err != nil {
		return fmt.Errorf("kubetest: kube-apiserver: %w", err)
	}
	c.api, c.apiDone = cmd, done
	if err := c.waitReady(done, 3*time.Minute); err != nil {
		return err
	}
	return nil
}

// StopAPI stops the API server: SIGTERM, then SIGKILL after 5 s (it drains
// its open watches for longer than that; a crash is an outage too).
// Clients then get "connection refused" until StartAPI.
func (c *Cluster) StopAPI() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.api == nil {
		return nil
	}
	_ = stop(c.api, c.apiDone, 5*time.Second)
	c.api, c.apiDone = nil, nil
	return nil
}

// Stop stops the API server and etcd and removes Dir (kept when
// KUBETEST_KEEP is set, for its logs).
func (c *Cluster) Stop() {
	_ = c.StopAPI()
	c.mu.Lock()
	if c.etcd != nil && c.etcdDone != nil {
		_ = stop(c.etcd, c.etcdDone, 10*time.Second)
		c.etcd = nil
	}
	c.mu.Unlock()
	if c.etcdData != "" {
		os.RemoveAll(c.etcdData)
	}
	if os.Getenv("KUBETEST_KEEP") == "" {
		os.RemoveAll(c.Dir)
	}
}

// APILog returns the last API server run's log (for failure messages).
func (c *Cluster) APILog() string {
	b, _ := os.ReadFile(filepath.Join(c.Dir, fmt.Sprintf("kube-apiserver.%d.log", c.apiStarted)))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func (c *Cluster) waitReady(done <-chan error, limit time.Duration) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.CA)
	cert, err := tls.LoadX509KeyPair(filepath.Join(c.Dir, "admin.crt"), filepath.Join(c.Dir, "admin.key"))
	if err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	hc := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}},
	}
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(limit)
	var last string
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			return fmt.Errorf("kubetest: kube-apiserver exited: %v\n%s", err, c.APILog())
		default:
		}
		resp, err := hc.Get(c.Host + "/readyz")
		if err == nil {
			b := new(bytes.Buffer)
			_, _ = b.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, b)
		} else {
			last = err.Error()
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("kubetest: kube-apiserver not ready after %s: %s\n%s", limit, last, c.APILog())
}

// startLogged starts cmd with its output in logPath, in its own process
// group; done receives Wait's result.
func startLogged(cmd *exec.Cmd, logPath string) (chan error, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group, so a terminal's ^C reaches the test alone and
	// Stop ends the server. (No Pdeathsig: it fires when the forking OS
	// thread exits, which a Go program does not control.)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	done := make(chan error, 1)
	go func() { // owned: stop waits on done
		err := cmd.Wait()
		f.Close()
		done <- err
	}()
	return done, nil
}

func stop(cmd *exec.Cmd, done <-chan error, grace time.Duration) error {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		return nil
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("kubetest: %s did not stop within %s of SIGTERM", filepath.Base(cmd.Path), grace)
	}
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("kubetest: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// writeCerts writes a CA, the API server's serving certificate for
// 127.0.0.1, an admin client certificate (group system:masters) and the
// service-account signing key.
func (c *Cluster) writeCerts() error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kubetest-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, _ := x509.ParseCertificate(caDER)
	c.CA = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	if err := os.WriteFile(filepath.Join(c.Dir, "ca.crt"), c.CA, 0o600); err != nil {
		return err
	}
	leaf := func(name string, serial int64, tmpl *x509.Certificate) error {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(24*time.Hour)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		kb, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(c.Dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(c.Dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	}
	if err := leaf("apiserver", 2, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:    []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return err
	}
	if err := leaf("admin", 3, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kubetest-admin", Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	kb, err := x509.MarshalECPrivateKey(saKey)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.Dir, "sa.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(c.Dir, "sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600)
}

// Token returns a token of ServiceAccount ns/name (TokenRequest API, one
// hour), as a pod running under it would get.
func (c *Cluster) Token(ctx context.Context, ns, name string) (string, error) {
	tr, err := c.Admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name,
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: new(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("kubetest: token for %s/%s: %w", ns, name, err)
	}
	return tr.Status.Token, nil
}

// TokenConfig is a rest.Config that authenticates with token.
func (c *Cluster) TokenConfig(token string) *rest.Config {
	return &rest.Config{Host: c.Host, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAData: c.CA}}
}

// Kubeconfig writes a kubeconfig file for token into dir and returns its
// path.
func (c *Cluster) Kubeconfig(dir, token string) (string, error) {
	path := filepath.Join(dir, "kubeconfig")
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, c.CA, 0o600); err != nil {
		return "", err
	}
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kubetest
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: agent
  user:
    token: %s
contexts:
- name: kubetest
  context: {cluster: kubetest, user: agent}
current-context: kubetest
`, c.Host, ca, token)
	return path, os.WriteFile(path, []byte(cfg), 0o600)
}

// Namespace creates a namespace with a unique name starting with prefix;
// it is deleted on t.Cleanup (its objects stay in etcd until the cluster
// stops: no namespace controller runs).
func (c *Cluster) Namespace(t testing.TB, prefix string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns, err := c.Admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: strings.TrimSuffix(prefix, "-") + "-"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = c.Admin.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{})
	})
	return ns.Name
}
