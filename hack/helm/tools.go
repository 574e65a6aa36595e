//go:build tools

// Package tools pins the Helm release this module builds (hack/helm/build.sh).
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
