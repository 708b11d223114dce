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
// SDK (npm pubnub@11, installed by scripts/test into sdktest/), in the event
// engine mode and the legacy loop: sdktest/conformance.mjs.
func TestPubNubSDK(t *testing.T) {
	dir := sdkDir(t)
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "pubnub", "package.json")); err != nil {
		t.Fatalf("the PubNub SDK is not installed in %s: run `make test` (it runs npm ci there): %v", dir, err)
	}
	runConformance(t, "sdk", "node", filepath.Join(dir, "conformance.mjs"))
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
// node and prints its summary ("N passed, M failed") after label.
func runConformance(t *testing.T, label, interpreter, script string) {
	t.Helper()
	s := start(t, "--data", t.TempDir())
	cmd := exec.Command(interpreter, script, s.url, s.admin)
	cmd.Dir = filepath.Dir(script)
	out, err := cmd.CombinedOutput()
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	summary := ""
	for sc.Scan() {
		t.Log(sc.Text())
		if strings.Contains(sc.Text(), " passed, ") {
			summary = sc.Text()
		}
	}
	fmt.Printf("%s: %s\n", label, summary)
	if err != nil || !strings.HasSuffix(summary, " 0 failed") {
		t.Fatalf("%s conformance: %v (%s)", label, err, summary)
	}
}
