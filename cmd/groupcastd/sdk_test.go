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
	dir, err := filepath.Abs("../../sdktest")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "pubnub", "package.json")); err != nil {
		t.Fatalf("the PubNub SDK is not installed in %s: run `make test` (it runs npm ci there): %v", dir, err)
	}
	s := start(t, "--data", t.TempDir())
	cmd := exec.Command("node", filepath.Join(dir, "conformance.mjs"), s.url)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	summary := ""
	for sc.Scan() {
		t.Log(sc.Text())
		if strings.Contains(sc.Text(), " passed, ") {
			summary = sc.Text()
		}
	}
	fmt.Printf("sdk: %s\n", summary)
	if err != nil || !strings.HasSuffix(summary, " 0 failed") {
		t.Fatalf("SDK conformance: %v (%s)", err, summary)
	}
}

// TestPubNubPythonSDK drives a real groupcastd with the official PubNub
// Python SDK (PyPI pubnub, pinned in sdktest/requirements.txt and installed
// by scripts/test into sdktest/.venv): sdktest/conformance.py. The Python
// SDK is stricter about JSON types than the JavaScript one.
func TestPubNubPythonSDK(t *testing.T) {
	dir, err := filepath.Abs("../../sdktest")
	if err != nil {
		t.Fatal(err)
	}
	python := filepath.Join(dir, ".venv", "bin", "python")
	if out, err := exec.Command(python, "-c", "import pubnub").CombinedOutput(); err != nil {
		t.Fatalf("the PubNub Python SDK is not installed in %s/.venv: run `make test` (it creates the venv from requirements.txt): %v %s", dir, err, out)
	}
	s := start(t, "--data", t.TempDir())
	cmd := exec.Command(python, filepath.Join(dir, "conformance.py"), s.url)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	summary := ""
	for sc.Scan() {
		t.Log(sc.Text())
		if strings.Contains(sc.Text(), " passed, ") {
			summary = sc.Text()
		}
	}
	fmt.Printf("sdk-python: %s\n", summary)
	if err != nil || !strings.HasSuffix(summary, " 0 failed") {
		t.Fatalf("Python SDK conformance: %v (%s)", err, summary)
	}
}
