//go:build tools

// Package tools only records, for `go mod tidy`, which commands this module
// builds; e2e/kube-up.sh runs `go build k8s.io/kubernetes/cmd/<name>` here.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
