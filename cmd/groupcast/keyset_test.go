package main

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/groupcast/groupcast/access"
	"github.com/groupcast/groupcast/access/admin"
	"github.com/groupcast/groupcast/internal/nodetest"
	"github.com/groupcast/groupcast/subscriber"
)

// adminServer serves the admin API of an embedded node's store, as
// groupcastd's admin listener does, and returns its base URL.
func adminServer(t *testing.T, token string) string {
	t.Helper()
	st, _ := nodetest.Embedded(t, nil, subscriber.Config{})
	reg, err := access.NewRegistry(st, access.RegistryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	h, err := admin.New(st, reg, admin.Config{Token: token})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// scriptJSON is exactly what create and rotate-secret print with --json.
var scriptJSON = regexp.MustCompile(`^\{"publish_key":"pub-c-[^"]+","subscribe_key":"sub-c-[^"]+","secret_key":"sec-c-[^"]+","pam":(true|false)\}\n$`)

func TestKeysetCommands(t *testing.T) {
	base := adminServer(t, "")
	cli := func(args ...string) string {
		t.Helper()
		var out, errs bytes.Buffer
		if err := run(t.Context(), append([]string{"keyset"}, args...), &out, &errs); err != nil {
			t.Fatalf("groupcast keyset %v: %v (%s)", args, err, errs.String())
		}
		return out.String()
	}

	out := cli("create", "--pam", "--json", "--admin", base)
	if !scriptJSON.MatchString(out) {
		t.Fatalf("create --json printed %q, want %s", out, scriptJSON)
	}
	var k keysetJSON
	if err := json.Unmarshal([]byte(out), &k); err != nil || !k.PAM {
		t.Fatalf("create --json: %+v %v", k, err)
	}

	t.Setenv("GROUPCAST_ADMIN", base) // the environment names the admin listener too
	human := cli("create")
	if !strings.Contains(human, "secret_key") || !strings.Contains(human, "access_manager  off") {
		t.Fatalf("create printed %q", human)
	}

	list := cli("list")
	if !strings.HasPrefix(list, "SUBSCRIBE_KEY") || !strings.Contains(list, k.SubscribeKey+"  "+k.PublishKey+"  on") || !strings.Contains(list, "2 keysets") {
		t.Fatalf("list printed %q", list)
	}
	if strings.Contains(list, k.SecretKey) {
		t.Fatalf("list printed a secret key: %q", list)
	}
	var all []keysetJSON
	if err := json.Unmarshal([]byte(cli("list", "--json")), &all); err != nil || len(all) != 2 {
		t.Fatalf("list --json: %+v %v", all, err)
	}
	if !strings.Contains(cli("list", "--json"), `"secret_key":"`+k.SecretKey+`"`) {
		t.Fatal("list --json lacks the secret key")
	}

	out = cli("rotate-secret", k.SubscribeKey, "--json") // flags after the argument too
	var r keysetJSON
	if err := json.Unmarshal([]byte(out), &r); err != nil || !scriptJSON.MatchString(out) {
		t.Fatalf("rotate-secret --json printed %q (%v)", out, err)
	}
	if r.SecretKey == k.SecretKey || r.SubscribeKey != k.SubscribeKey || r.PublishKey != k.PublishKey || !r.PAM {
		t.Fatalf("rotated %+v from %+v: want only the secret changed", r, k)
	}

	if out := cli("delete", k.SubscribeKey); out != "deleted "+k.SubscribeKey+"\n" {
		t.Fatalf("delete printed %q", out)
	}
	if list := cli("list"); strings.Contains(list, k.SubscribeKey) || !strings.Contains(list, "1 keyset ") {
		t.Fatalf("list after delete printed %q", list)
	}

	for _, bad := range []struct {
		args []string
		says string
	}{
		{[]string{"delete", k.SubscribeKey}, "404"},
		{[]string{"rotate-secret", "sub-c-none"}, "no keyset"},
		{[]string{"rotate-secret"}, "usage"},
		{[]string{"delete", "a", "b"}, "usage"},
		{[]string{"list", "extra"}, "usage"},
		{[]string{"create", "--pam=maybe"}, "invalid boolean"},
		{[]string{"list", "--pam"}, "not defined"}, // --pam is create's
		{[]string{"frobnicate"}, "usage"},
		{[]string{}, "usage"},
		{[]string{"list", "--admin", "127.0.0.1:8081"}, "not an http(s) URL"},
		{[]string{"list", "--admin", "http://127.0.0.1:1"}, "GROUPCAST_ADMIN"},
	} {
		var out, errs bytes.Buffer
		err := run(t.Context(), append([]string{"keyset"}, bad.args...), &out, &errs)
		if err == nil || !strings.Contains(err.Error(), bad.says) {
			t.Errorf("groupcast keyset %q: %v, want an error saying %q", bad.args, err, bad.says)
		}
	}
}

func TestKeysetCommandsWithToken(t *testing.T) {
	const token = "cli-admin-token-0123456789"
	base := adminServer(t, token)
	var out bytes.Buffer
	err := run(t.Context(), []string{"keyset", "list", "--admin", base}, &out, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("list without the token: %v, want a 401 error", err)
	}
	if err := run(t.Context(), []string{"keyset", "create", "--admin", base, "--admin-token", token, "--json"}, &out, &bytes.Buffer{}); err != nil || !scriptJSON.MatchString(out.String()) {
		t.Fatalf("create with --admin-token: %v %q", err, out.String())
	}
	t.Setenv("GROUPCAST_ADMIN_TOKEN", token)
	out.Reset()
	if err := run(t.Context(), []string{"keyset", "list", "--admin", base}, &out, &bytes.Buffer{}); err != nil || !strings.Contains(out.String(), "1 keyset ") {
		t.Fatalf("list with GROUPCAST_ADMIN_TOKEN: %v %q", err, out.String())
	}
}
