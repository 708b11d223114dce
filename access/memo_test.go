package access_test

import (
	"testing"
	"time"

	"github.com/groupcast/groupcast/access"
	"github.com/groupcast/groupcast/access/accesstest"
)

// TestMemo: a remembered decision is recalled for the same request parts
// only, and not after the keysets or revocations changed or the token
// expired; a refused request is never remembered.
func TestMemo(t *testing.T) {
	ctx := t.Context()
	now := time.Now()
	clock := func() time.Time { return now }
	st := accesstest.NewMemory()
	k, err := access.NewKeyset(true, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutKeyset(ctx, k); err != nil {
		t.Fatal(err)
	}
	reg, err := access.NewRegistry(st, access.RegistryConfig{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	g, err := access.NewGuard(reg, access.GuardConfig{Mode: access.Keysets, Store: st, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	tok := &access.Token{Version: access.TokenVersion, Issued: now, TTL: time.Hour,
		Resources: access.Grants{Channels: map[string]access.Perm{"ch": access.Read}}}
	ts, err := tok.Sign(k.SecretKey)
	if err != nil {
		t.Fatal(err)
	}
	path, auth, uuid := []byte("/v2/subscribe/"+k.SubscribeKey+"/ch/0"), []byte(ts), []byte("u")
	check := func(m *access.Memo, auth string, ch string) bool {
		gen := g.Generation()
		r := access.Request{SubscribeKey: k.SubscribeKey, Auth: auth, UUID: "u", Needs: []access.Need{{Kind: access.Channel, Name: ch, Perm: access.Read}}}
		if _, d := g.Check(&r); d != nil {
			return false
		}
		g.Remember(m, gen, &r, []byte("/v2/subscribe/"+k.SubscribeKey+"/"+ch+"/0"), nil, []byte(auth), uuid)
		return true
	}

	var m access.Memo
	if g.Recall(&m, path, nil, auth, uuid) {
		t.Fatal("an empty memo recalled a request")
	}
	if !check(&m, ts, "ch") {
		t.Fatal("the granted request was refused")
	}
	if !g.Recall(&m, path, nil, auth, uuid) {
		t.Fatal("the same request was not recalled")
	}
	for name, parts := range map[string][][]byte{
		"another path":  {[]byte("/v2/subscribe/" + k.SubscribeKey + "/other/0"), nil, auth, uuid},
		"a group":       {path, []byte("g"), auth, uuid},
		"another token": {path, nil, append([]byte("x"), auth...), uuid},
		"another uuid":  {path, nil, auth, []byte("v")},
		"no token":      {path, nil, nil, uuid},
	} {
		if g.Recall(&m, parts...) {
			t.Errorf("%s: recalled", name)
		}
	}

	// A reload that finds what the registry has (every Reload, and after
	// any admin call) leaves the decision in place.
	if err := reg.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if !g.Recall(&m, path, nil, auth, uuid) {
		t.Fatal("a reload that changed nothing voided the memo")
	}

	// A change to the keysets or revocations: checked again.
	if err := g.Revoke(ctx, k, ts); err != nil {
		t.Fatal(err)
	}
	if g.Recall(&m, path, nil, auth, uuid) {
		t.Fatal("recalled after the token was revoked")
	}
	if check(&m, ts, "ch") {
		t.Fatal("the revoked token was allowed")
	}

	// The token's expiry: checked again (and refused) once it passed.
	tok.Issued = now.Add(-time.Minute) // another token: the revoked one's twin would be revoked too
	if ts, err = tok.Sign(k.SecretKey); err != nil {
		t.Fatal(err)
	}
	auth = []byte(ts)
	var m2 access.Memo
	if !check(&m2, ts, "ch") || !g.Recall(&m2, path, nil, auth, uuid) {
		t.Fatal("a fresh token was not allowed and remembered")
	}
	now = now.Add(time.Hour - time.Minute)
	if g.Recall(&m2, path, nil, auth, uuid) {
		t.Fatal("recalled after the token expired")
	}

	// A refused request leaves nothing to recall.
	var m3 access.Memo
	if check(&m3, ts, "other") || g.Recall(&m3, []byte("/v2/subscribe/"+k.SubscribeKey+"/other/0"), nil, auth, uuid) {
		t.Fatal("a refused request was remembered")
	}
}
