// Package health evaluates citystack.io objects the way two GitOps tools do: kstatus
// (sigs.k8s.io/cli-utils, used by Flux, kpt and `kubectl wait`-style tooling) and the Argo CD
// Lua health checks kept in hack/argocd, run in gopher-lua as Argo CD runs them.
package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

// Health is a status and a message: kstatus' Result or Argo CD's HealthStatus.
type Health struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

// Report is what the kstatus CLI prints: kstatus' verdict, and Argo CD's (null when
// hack/argocd has no health check for the object's group and kind).
type Report struct {
	Health
	Argo *Health `json:"argo"`
}

// Decode reads one object from YAML or JSON. Integers become int64 as in objects read from
// the API server (kstatus reads metadata.generation with NestedInt64, which rejects float64).
func Decode(data []byte) (*unstructured.Unstructured, error) {
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("parsing object: %w", err)
	}
	var obj map[string]any
	if err := utiljson.Unmarshal(j, &obj); err != nil {
		return nil, fmt.Errorf("parsing object: %w", err)
	}
	if obj == nil {
		return nil, errors.New("parsing object: empty document")
	}
	return &unstructured.Unstructured{Object: obj}, nil
}

// Kstatus is status.Compute's verdict.
func Kstatus(u *unstructured.Unstructured) (Health, error) {
	res, err := status.Compute(u)
	if err != nil {
		return Health{}, err
	}
	return Health{Status: string(res.Status), Message: res.Message}, nil
}

// DefaultArgoCDDir is hack/argocd, found from this source file's path (which `go run` and
// `go test` keep), or $CITYSTACK_ARGOCD_DIR when set.
func DefaultArgoCDDir() string {
	if dir := os.Getenv("CITYSTACK_ARGOCD_DIR"); dir != "" {
		return dir
	}
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return filepath.Join("..", "argocd")
	}
	return filepath.Join(filepath.Dir(file), "..", "argocd")
}

// ScriptPath is where Argo CD's layout keeps the health check of group/kind.
func ScriptPath(argocdDir, group, kind string) string {
	return filepath.Join(argocdDir, group, kind, "health.lua")
}

// Argo is Argo CD's verdict on u with the health checks in argocdDir, as configured through
// argocd-cm (no Lua standard library beyond base, table, package and os.time). Like
// gitops-engine, an object being deleted is Progressing "Pending deletion" before any script
// runs. Nil when there is no script for u's group and kind.
func Argo(u *unstructured.Unstructured, argocdDir string) (*Health, error) {
	gvk := u.GroupVersionKind()
	script, err := os.ReadFile(ScriptPath(argocdDir, gvk.Group, gvk.Kind))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if u.GetDeletionTimestamp() != nil {
		return &Health{Status: "Progressing", Message: "Pending deletion"}, nil
	}
	h, err := RunHealthLua(string(script), u, false)
	if err != nil {
		return nil, err
	}
	return &h, nil
}

// Evaluate is the CLI's report on one object.
func Evaluate(u *unstructured.Unstructured, argocdDir string) (Report, error) {
	k, err := Kstatus(u)
	if err != nil {
		return Report{}, fmt.Errorf("kstatus: %w", err)
	}
	a, err := Argo(u, argocdDir)
	if err != nil {
		return Report{}, fmt.Errorf("argo health.lua: %w", err)
	}
	return Report{Health: k, Argo: a}, nil
}

// The status codes Argo CD accepts from a script; any other becomes Unknown.
var argoStatuses = map[string]bool{
	"Unknown": true, "Progressing": true, "Suspended": true,
	"Healthy": true, "Degraded": true, "Missing": true,
}

// RunHealthLua runs a health.lua as Argo CD's util/lua does: a fresh gopher-lua state with
// only the package, base and table libraries (plus all standard libraries when openLibs, as
// for Argo CD's built-in checks and `useOpenLibs: true`), a 1 s deadline, the object as the
// global `obj` (maps → tables, lists → arrays, numbers → numbers), and the returned table
// read as {status, message}.
func RunHealthLua(script string, u *unstructured.Unstructured, openLibs bool) (Health, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: !openLibs})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return Health{}, err
		}
	}
	if !openLibs {
		// Argo CD's "safe" os library: time and date only (date is not needed here).
		l.RegisterModule(lua.OsLibName, map[string]lua.LGFunction{
			"time": func(l *lua.LState) int { l.Push(lua.LNumber(time.Now().Unix())); return 1 },
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, u.Object))
	if err := l.DoString(script); err != nil {
		return Health{}, err
	}
	ret, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return Health{}, fmt.Errorf("expect table output from Lua script, not %s", l.Get(-1).Type())
	}
	var h Health
	for field, dst := range map[string]*string{"status": &h.Status, "message": &h.Message} {
		switch v := ret.RawGetString(field).(type) {
		case lua.LString:
			*dst = string(v)
		case *lua.LNilType:
		default:
			return Health{}, fmt.Errorf("hs.%s is a %s, not a string", field, v.Type())
		}
	}
	if !argoStatuses[h.Status] {
		return Health{Status: "Unknown", Message: "Lua returned an invalid health status"}, nil
	}
	return h, nil
}

// toLua converts as Argo CD's decodeValue does.
func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []any:
		t := l.CreateTable(len(v), 0)
		for _, item := range v {
			t.Append(toLua(l, item))
		}
		return t
	case map[string]any:
		t := l.CreateTable(0, len(v))
		for k, item := range v {
			t.RawSetH(lua.LString(k), toLua(l, item))
		}
		return t
	}
	return lua.LNil
}

// ConfigMapPath is the generated argocd-cm snippet.
func ConfigMapPath(argocdDir string) string { return filepath.Join(argocdDir, "argocd-cm.yaml") }

// ConfigMapKey is argocd-cm's key for the health check of group/kind.
func ConfigMapKey(group, kind string) string {
	return "resource.customizations.health." + group + "_" + kind
}

// Scripts maps each argocd-cm key to the health.lua found under argocdDir/GROUP/KIND/.
func Scripts(argocdDir string) (map[string]string, error) {
	paths, err := filepath.Glob(filepath.Join(argocdDir, "*", "*", "health.lua"))
	if err != nil {
		return nil, err
	}
	scripts := map[string]string{}
	for _, p := range paths {
		kindDir := filepath.Dir(p)
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		scripts[ConfigMapKey(filepath.Base(filepath.Dir(kindDir)), filepath.Base(kindDir))] = string(b)
	}
	return scripts, nil
}

// ConfigMap renders the argocd-cm snippet holding every health.lua under argocdDir.
func ConfigMap(argocdDir string) ([]byte, error) {
	scripts, err := Scripts(argocdDir)
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(scripts))
	for k, s := range scripts {
		if !strings.HasSuffix(s, "\n") || strings.HasSuffix(s, "\n\n") || strings.Contains(s, "\t") {
			return nil, fmt.Errorf("%s: a script must end in exactly one newline and hold no tabs, to survive a YAML block scalar", k)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	b.WriteString(`# GENERATED from hack/argocd/<group>/<kind>/health.lua by hack/health: do not edit.
# Regenerate: cd hack/health && UPDATE_ARGOCD_CM=1 GOWORK=off GOTOOLCHAIN=local go test -run TestArgoCDConfigMap .
#
# Paste the data keys into argocd-cm (Helm chart argo-cd: configs.cm), or merge them in:
#   kubectl -n argocd patch configmap argocd-cm --type merge --patch-file hack/argocd/argocd-cm.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: argocd
data:
`)
	for _, k := range keys {
		fmt.Fprintf(&b, "  %s: |\n", k)
		for _, line := range strings.Split(strings.TrimSuffix(scripts[k], "\n"), "\n") {
			if line == "" {
				b.WriteString("\n")
			} else {
				b.WriteString("    " + line + "\n")
			}
		}
	}
	return b.Bytes(), nil
}
