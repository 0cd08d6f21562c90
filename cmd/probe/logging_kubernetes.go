//go:build kubernetes

package main

import (
	"log/slog"

	"k8s.io/klog/v2"
)

// routeKlog sends client-go's logging through log.
func routeKlog(log *slog.Logger) { klog.SetSlogLogger(log) }
