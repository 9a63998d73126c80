// gitops-check runs our GitOps integrations under the code the GitOps tools themselves run:
//
//	gitops-check lua SCRIPT   < object.json   # an Argo CD health or action script, under
//	                                           # gopher-lua set up as Argo CD sets it up
//	gitops-check kstatus      < objects.jsonl # Flux's kstatus verdict for each object
//
// `lua` prints the table the script returns, as JSON. Argo CD (util/lua) gives scripts the
// package, base and table libraries and a reduced os library (time, date) without
// `resource.customizations.useOpenLibs`, a one-second deadline, and the object as the global
// `obj`; this sets the interpreter up the same way, so a script that reaches for anything
// else (string.*, io.*) fails here as it would in Argo CD.
//
// `kstatus` prints one line per input object: {"status": "...", "message": "..."} from
// sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute, what Flux's health checks use.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: gitops-check lua SCRIPT < object.json | gitops-check kstatus < objects.jsonl")
	}
	switch os.Args[1] {
	case "lua":
		if len(os.Args) != 3 {
			fail("usage: gitops-check lua SCRIPT < object.json")
		}
		runLua(os.Args[2])
	case "kstatus":
		runKstatus()
	default:
		fail("unknown command " + os.Args[1])
	}
}

func fail(message string) {
	fmt.Fprintln(os.Stderr, "gitops-check:", message)
	os.Exit(2)
}

func runLua(scriptPath string) {
	script, err := os.ReadFile(scriptPath)
	if err != nil {
		fail(err.Error())
	}
	var obj map[string]any
	if err := json.NewDecoder(os.Stdin).Decode(&obj); err != nil {
		fail("reading the object: " + err.Error())
	}
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, openSafeOs},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), Protect: true}, lua.LString(lib.name)); err != nil {
			fail(err.Error())
		}
	}
	l.PreloadModule(lua.OsLibName, safeOsLoader)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(string(script)); err != nil {
		fail(err.Error())
	}
	result := l.Get(-1)
	if result.Type() != lua.LTTable {
		fail("the script returned " + result.Type().String() + ", not a table")
	}
	out, err := json.Marshal(fromLua(result))
	if err != nil {
		fail(err.Error())
	}
	fmt.Println(string(out))
}

// The part of Argo CD's safe os library our scripts use: os.time. (Argo CD also offers
// clock, date and difftime; a script that needs them gets an error here first.)
var safeOsFunctions = map[string]lua.LGFunction{
	"time": func(l *lua.LState) int {
		l.Push(lua.LNumber(time.Now().Unix()))
		return 1
	},
}

func openSafeOs(l *lua.LState) int {
	l.Push(l.SetFuncs(l.NewTable(), safeOsFunctions))
	return 1
}

func safeOsLoader(l *lua.LState) int {
	l.Push(l.SetFuncs(l.NewTable(), safeOsFunctions))
	return 1
}

func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []any:
		table := l.CreateTable(len(v), 0)
		for _, item := range v {
			table.Append(toLua(l, item))
		}
		return table
	case map[string]any:
		table := l.CreateTable(0, len(v))
		for key, item := range v {
			table.RawSetString(key, toLua(l, item))
		}
		return table
	}
	return lua.LNil
}

// fromLua turns a table with keys 1..n into an array (an empty table too, as Argo CD's JSON
// encoder does) and any other table into an object.
func fromLua(value lua.LValue) any {
	switch v := value.(type) {
	case lua.LBool:
		return bool(v)
	case lua.LNumber:
		f := float64(v)
		if f == math.Trunc(f) && math.Abs(f) < 1e15 {
			return int64(f)
		}
		return f
	case lua.LString:
		return string(v)
	case *lua.LTable:
		if n := v.MaxN(); n > 0 || isEmpty(v) {
			items := make([]any, 0, n)
			for i := 1; i <= n; i++ {
				items = append(items, fromLua(v.RawGetInt(i)))
			}
			return items
		}
		object := map[string]any{}
		v.ForEach(func(key, item lua.LValue) {
			object[key.String()] = fromLua(item)
		})
		return object
	}
	return nil
}

func isEmpty(t *lua.LTable) bool {
	empty := true
	t.ForEach(func(lua.LValue, lua.LValue) { empty = false })
	return empty
}

func runKstatus() {
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 0, 1<<20), 16<<20)
	encoder := json.NewEncoder(os.Stdout)
	for scanner.Scan() {
		line := scanner.Bytes()
		if len(line) == 0 {
			continue
		}
		// apimachinery's JSON reads integers as int64, as the API machinery expects them
		// (encoding/json would give float64, which kstatus refuses for metadata.generation).
		var obj map[string]any
		if err := utiljson.Unmarshal(line, &obj); err != nil {
			fail("reading an object: " + err.Error())
		}
		result, err := status.Compute(&unstructured.Unstructured{Object: obj})
		if err != nil {
			fail("kstatus: " + err.Error())
		}
		conditions := make([]string, 0, len(result.Conditions))
		for _, c := range result.Conditions {
			conditions = append(conditions, string(c.Type)+"="+string(c.Status))
		}
		sort.Strings(conditions)
		if err := encoder.Encode(map[string]any{
			"status":     result.Status.String(),
			"message":    result.Message,
			"conditions": conditions,
		}); err != nil {
			fail(err.Error())
		}
	}
	if err := scanner.Err(); err != nil {
		fail("reading objects: " + err.Error())
	}
}
