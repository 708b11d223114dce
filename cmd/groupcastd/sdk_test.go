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
