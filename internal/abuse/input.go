package abuse

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/groupcast/groupcast/channelgroups"
)

// The probes of malformed, oversized and forged input.

func publishPath(channel string) string {
	return "/publish/" + Account + "/" + Account + "/0/" + channel + "/0"
}

// retryNoAnswer repeats a request whose connection ended before its answer
// could be read (a server that answers 413 or 431 and closes may reset the
// connection under an answer not yet read): up to three tries.
func retryNoAnswer(do func() (Answer, error)) (Answer, error) {
	var (
		a   Answer
		err error
	)
	for range 3 {
		if a, err = do(); !errors.Is(err, errNoAnswer) {
			break
		}
	}
	return a, err
}

// noMessages checks that nothing was stored on channel of Account.
func noMessages(ctx context.Context, e *Env, f *failures, channel string) {
	a, err := e.get(ctx, "/v3/history/sub-key/"+Account+"/channel/"+channel)
	if !f.expect("history of "+channel, a, err, 200) {
		return
	}
	var h struct {
		Channels map[string][]json.RawMessage `json:"channels"`
	}
	if err := json.Unmarshal(a.Body, &h); err != nil {
		f.add("history of %s: %s: %w", channel, clip(a.Body), err)
		return
	}
	if n := len(h.Channels[channel]); n > 0 {
		f.add("history of %s holds %d messages, want none: %s", channel, n, clip(a.Body))
	}
}

func probeTimeNumber(ctx context.Context, e *Env) error {
	var f failures
	a, err := e.get(ctx, "/time/0")
	if !f.expect("GET /time/0", a, err, 200) {
		return f.err()
	}
	var v []json.RawMessage
	if err := json.Unmarshal(a.Body, &v); err != nil || len(v) != 1 {
		f.add("GET /time/0: got %s, want a JSON array of one number", clip(a.Body))
		return f.err()
	}
	if len(v[0]) > 0 && v[0][0] == '"' {
		f.add("GET /time/0: got %s, a string; want a JSON number, as PubNub answers (the Python SDK's pubnub.time() fails on a string)", clip(a.Body))
		return f.err()
	}
	tt, err := strconv.ParseInt(string(v[0]), 10, 64)
	if err != nil {
		f.add("GET /time/0: got %s, want an integer timetoken: %w", clip(a.Body), err)
		return f.err()
	}
	if d := time.Since(channelgroups.Timetoken(tt).Time()); d > time.Minute || d < -time.Minute {
		f.add("GET /time/0: got %d, %v away from this clock; want a 17-digit timetoken of now", tt, d)
	}
	return f.err()
}

func probeQuery1MB(ctx context.Context, e *Env) error {
	var f failures
	huge := strings.Repeat("a", 1<<20)
	for _, target := range []string{
		"/time/0?x=" + huge,
		cgPath(Account, "q1mb") + "?add=" + huge,
	} {
		a, err := retryNoAnswer(func() (Answer, error) { return e.get(ctx, target) })
		f.expect(label("GET", target), a, err, 414, 431)
	}
	return f.err()
}

func probeBody10MB(ctx context.Context, e *Env) error {
	var f failures
	const size = 10 << 20
	chunk := bytes.Repeat([]byte("a"), 64<<10)
	target := publishPath("body10")
	head := "POST " + target + " HTTP/1.1\r\nHost: " + e.host() + "\r\nContent-Type: application/json\r\n"
	lengthBody := func(c net.Conn) error {
		for sent := 0; sent < size; sent += len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				return err
			}
		}
		return nil
	}
	chunkedBody := func(c net.Conn) error {
		prefix := []byte(strconv.FormatInt(int64(len(chunk)), 16) + "\r\n")
		for sent := 0; sent < size; sent += len(chunk) {
			if _, err := c.Write(append(append(prefix[:len(prefix):len(prefix)], chunk...), "\r\n"...)); err != nil {
				return err
			}
		}
		_, err := c.Write([]byte("0\r\n\r\n"))
		return err
	}
	for _, r := range []struct {
		what, head string
		body       func(net.Conn) error
	}{
		{"10 MB body with Content-Length", head + "Content-Length: " + strconv.Itoa(size) + "\r\n\r\n", lengthBody},
		{"10 MB chunked body", head + "Transfer-Encoding: chunked\r\n\r\n", chunkedBody},
	} {
		a, err := retryNoAnswer(func() (Answer, error) { return e.roundTrip(ctx, "", r.head, r.body, 30*time.Second) })
		f.expect("POST "+target+": "+r.what, a, err, 413)
	}
	noMessages(ctx, e, &f, "body10")
	return f.err()
}

// bombMiB is how much the compression bombs inflate to.
const bombMiB = 32

func probeCompressionBomb(ctx context.Context, e *Env) error {
	var f failures
	// A JSON string of 32 MiB, a thousand times the largest message:
	// deflate packs it into about 40 KB, well under the 1 MiB body limit;
	// the node must not inflate it all. (BestSpeed: this runs under -race.)
	bomb := func(w io.WriteCloser) {
		chunk := bytes.Repeat([]byte("a"), 1<<20)
		_, _ = w.Write([]byte(`"`))
		for range bombMiB {
			_, _ = w.Write(chunk)
		}
		_, _ = w.Write([]byte(`"`))
		_ = w.Close()
	}
	var z, g bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&z, zlib.BestSpeed)
	bomb(zw)
	gw, _ := gzip.NewWriterLevel(&g, gzip.BestSpeed)
	bomb(gw)
	truncated := z.Bytes()[:z.Len()/2]
	target := publishPath("bomb")
	for _, r := range []struct {
		what     string
		body     []byte
		encoding string
		want     []int
	}{
		{fmt.Sprintf("zlib bomb (%d KB → %d MiB)", z.Len()>>10, bombMiB), z.Bytes(), "deflate", []int{400, 413}},
		{"zlib bomb without Content-Encoding", z.Bytes(), "", []int{400, 413}},
		{fmt.Sprintf("gzip bomb (%d KB → %d MiB)", g.Len()>>10, bombMiB), g.Bytes(), "gzip", []int{400, 413, 415}},
		{"truncated zlib stream", truncated, "deflate", []int{400}},
	} {
		var hdr []string
		if r.encoding != "" {
			hdr = append(hdr, "Content-Encoding: "+r.encoding)
		}
		a, err := e.post(ctx, target, r.body, hdr...)
		f.expect("POST "+target+": "+r.what, a, err, r.want...)
	}
	noMessages(ctx, e, &f, "bomb")
	return f.err()
}

func probePathTricks(ctx context.Context, e *Env) error {
	var f failures
	cg := cgPath(Account, "")
	for _, r := range []struct {
		target string
		want   []int
	}{
		{cg + "/..%2F..%2Fetc?add=x", []int{400}},
		{cg + "/../../../../time/0", []int{400, 404}},
		{cg + "/family/../../../../etc/passwd", []int{400, 404}},
		{cg + "/a%2Fb?add=x", []int{400}},
		{cg + "/family%2Fremove", []int{400}}, // an encoded "/" must not make a delete
		{cg + "/a%00b?add=x", []int{400}},
		{cg + "/%C0%AE%C0%AE%C0%AF?add=x", []int{400}}, // overlong "../"
		{cg + "/%E0%80%AFx?add=x", []int{400}},         // overlong "/"
		{cg + "/x%?add=y", []int{400}},                 // a bad escape in the path
		{"/v1/channel-registration/sub-key/" + Account + "%2Fchannel-group/x?add=y", []int{400, 404}},
		{"/publish/" + Account + "/" + Account + "/0/..%2F..%2Fx/0/1", []int{400}},
		{"/publish/" + Account + "/" + Account + "/0/%C0%AF/0/1", []int{400}},
		{"/v2/subscribe/" + Account + "/a%00b/0", []int{400}},
		{"/v2/history/sub-key/" + Account + "/channel/%C0%AF", []int{400}},
		{"/%2e%2e/%2e%2e/etc/passwd", []int{400, 404}},
		{"//time/0", []int{400, 404}},
		{"/time/0%00", []int{400, 404}},
	} {
		a, err := e.get(ctx, r.target)
		f.expect(label("GET", r.target), a, err, r.want...)
	}
	// Double encoding is decoded once: %252F is the three characters "%2F",
	// a valid name, so this lists a group that does not exist.
	target := cg + "/a%252Fb"
	chs, a, err := listChannels(ctx, e, Account, "a%2Fb", "")
	if err != nil {
		f.add("GET %s: %w", target, err)
	} else if len(chs) != 0 {
		f.add("GET %s: got %s, want an empty group", target, clip(a.Body))
	}
	return f.err()
}

func probeBadEscapes(ctx context.Context, e *Env) error {
	var f failures
	for _, target := range []string{
		cgPath(Account, "esc") + "?add=%",
		cgPath(Account, "esc") + "?add=a%ZZb",
		cgPath(Account, "esc") + "?add=ok,a%2",
		cgPath(Account, "esc") + "?add=%E0%A4%A",
		cgPath(Account, "family") + "?remove=news%ZZ",
		cgPath(Account, "family") + "?add=%Gx",
		"/v2/subscribe/" + Account + "/,/0?channel-group=fam%ZZily",
		"/v2/presence/sub-key/" + Account + "/channel/news/heartbeat?uuid=u%ZZ",
	} {
		a, err := e.get(ctx, target)
		f.expect(label("GET", target), a, err, 400)
	}
	return f.err() // the suite's snapshot shows whether a channel was created
}

func probeInvalidUTF8(ctx context.Context, e *Env) error {
	var f failures
	pub := publishPath("utf8")
	for _, target := range []string{
		pub + "/%22%FF%FE%22",                       // bytes that are never UTF-8
		pub + "/%22%ED%A0%80%22",                    // a UTF-16 surrogate
		pub + "/%22%C0%AF%22",                       // an overlong "/"
		pub + "/%7B%22k%22%3A%22%F4%90%80%80%22%7D", // past U+10FFFF, inside an object
		pub + "/1?meta=%7B%22a%22%3A%22%FF%22%7D",   // in meta
	} {
		a, err := e.get(ctx, target)
		f.expect(label("GET", target), a, err, 400)
	}
	a, err := e.post(ctx, pub, []byte("\"\xff\xfe\""))
	f.expect("POST "+pub+" with a body that is not UTF-8", a, err, 400)
	noMessages(ctx, e, &f, "utf8")
	return f.err()
}

func probeTokens(ctx context.Context, e *Env) error {
	var f failures
	genuine := e.Fixture.Token
	shard := channelgroups.ShardOf(Account, e.shards())
	key, err := channelgroups.NewTokenKey(e.Node.Secret, 0)
	if err != nil {
		return fmt.Errorf("the node's secret: %w", err)
	}
	other, _ := channelgroups.NewTokenKey([]byte("another-cluster-secret-0123456789"), 0)
	now := time.Now()
	at := func(t time.Time) channelgroups.Token {
		return channelgroups.Token{Shard: shard, At: channelgroups.TimetokenOf(t), Origin: 1,
			Positions: []channelgroups.RegionPosition{{Region: 1, Pos: channelgroups.Position{Ms: uint64(t.UnixMilli())}}}}
	}
	raw, err := base64.RawURLEncoding.DecodeString(genuine)
	if err != nil {
		return fmt.Errorf("the setup's token %q: %w", genuine, err)
	}
	raw[len(raw)/2] ^= 1 // one bit of the payload or of the signature
	flipped := base64.RawURLEncoding.EncodeToString(raw)
	future := at(now.Add(time.Hour))
	futurePos := at(now)
	futurePos.Positions[0].Pos.Ms = uint64(now.Add(time.Hour).UnixMilli())
	bad := []struct{ what, token string }{
		{"one bit flipped", flipped},
		{"truncated", genuine[:len(genuine)-6]},
		{"junk appended", genuine + "AAAA"},
		{"not base64url", "!!!not-a-token!!!"},
		{"4 KB", strings.Repeat("A", 4096)},
		{"another account's", e.Fixture.DemoToken},
		{"signed with another cluster's secret", other.Encode(Account, at(now))},
		{"an edit an hour ahead", key.Encode(Account, future)},
		{"a log position an hour ahead", key.Encode(Account, futurePos)},
		{"another shard's", key.Encode(Account, channelgroups.Token{Shard: (shard + 1) % e.shards(), At: channelgroups.TimetokenOf(now), Origin: 1})},
	}
	list := cgPath(Account, "family")
	for _, b := range bad {
		for _, target := range []string{
			list + "?token=" + b.token,
			cgPath(Account, "family") + "?add=tok&token=" + b.token,
			"/v2/subscribe/" + Account + "/news/0?token=" + b.token + "&channel-group=family",
			publishPath("tok") + "/1?token=" + b.token,
		} {
			a, err := e.get(ctx, target)
			f.expect(fmt.Sprintf("%s token: %s", b.what, label("GET", target)), a, err, 400)
		}
	}
	// Tokens do not expire: one issued long ago (here, forged for 2001)
	// covers nothing newer than the store, so it reads what a read without
	// a token reads.
	old := key.Encode(Account, at(time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)))
	want, _, err := listChannels(ctx, e, Account, "family", "")
	f.addErr(err)
	for _, tok := range []struct{ what, token string }{{"an old (expired) token", old}, {"the genuine token", genuine}} {
		got, a, err := listChannels(ctx, e, Account, "family", "token="+tok.token)
		switch {
		case err != nil:
			f.add("list with %s: %w", tok.what, err)
		case fmt.Sprint(got) != fmt.Sprint(want):
			f.add("list with %s: got %s, want the channels %q", tok.what, clip(a.Body), want)
		}
	}
	noMessages(ctx, e, &f, "tok")
	return f.err()
}

// handshake subscribes to channel with tt=0 and returns the cursor.
func (e *Env) handshake(ctx context.Context, channel, uuid string) (string, error) {
	a, err := e.get(ctx, "/v2/subscribe/"+Account+"/"+channel+"/0?uuid="+uuid)
	if err != nil || a.Status != 200 {
		return "", fmt.Errorf("handshake on %s: %d %s %v", channel, a.Status, clip(a.Body), err)
	}
	var r struct {
		T struct{ T string } `json:"t"`
	}
	if err := json.Unmarshal(a.Body, &r); err != nil || r.T.T == "" {
		return "", fmt.Errorf("handshake on %s: %s", channel, clip(a.Body))
	}
	return r.T.T, nil
}

func probeFutureCursor(ctx context.Context, e *Env) error {
	var f failures
	if _, err := e.handshake(ctx, "fut", "fut"); err != nil {
		return err
	}
	const wait = 5 * time.Second
	for _, tt := range []struct{ what, tt string }{
		{"an hour ahead", channelgroups.TimetokenOf(time.Now().Add(time.Hour)).String()},
		{"int64 max", "9223372036854775807"},
	} {
		target := "/v2/subscribe/" + Account + "/fut/0?uuid=fut&tt=" + tt.tt
		a, err := e.roundTrip(ctx, "", "GET "+target+" HTTP/1.1\r\nHost: "+e.host()+"\r\nConnection: close\r\n\r\n", nil, wait)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			f.add("cursor %s: GET %s: no answer within %v (the poll parked on a cursor from the future), want 400", tt.what, target, wait)
			continue
		}
		f.expect(fmt.Sprintf("cursor %s: GET %s", tt.what, target), a, err, 400)
	}
	return f.err()
}

func probeLongUUID(ctx context.Context, e *Env) error {
	var f failures
	long := strings.Repeat("u", 100<<10)
	chs := make([]string, 100)
	for i := range chs {
		chs[i] = "lu" + strconv.Itoa(i)
	}
	list := strings.Join(chs, ",")
	var rss0 int64
	if e.Samples != nil {
		rss0, _ = e.Samples.Now()
	}
	for i := range 5 {
		for _, target := range []string{
			"/v2/presence/sub-key/" + Account + "/channel/" + list + "/heartbeat?heartbeat=300&uuid=" + long + strconv.Itoa(i),
			"/v2/subscribe/" + Account + "/" + list + "/0?heartbeat=300&uuid=" + long + strconv.Itoa(i),
		} {
			a, err := e.get(ctx, target)
			f.expect(label("GET", target), a, err, 400)
		}
	}
	target := publishPath("lu") + "/1?uuid=" + long
	a, err := e.get(ctx, target)
	f.expect(label("GET", target), a, err, 400)
	// The bound itself: 92 bytes pass, 93 do not.
	hb := "/v2/presence/sub-key/" + Account + "/channel/lu0/heartbeat?uuid="
	a, err = e.get(ctx, hb+strings.Repeat("v", channelgroups.MaxNameRunes))
	f.expect("heartbeat with a 92-byte uuid", a, err, 200)
	a, err = e.get(ctx, hb+strings.Repeat("v", channelgroups.MaxNameRunes+1))
	f.expect("heartbeat with a 93-byte uuid", a, err, 400)
	a, err = e.get(ctx, "/v2/presence/sub-key/"+Account+"/channel/lu0/leave?uuid="+strings.Repeat("v", channelgroups.MaxNameRunes))
	f.expect("leave of the 92-byte uuid", a, err, 200)
	if e.Samples != nil {
		rss1, _ := e.Samples.Now()
		e.logf("RSS %s → %s MiB over 10 requests with a 100 KB uuid on 100 channels", MiB(rss0), MiB(rss1))
	}
	return f.err()
}
