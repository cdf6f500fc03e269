//go:build tools

// Package tools only records, for `go mod tidy`, which command this module
// builds; e2e/kube-up.sh runs `go build go.etcd.io/etcd/server/v3` here.
package tools

import _ "go.etcd.io/etcd/server/v3"
