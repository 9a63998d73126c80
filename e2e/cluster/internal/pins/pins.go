//go:build tools

// Package pins keeps modules in go.mod whose files (not code) the tests read: the Gateway API
// CRDs of sigs.k8s.io/gateway-api (config/crd/experimental: HTTPRoute sessionPersistence is
// only there), applied to the cluster at test time
// instead of a hand-written copy. The build tag keeps it out of every build.
package pins

import _ "sigs.k8s.io/gateway-api/apis/v1"
