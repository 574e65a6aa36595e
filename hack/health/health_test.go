package health

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"sigs.k8s.io/yaml"
)

// argocdDir is hack/argocd, read through the symlink testdata/argocd -> ../../argocd: go test
// caches results and re-checks only the input files inside this module, so reading
// ../argocd directly would leave a stale "ok (cached)" after an edit of a health.lua or a
// testdata file. Through the symlink those files count as the module's own.
const argocdDir = "testdata/argocd"

// expectation is what Argo CD (hack/argocd/.../health.lua) and kstatus (cli-utils
// status.Compute) say of one testdata object.
type expectation struct {
	argo     string // Argo CD health status; health_test.yaml holds the same status and the message
	kstatus  string // kstatus status
	kmessage string // kstatus message
	// why the pair is not one of Current⇔Healthy, InProgress⇔Progressing, Failed⇔Degraded;
	// empty when it is.
	why string
}

const (
	whyNoStatus = "kstatus cannot tell 'status not written yet' from 'a kind without status': " +
		"with no status.observedGeneration and no conditions it falls through to Current " +
		"(\"Resource is current\"). Argo CD waits for the operator to observe the generation."
	whyPaused = "kstatus knows nothing of spec.paused and reads the conditions as they are " +
		"(the operator sets Reconciling=False reason Paused, so kstatus falls back to Ready); " +
		"Argo CD has a Suspended status for it."
)

// expectations covers every testdata file of both kinds: the agreement table.
var expectations = map[string]expectation{
	"SolutionStack/testdata/no-status.yaml": {
		argo: "Progressing", kstatus: "Current", kmessage: "Resource is current", why: whyNoStatus,
	},
	"SolutionStack/testdata/stale-generation.yaml": {
		argo: "Progressing", kstatus: "InProgress",
		kmessage: "SolutionStack generation is 4, but latest observed generation is 3",
	},
	"SolutionStack/testdata/rolling-out.yaml": {
		argo: "Progressing", kstatus: "InProgress",
		kmessage: "2/3 components ready; notify: 0 of 1 updated replicas available",
	},
	"SolutionStack/testdata/waiting-for-dependency.yaml": {
		argo: "Progressing", kstatus: "InProgress",
		kmessage: "0/3 components ready; records: 1 of 2 replicas updated; booking: records: 1 of 2 replicas updated; notify: booking: waiting for its own dependencies",
	},
	"SolutionStack/testdata/missing-secret.yaml": {
		argo: "Progressing", kstatus: "InProgress",
		kmessage: "0/3 components ready; records: fhir: Secret fhir-store not found in namespace hue-health; booking: fhir: Secret fhir-store not found in namespace hue-health; notify: booking: waiting for its own dependencies",
	},
	"SolutionStack/testdata/transient-kubeapi.yaml": {
		argo: "Progressing", kstatus: "InProgress",
		kmessage: `retrying: apply Deployment clinics-records: ApiError: etcdserver: request timed out: InternalError (ErrorResponse { status: "Failure", message: "etcdserver: request timed out", reason: "InternalError", code: 500 })`,
	},
	"SolutionStack/testdata/stalled-cycle.yaml": {
		argo: "Degraded", kstatus: "Failed",
		kmessage: "spec.components[].dependsOn forms a cycle: records -> booking -> records",
	},
	"SolutionStack/testdata/stalled-deadline.yaml": {
		argo: "Degraded", kstatus: "Failed",
		kmessage: "booking: Deployment clinics-booking exceeded its progress deadline",
	},
	"SolutionStack/testdata/ready.yaml": {
		argo: "Healthy", kstatus: "Current", kmessage: "Resource is Ready",
	},
	"SolutionStack/testdata/paused.yaml": {
		argo: "Suspended", kstatus: "Current", kmessage: "Resource is Ready", why: whyPaused,
	},
	"SolutionStack/testdata/paused-rolling-out.yaml": {
		argo: "Suspended", kstatus: "InProgress",
		kmessage: "2/3 components ready; notify: 0 of 1 updated replicas available", why: whyPaused,
	},
	"AzureResource/testdata/no-status.yaml": {
		argo: "Progressing", kstatus: "Current", kmessage: "Resource is current", why: whyNoStatus,
	},
	"AzureResource/testdata/provisioning.yaml": {
		argo: "Progressing", kstatus: "InProgress",
		kmessage: "Creating Microsoft.DBforPostgreSQL/flexibleServers clinics-db in rg-hue-health: provisioningState Accepted",
	},
	"AzureResource/testdata/failed-operation.yaml": {
		argo: "Degraded", kstatus: "Failed",
		kmessage: "Creating Microsoft.DBforPostgreSQL/flexibleServers clinics-db failed: SkuNotAvailable: The requested SKU Standard_B1ms is not available in location southeastasia",
	},
	"AzureResource/testdata/ready.yaml": {
		argo: "Healthy", kstatus: "Current", kmessage: "Resource is Ready",
	},
}

// agrees is the pairing of kstatus and Argo CD statuses that holds unless a row says why.
var agrees = map[string]string{"Current": "Healthy", "InProgress": "Progressing", "Failed": "Degraded"}

// healthTest is Argo CD's health_test.yaml.
type healthTest struct {
	Tests []struct {
		HealthStatus Health `json:"healthStatus"`
		InputPath    string `json:"inputPath"`
	} `json:"tests"`
}

// TestHealthChecks runs every health_test.yaml case under hack/argocd/citystack.io through
// health.lua (as argocd-cm runs it, and with all libraries as built-in checks run) and
// kstatus, and checks both against the expectations table.
func TestHealthChecks(t *testing.T) {
	kindDirs, err := filepath.Glob(filepath.Join(argocdDir, "citystack.io", "*"))
	if err != nil || len(kindDirs) == 0 {
		t.Fatalf("no kinds under %s: %v", argocdDir, err)
	}
	seen := map[string]bool{}
	for _, kindDir := range kindDirs {
		kind := filepath.Base(kindDir)
		script, err := os.ReadFile(filepath.Join(kindDir, "health.lua"))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(filepath.Join(kindDir, "health_test.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var suite healthTest
		if err := yaml.UnmarshalStrict(raw, &suite); err != nil {
			t.Fatalf("%s/health_test.yaml: %v", kind, err)
		}
		listed := map[string]bool{}
		for _, tc := range suite.Tests {
			name := kind + "/" + tc.InputPath
			listed[filepath.Join(kindDir, tc.InputPath)] = true
			seen[name] = true
			t.Run(name, func(t *testing.T) {
				data, err := os.ReadFile(filepath.Join(kindDir, tc.InputPath))
				if err != nil {
					t.Fatal(err)
				}
				u, err := Decode(data)
				if err != nil {
					t.Fatal(err)
				}
				if u.GetKind() != kind {
					t.Fatalf("testdata kind %q in the %s folder", u.GetKind(), kind)
				}
				for _, openLibs := range []bool{false, true} {
					got, err := RunHealthLua(string(script), u, openLibs)
					if err != nil {
						t.Fatalf("health.lua (openLibs=%v): %v", openLibs, err)
					}
					if got != tc.HealthStatus {
						t.Errorf("health.lua (openLibs=%v) = %+v, health_test.yaml wants %+v", openLibs, got, tc.HealthStatus)
					}
				}
				want, ok := expectations[name]
				if !ok {
					t.Fatalf("no row in the expectations table")
				}
				if tc.HealthStatus.Status != want.argo {
					t.Errorf("health_test.yaml says %s, the expectations table %s", tc.HealthStatus.Status, want.argo)
				}
				k, err := Kstatus(u)
				if err != nil {
					t.Fatalf("kstatus: %v", err)
				}
				if k.Status != want.kstatus || k.Message != want.kmessage {
					t.Errorf("kstatus = %+v, want {Status:%s Message:%s}", k, want.kstatus, want.kmessage)
				}
				paired := agrees[want.kstatus] == want.argo
				switch {
				case want.why == "" && !paired:
					t.Errorf("kstatus %s and Argo CD %s disagree with no reason given", want.kstatus, want.argo)
				case want.why != "" && paired:
					t.Errorf("kstatus %s and Argo CD %s agree now: drop the row's why", want.kstatus, want.argo)
				}
				// The CLI's report says the same.
				r, err := Evaluate(u, argocdDir)
				if err != nil {
					t.Fatal(err)
				}
				if r.Health != k || r.Argo == nil || *r.Argo != tc.HealthStatus {
					t.Errorf("Evaluate = %+v (argo %+v)", r, r.Argo)
				}
			})
		}
		files, _ := filepath.Glob(filepath.Join(kindDir, "testdata", "*.yaml"))
		for _, f := range files {
			if !listed[f] {
				t.Errorf("%s is in no test of %s/health_test.yaml", f, kind)
			}
		}
	}
	for name := range expectations {
		if !seen[name] {
			t.Errorf("expectations row %s matches no health_test.yaml case", name)
		}
	}
}

// TestPendingDeletion: an object being deleted is kstatus Terminating, and Argo CD
// (gitops-engine, before any Lua) Progressing "Pending deletion".
func TestPendingDeletion(t *testing.T) {
	for _, kind := range []string{"SolutionStack", "AzureResource"} {
		data, err := os.ReadFile(filepath.Join(argocdDir, "citystack.io", kind, "testdata", "ready.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		u, err := Decode(data)
		if err != nil {
			t.Fatal(err)
		}
		u.Object["metadata"].(map[string]any)["deletionTimestamp"] = "2025-06-02T09:00:00Z"
		r, err := Evaluate(u, argocdDir)
		if err != nil {
			t.Fatal(err)
		}
		want := Report{
			Health: Health{Status: "Terminating", Message: "Resource scheduled for deletion"},
			Argo:   &Health{Status: "Progressing", Message: "Pending deletion"},
		}
		if r.Health != want.Health || r.Argo == nil || *r.Argo != *want.Argo {
			t.Errorf("%s: Evaluate = %+v (argo %+v)", kind, r, r.Argo)
		}
	}
}

// TestOtherKinds: no health.lua → no Argo CD verdict, kstatus still answers.
func TestOtherKinds(t *testing.T) {
	u, err := Decode([]byte(`{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}`))
	if err != nil {
		t.Fatal(err)
	}
	r, err := Evaluate(u, argocdDir)
	if err != nil {
		t.Fatal(err)
	}
	if r.Argo != nil || r.Status != "Current" {
		t.Errorf("Evaluate = %+v (argo %+v)", r, r.Argo)
	}
}

// TestArgoCDConfigMap: hack/argocd/argocd-cm.yaml is generated from the health.lua files
// (UPDATE_ARGOCD_CM=1 rewrites it) and its data keys hold exactly those scripts.
func TestArgoCDConfigMap(t *testing.T) {
	want, err := ConfigMap(argocdDir)
	if err != nil {
		t.Fatal(err)
	}
	path := ConfigMapPath(argocdDir)
	if os.Getenv("UPDATE_ARGOCD_CM") != "" {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is stale: regenerate with UPDATE_ARGOCD_CM=1 go test -run TestArgoCDConfigMap .", path)
	}
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(got, &cm); err != nil {
		t.Fatal(err)
	}
	scripts, err := Scripts(argocdDir)
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 0, len(scripts))
	for k := range scripts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	wantKeys := []string{
		"resource.customizations.health.citystack.io_AzureResource",
		"resource.customizations.health.citystack.io_SolutionStack",
	}
	if len(keys) != len(wantKeys) || keys[0] != wantKeys[0] || keys[1] != wantKeys[1] {
		t.Errorf("scripts %v, want %v", keys, wantKeys)
	}
	if len(cm.Data) != len(scripts) {
		t.Errorf("argocd-cm.yaml has %d keys, hack/argocd %d scripts", len(cm.Data), len(scripts))
	}
	for k, s := range scripts {
		if cm.Data[k] != s {
			t.Errorf("argocd-cm.yaml %s differs from its health.lua", k)
		}
	}
}
