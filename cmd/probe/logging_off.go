//go:build !kubernetes

package main

import "log/slog"

// routeKlog has nothing to route: client-go is not linked.
func routeKlog(*slog.Logger) {}
