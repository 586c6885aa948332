package leaderelection

// Hand-over against a live service (see live_test.go): an admin's transfer of
// a lease held by an elector, and a key deleted under an open watch stream.
// The service runs without an auth file, so every caller is an admin.

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// adminCall sends an operator's request and decodes its JSON answer.
func adminCall(t *testing.T, method, url, body string) map[string]any {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%s %s: %d %v %v", method, url, resp.StatusCode, out, err)
	}
	return out
}

func (e *liveElector) seen() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string{}, e.events...)
}

func TestLiveAdminTransferHandsOver(t *testing.T) {
	url := liveServer(t)
	key := uniqueKey(t, "transfer")
	a := startElector(t, url, key, "go-a", fast)
	liveEventually(t, "go-a elected", 15*time.Second, func() bool { return len(a.elections()) == 1 })
	b := startElector(t, url, key, "go-b", fast)
	lm := a.lm

	began := time.Now()
	named := adminCall(t, http.MethodPost, url+"/v1/leases/"+key+"/transfer", `{"to": "go-b"}`)
	if named["successor"] != "go-b" || named["holder"] != "go-a" || named["held"] != true {
		t.Fatalf("transfer answered %v", named)
	}
	// go-a's next renew (within Renew) is lease_lost: it steps down and
	// releases, and go-b, woken by "transferred", acquires at once; without
	// the release go-b would wait for the term to lapse (Term after its last renew).
	liveEventually(t, "go-b elected", 10*time.Second, func() bool { return len(b.elections()) == 1 })
	took := time.Since(began)
	if took >= fast.Term {
		t.Fatalf("go-b led %v after the transfer: not before go-a's term would have lapsed", took)
	}
	if got := a.seen(); len(got) != 2 || got[0] != "elected" || got[1] != "ousting" {
		t.Fatalf("go-a's callbacks: %v", got)
	}
	if b.elections()[0] <= a.elections()[0] {
		t.Fatalf("tokens %v then %v", a.elections(), b.elections())
	}
	history := adminCall(t, http.MethodGet, url+"/v1/leases/"+key+"/history", "")
	terms := history["terms"].([]any)
	ended := terms[len(terms)-2].(map[string]any)
	if ended["holder"] != "go-a" || ended["ended_by"] != "transferred" {
		t.Fatalf("go-a's term ended %v, want released with the successor named", ended)
	}
	// go-a goes on campaigning: its Start has not returned, and it follows.
	select {
	case err := <-a.done:
		t.Fatalf("go-a's election ended: %v", err)
	default:
	}
	if lm.IsLeader() {
		t.Fatal("go-a still says it leads")
	}
}

func TestLiveWatchSurvivesDelete(t *testing.T) {
	url := liveServer(t)
	c := liveClient(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key := uniqueKey(t, "delete")
	first, err := c.Acquire(ctx, key, "h", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := c.Watch(ctx, key, WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if replay, err := stream.Next(); err != nil || replay.Type != "acquired" {
		t.Fatalf("replay: %+v %v", replay, err)
	}
	if _, err := c.Release(ctx, key, "h", first.FencingToken); err != nil {
		t.Fatal(err)
	}
	if released, err := stream.Next(); err != nil || released.Type != "released" {
		t.Fatalf("released: %+v %v", released, err)
	}
	adminCall(t, http.MethodDelete, url+"/v1/leases/"+key, "")
	deleted, err := stream.Next()
	if err != nil || deleted.Type != "deleted" || !deleted.Free() || deleted.Lease.FencingToken != first.FencingToken {
		t.Fatalf("deleted: %+v %v", deleted, err)
	}
	// The same stream goes on: the key acquired again is the next event.
	again, err := c.Acquire(ctx, key, "h2", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	next, err := stream.Next()
	if err != nil || next.Type != "acquired" || next.Lease.Holder != "h2" || next.Version <= deleted.Version {
		t.Fatalf("after delete: %+v %v", next, err)
	}
	if again.FencingToken <= first.FencingToken {
		t.Fatalf("token %d after delete, was %d", again.FencingToken, first.FencingToken)
	}
}
