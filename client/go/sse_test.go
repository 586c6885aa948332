package leaderelection

import (
	"reflect"
	"strings"
	"testing"
)

func TestSSEParser(t *testing.T) {
	type ev struct{ event, data, id string }
	cases := []struct {
		name  string
		lines string
		want  []ev
	}{
		{"one event", "event: acquired\nid: job:2\ndata: {}\n\n", []ev{{"acquired", "{}", "job:2"}}},
		{"keep-alive comments and retry hints are skipped", ": keep-alive\nretry: 1000\n\nevent: released\ndata: x\n\n", []ev{{"released", "x", ""}}},
		{"data lines are joined", "data: a\ndata: b\n\n", []ev{{"message", "a\nb", ""}}},
		{"no space after the colon", "event:expired\ndata:y\n\n", []ev{{"expired", "y", ""}}},
		{"an event without data is dropped", "event: acquired\n\n", nil},
		{"an id with NUL is ignored", "id: a\x00b\ndata: z\n\n", []ev{{"message", "z", ""}}},
		{"fields reset after each event", "event: a\nid: 1\ndata: d\n\ndata: e\n\n", []ev{{"a", "d", "1"}, {"message", "e", ""}}},
	}
	for _, c := range cases {
		var p sseParser
		var got []ev
		for _, line := range strings.Split(strings.TrimSuffix(c.lines, "\n"), "\n") {
			if event, data, id, done := p.feed(line); done {
				got = append(got, ev{event, data, id})
			}
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

func TestParseEvent(t *testing.T) {
	data := `{"type": "released", "key": "job", "version": 5, "revision": 2, "replay": true, "lease": ` + recordJSON + `}`
	event, known, err := parseEvent("released", data, "job:5")
	if err != nil || !known || event.Version != 5 || !event.Replay || event.ID != "job:5" || event.Lease.Holder != "host-b" {
		t.Fatalf("%+v %v %v", event, known, err)
	}
	if _, known, err := parseEvent("something_new", "{}", ""); known || err != nil {
		t.Fatal("an unknown event type is not skipped")
	}
	if _, _, err := parseEvent("acquired", `{"key": "job"}`, ""); err == nil {
		t.Fatal("an incomplete event is accepted")
	}
	if key, ver, ok := splitEventID("a:b:12"); !ok || key != "a:b" || ver != 12 {
		t.Fatal("splitEventID")
	}
}

func TestParseHandOverEvents(t *testing.T) {
	free := strings.Replace(recordJSON, `"held": true`, `"held": false, "successor": "host-c"`, 1)
	for _, c := range []struct {
		name, record string
		free         bool
	}{
		{"deleted", strings.Replace(recordJSON, `"held": true`, `"held": false`, 1), true},
		{"successor_named", strings.Replace(recordJSON, `"held": true`, `"held": true, "successor": "host-c"`, 1), false},
		{"transferred", free, true},
	} {
		data := `{"type": "` + c.name + `", "key": "job", "version": 9, "revision": 4, "replay": false, "lease": ` + c.record + `}`
		event, known, err := parseEvent(c.name, data, "")
		if err != nil || !known || event.Type != c.name || event.Free() != c.free {
			t.Fatalf("%s: %+v %v %v", c.name, event, known, err)
		}
		if c.name != "deleted" && event.Lease.Successor != "host-c" {
			t.Fatalf("%s: successor %q", c.name, event.Lease.Successor)
		}
	}
}
