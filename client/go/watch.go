package leaderelection

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// KeepaliveTimeout: a stream that sends no byte for this long is dead (the
// service sends a keep-alive comment every 15 s).
const KeepaliveTimeout = 45 * time.Second

// Event is one change of one key, or (Replay) its state when the stream (re)connected.
type Event struct {
	Type     string // "acquired", "taken_over", "renewed", "released", "expired", "deleted", "successor_named", "transferred"
	Key      string
	Version  int64 // strictly increases over a key's events
	Revision int64
	Replay   bool
	Lease    Lease
	ID       string // KEY:VERSION: pass as LastEventID to resume after this event
}

// Free reports that the lease may be acquired now: it was released, it
// expired, it was deleted, or it was transferred (then only by
// Lease.Successor for one ttl; anyone else's acquire says lease_held and waits
// as before). "successor_named" leaves the lease held: not free yet.
func (e *Event) Free() bool { return !e.Lease.Held }

// WatchOptions select what a stream sends.
type WatchOptions struct {
	Renewed     bool   // also send "renewed" events
	LastEventID string // resume after this event: its key's state is not sent again unless it changed
}

// Stream is an open watch stream: call Next until it fails, then Close.
//
//	stream, err := client.Watch(ctx, "cron", leaderelection.WatchOptions{})
//	defer stream.Close()
//	for {
//		event, err := stream.Next() // io.EOF when the service ends the stream
//		if err != nil { break }
//		fmt.Println(event.Type, event.Lease.Holder, event.Lease.FencingToken)
//	}
//
// Close may be called from another goroutine to end a blocked Next at once.
// The wire format is parsed here: the standard library has no SSE reader.
type Stream struct {
	body    io.ReadCloser
	lines   *bufio.Reader
	parser  sseParser
	last    map[string]int64
	cancel  context.CancelFunc
	idle    *time.Timer
	closing sync.Once
}

// Watch opens the key's stream of events.
func (c *Client) Watch(ctx context.Context, key string, opts WatchOptions) (*Stream, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	return c.openStream(ctx, leasePath(key, "watch"), url.Values{}, opts)
}

// WatchPrefix opens the stream of every key starting with prefix ("" for all).
func (c *Client) WatchPrefix(ctx context.Context, prefix string, opts WatchOptions) (*Stream, error) {
	query := url.Values{}
	if prefix != "" {
		query.Set("prefix", prefix)
	}
	return c.openStream(ctx, "/v1/watch", query, opts)
}

func (c *Client) openStream(parent context.Context, path string, query url.Values, opts WatchOptions) (*Stream, error) {
	if opts.Renewed {
		query.Set("renewed", "true")
	}
	ctx, cancel := context.WithCancel(parent)
	req, err := c.request(ctx, http.MethodGet, path, query, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-store")
	if opts.LastEventID != "" {
		req.Header.Set("Last-Event-ID", opts.LastEventID)
	}
	// The connect (up to the answer's headers) is bounded by the client's
	// timeout; after that, by the keep-alive timeout between bytes.
	connect := time.AfterFunc(c.timeout, cancel)
	resp, err := c.http.Do(req)
	stopped := connect.Stop()
	if err != nil {
		cancel()
		return nil, transportError(ctx, http.MethodGet, path, err)
	}
	if !stopped {
		resp.Body.Close()
		cancel()
		return nil, &TransportError{Method: http.MethodGet, Path: path, Timeout: true, Err: context.DeadlineExceeded}
	}
	if resp.StatusCode/100 != 2 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		cancel()
		return nil, errorFor(resp.StatusCode, resp.Header, data)
	}
	s := &Stream{
		body:   resp.Body,
		lines:  bufio.NewReaderSize(resp.Body, 64<<10),
		last:   map[string]int64{},
		cancel: cancel,
		idle:   time.AfterFunc(KeepaliveTimeout, cancel),
	}
	if key, ver, ok := splitEventID(opts.LastEventID); ok {
		s.last[key] = ver
	}
	return s, nil
}

// Next blocks until the next event that is newer than what was delivered for
// its key; io.EOF when the service ended the stream, a *TransportError when
// the connection broke or stayed silent past KeepaliveTimeout.
func (s *Stream) Next() (Event, error) {
	for {
		line, err := s.lines.ReadString('\n')
		if err != nil {
			if err == io.EOF && line == "" {
				return Event{}, io.EOF
			}
			return Event{}, &TransportError{Method: http.MethodGet, Path: "watch", Err: err}
		}
		s.idle.Reset(KeepaliveTimeout)
		name, data, id, done := s.parser.feed(strings.TrimRight(line, "\r\n"))
		if !done {
			continue
		}
		event, known, perr := parseEvent(name, data, id)
		if perr != nil {
			return Event{}, perr
		}
		if !known || event.Version <= s.lastVersion(event.Key) {
			continue
		}
		s.last[event.Key] = event.Version
		return event, nil
	}
}

func (s *Stream) lastVersion(key string) int64 {
	if v, ok := s.last[key]; ok {
		return v
	}
	return -1
}

// Close ends the stream; a Next blocked in another goroutine returns an error.
func (s *Stream) Close() error {
	s.closing.Do(func() {
		s.idle.Stop()
		s.cancel()
		s.body.Close()
	})
	return nil
}

func splitEventID(id string) (string, int64, bool) {
	i := strings.LastIndexByte(id, ':')
	if i < 0 {
		return "", 0, false
	}
	ver, err := strconv.ParseInt(id[i+1:], 10, 64)
	if err != nil || ver < 0 {
		return "", 0, false
	}
	return id[:i], ver, true
}

var eventTypes = map[string]bool{
	"acquired": true, "taken_over": true, "renewed": true, "released": true, "expired": true,
	"deleted": true, "successor_named": true, "transferred": true,
}

// parseEvent types one SSE event; known is false for an event type this
// client does not know (skipped, so the service may add types).
func parseEvent(name, data, id string) (Event, bool, error) {
	if !eventTypes[name] {
		return Event{}, false, nil
	}
	var body struct {
		Key      *string         `json:"key"`
		Version  *int64          `json:"version"`
		Revision *int64          `json:"revision"`
		Replay   *bool           `json:"replay"`
		Lease    json.RawMessage `json:"lease"`
	}
	if err := json.Unmarshal([]byte(data), &body); err != nil {
		return Event{}, true, &ServiceError{Code: "internal", Status: 200, Message: "watch: not a lease event: " + err.Error()}
	}
	if body.Key == nil || body.Version == nil || body.Revision == nil || body.Replay == nil {
		return Event{}, true, &ServiceError{Code: "internal", Status: 200, Message: "watch: not a lease event: a field is missing"}
	}
	lease, err := parseLease(body.Lease)
	if err != nil {
		return Event{}, true, &ServiceError{Code: "internal", Status: 200, Message: "watch: " + err.Error()}
	}
	if id == "" {
		id = fmt.Sprintf("%s:%d", *body.Key, *body.Version)
	}
	return Event{
		Type: name, Key: *body.Key, Version: *body.Version, Revision: *body.Revision,
		Replay: *body.Replay, Lease: *lease, ID: id,
	}, true, nil
}

// sseParser is the Server-Sent Events wire format, one line at a time (no I/O).
type sseParser struct {
	event string
	data  []string
	id    string
}

// feed takes one line without its end; done is true when a blank line
// completes an event that had data. Comments (keep-alives) are ignored.
func (p *sseParser) feed(line string) (event, data, id string, done bool) {
	if line == "" {
		if len(p.data) > 0 {
			event, data, id, done = p.event, strings.Join(p.data, "\n"), p.id, true
		}
		if event == "" && done {
			event = "message"
		}
		p.event, p.data, p.id = "", nil, ""
		return event, data, id, done
	}
	if strings.HasPrefix(line, ":") {
		return "", "", "", false
	}
	name, value, _ := strings.Cut(line, ":")
	value = strings.TrimPrefix(value, " ")
	switch name {
	case "event":
		p.event = value
	case "data":
		p.data = append(p.data, value)
	case "id":
		if !strings.ContainsRune(value, 0) {
			p.id = value
		}
	}
	return "", "", "", false
}
