package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPubNubSDK drives a real groupcastd with the official PubNub JavaScript
// SDKs (npm pubnub@11 and pubnub12, an alias of pubnub@12, installed by
// scripts/test into sdktest/), each against a node of its own, in the event
// engine mode and the legacy loop: sdktest/conformance.mjs.
func TestPubNubSDK(t *testing.T) {
	dir := sdkDir(t)
	for _, pkg := range []string{"pubnub", "pubnub12"} {
		t.Run(pkg, func(t *testing.T) {
			if _, err := os.Stat(filepath.Join(dir, "node_modules", pkg, "package.json")); err != nil {
				t.Fatalf("the PubNub SDK %s is not installed in %s: run `make test` (it runs npm ci there): %v", pkg, dir, err)
			}
			runConformance(t, "sdk", "node", filepath.Join(dir, "conformance.mjs"), pkg)
		})
	}
}

// TestPubNubPythonSDK drives a real groupcastd with the official PubNub
// Python SDK (PyPI pubnub, pinned in sdktest/requirements.txt and installed
// by scripts/test into sdktest/.venv): sdktest/conformance.py. The Python
// SDK is stricter about JSON types than the JavaScript one.
func TestPubNubPythonSDK(t *testing.T) {
	dir := sdkDir(t)
	python := filepath.Join(dir, ".venv", "bin", "python")
	if out, err := exec.Command(python, "-c", "import pubnub").CombinedOutput(); err != nil {
		t.Fatalf("the PubNub Python SDK is not installed in %s/.venv: run `make test` (it creates the venv from requirements.txt): %v %s", dir, err, out)
	}
	runConformance(t, "sdk-python", python, filepath.Join(dir, "conformance.py"))
}

func sdkDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../../sdktest")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// runConformance runs an SDK's conformance script against a fresh embedded
// node (with Message Persistence, the default) and prints its summary
// ("N passed, M failed") after label, followed by the SDK the script names
// on its first line. args follow the node's URL and admin URL.
func runConformance(t *testing.T, label, interpreter, script string, args ...string) {
	t.Helper()
	s := start(t, "--data", t.TempDir())
	cmd := exec.Command(interpreter, append([]string{script, s.url, s.admin}, args...)...)
	cmd.Dir = filepath.Dir(script)
	out, err := cmd.CombinedOutput()
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	summary, sdk := "", ""
	for sc.Scan() {
		t.Log(sc.Text())
		if sdk == "" {
			sdk = sc.Text()
		}
		if strings.Contains(sc.Text(), " passed, ") {
			summary = sc.Text()
		}
	}
	fmt.Printf("%s: %s (%s)\n", label, summary, sdk)
	if err != nil || !strings.HasSuffix(summary, " 0 failed") {
		t.Fatalf("%s conformance: %v (%s)", label, err, summary)
	}
}
