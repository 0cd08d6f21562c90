package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestRunAppTargets(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/down" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	// A listener that accepts and never speaks: a mysql:// target times out
	// in the app phase.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	silent := ln.Addr().String()

	tests := []struct {
		name string
		args []string
		want int
	}{
		{"http target picks the app probe", []string{"run", srv.URL + "/"}, exitOK},
		{"http 503 fails", []string{"run", srv.URL + "/down"}, exitFailed},
		{"explicit kind app", []string{"run", "--kind", "app", srv.URL + "/"}, exitOK},
		{"silent mysql fails", []string{"run", "--timeout", "300ms", "mysql://" + silent}, exitFailed},
		{"send with an app target", []string{"run", "--send", "x", "mysql://" + silent}, exitUsage},
		{"kind app on a tcp target", []string{"run", "--kind", "app", silent}, exitUsage},
		{"bad postgres sslmode", []string{"run", "postgres://u:p@" + silent + "/db?sslmode=prefer"}, exitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := run(context.Background(), tt.args); got != tt.want {
				t.Errorf("probe %v: exit %d, want %d", tt.args, got, tt.want)
			}
		})
	}
}
