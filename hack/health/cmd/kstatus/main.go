// Command kstatus prints how kstatus and Argo CD judge one Kubernetes object:
//
//	go run ./cmd/kstatus -f object.yaml          # or .json; "-" or no -f reads stdin
//	kubectl get solutionstack clinics -o json | go run ./cmd/kstatus
//
// Output (one JSON line): {"status":"Current","message":"Resource is Ready",
// "argo":{"status":"Healthy","message":"3/3 components ready"}}. "argo" is null when
// hack/argocd has no health.lua for the object's group and kind.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	"citystack.io/hack/health"
)

func main() {
	file := flag.String("f", "-", "object to judge, YAML or JSON (- for stdin)")
	dir := flag.String("argocd", health.DefaultArgoCDDir(), "folder of the Argo CD health checks (GROUP/KIND/health.lua)")
	flag.Parse()
	if err := run(*file, *dir, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}

func run(file, dir string, out io.Writer) error {
	var data []byte
	var err error
	if file == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return err
	}
	u, err := health.Decode(data)
	if err != nil {
		return err
	}
	report, err := health.Evaluate(u, dir)
	if err != nil {
		return err
	}
	return json.NewEncoder(out).Encode(report)
}
