package leaderelection

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Version is this SDK's version, sent in the User-Agent.
const Version = "0.1.0"

// DefaultTimeout bounds one call whose context has no deadline.
const DefaultTimeout = 5 * time.Second

// PageSize is how many leases List asks for per page.
const PageSize = 100

var keyPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Client is the service's HTTP API, typed: one method per call.
//
//	client, err := leaderelection.NewClient("http://127.0.0.1:8080", leaderelection.WithToken(tok))
//	lease, err := client.Acquire(ctx, "cron", "host-a", 10*time.Second)
//	lease, err = client.Renew(ctx, "cron", "host-a", lease.FencingToken, 10*time.Second)
//	_, err = client.Release(ctx, "cron", "host-a", lease.FencingToken)
//	leases, err := client.List(ctx, "cr") // every page
//
// Each call blocks for one HTTP request (List for one per page) and ends
// when ctx does; a ctx without a deadline gets the client's timeout. Errors
// are *ServiceError or *TransportError (see ErrLeaseHeld and the other
// sentinels). A Client may be shared between goroutines.
type Client struct {
	base    *url.URL
	token   string
	http    *http.Client
	timeout time.Duration
}

// Option configures a Client (and a ServiceBackend).
type Option func(*Client)

// WithToken sends "Authorization: Bearer TOKEN" with every call.
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// WithHTTPClient sends the calls through hc (proxies, TLS, transports).
// Its own Timeout, if any, also applies to watch streams: leave it zero.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.http = hc } }

// WithTimeout bounds each call whose context has no deadline (default 5 s).
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// NewClient makes a client of the service at baseURL ("http://host:port").
func NewClient(baseURL string, opts ...Option) (*Client, error) {
	base, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("leaderelection: service URL must be http(s)://host[:port], got %q", baseURL)
	}
	c := &Client{base: base, http: http.DefaultClient, timeout: DefaultTimeout}
	for _, opt := range opts {
		opt(c)
	}
	if c.timeout <= 0 {
		return nil, fmt.Errorf("leaderelection: timeout must be positive, got %v", c.timeout)
	}
	return c, nil
}

// URL is the service's base URL.
func (c *Client) URL() string { return c.base.String() }

// Acquire asks for key for ttl; ErrLeaseHeld (with the holder's lease) if another holder has it.
func (c *Client) Acquire(ctx context.Context, key, holder string, ttl time.Duration) (*Lease, error) {
	body := map[string]any{"holder": holder, "ttl": ttl.Seconds()}
	return c.leaseCall(ctx, http.MethodPost, key, "acquire", body)
}

// Renew extends a held lease; ttl 0 keeps its current ttl. ErrLeaseLost if
// another term has the key or it was released, ErrNotFound if never acquired.
func (c *Client) Renew(ctx context.Context, key, holder string, fencingToken int64, ttl time.Duration) (*Lease, error) {
	body := map[string]any{"holder": holder, "fencing_token": fencingToken}
	if ttl > 0 {
		body["ttl"] = ttl.Seconds()
	}
	return c.leaseCall(ctx, http.MethodPost, key, "renew", body)
}

// Release frees a held lease at once; releasing twice is a success.
func (c *Client) Release(ctx context.Context, key, holder string, fencingToken int64) (*Lease, error) {
	body := map[string]any{"holder": holder, "fencing_token": fencingToken}
	return c.leaseCall(ctx, http.MethodPost, key, "release", body)
}

// Get is the lease of key; ErrNotFound if it was never acquired.
func (c *Client) Get(ctx context.Context, key string) (*Lease, error) {
	return c.leaseCall(ctx, http.MethodGet, key, "", nil)
}

// Page is one page of a listing; NextCursor is "" on the last page.
type Page struct {
	Leases     []Lease
	NextCursor string
}

// ListPage is one page of the leases whose key starts with prefix, in key
// order: at most limit (1-1000; 0 means PageSize) from cursor ("" for the first).
func (c *Client) ListPage(ctx context.Context, prefix string, limit int, cursor string) (*Page, error) {
	if limit == 0 {
		limit = PageSize
	}
	query := url.Values{"limit": {strconv.Itoa(limit)}}
	if prefix != "" {
		query.Set("prefix", prefix)
	}
	if cursor != "" {
		query.Set("cursor", cursor)
	}
	status, header, data, err := c.do(ctx, http.MethodGet, "/v1/leases", query, nil)
	if err != nil {
		return nil, err
	}
	if status/100 != 2 {
		return nil, errorFor(status, header, data)
	}
	var doc struct {
		Leases     []json.RawMessage `json:"leases"`
		NextCursor *string           `json:"next_cursor"`
	}
	if err := json.Unmarshal(data, &doc); err != nil || doc.Leases == nil {
		return nil, &ServiceError{Code: "internal", Status: status, Message: "answer is not a lease list"}
	}
	page := &Page{Leases: make([]Lease, 0, len(doc.Leases))}
	for _, raw := range doc.Leases {
		lease, err := parseLease(raw)
		if err != nil {
			return nil, &ServiceError{Code: "internal", Status: status, Message: "answer is not a lease list: " + err.Error()}
		}
		page.Leases = append(page.Leases, *lease)
	}
	if doc.NextCursor != nil {
		page.NextCursor = *doc.NextCursor
	}
	return page, nil
}

// List is every lease whose key starts with prefix, fetched PageSize at a time.
func (c *Client) List(ctx context.Context, prefix string) ([]Lease, error) {
	var out []Lease
	cursor := ""
	for {
		page, err := c.ListPage(ctx, prefix, PageSize, cursor)
		if err != nil {
			return out, err
		}
		out = append(out, page.Leases...)
		if page.NextCursor == "" {
			return out, nil
		}
		cursor = page.NextCursor
	}
}

func checkKey(key string) error {
	if !keyPattern.MatchString(key) {
		// Refused here, before any URL is built: no "../" or "?" reaches another route.
		return &ServiceError{
			Code: "invalid_request", Status: http.StatusUnprocessableEntity,
			Message: fmt.Sprintf("key: must match %s, got %q", keyPattern, key),
		}
	}
	return nil
}

func leasePath(key, action string) string {
	path := "/v1/leases/" + url.PathEscape(key)
	if action != "" {
		path += "/" + action
	}
	return path
}

func (c *Client) leaseCall(ctx context.Context, method, key, action string, body any) (*Lease, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	status, header, data, err := c.do(ctx, method, leasePath(key, action), nil, body)
	if err != nil {
		return nil, err
	}
	if status/100 != 2 {
		return nil, errorFor(status, header, data)
	}
	lease, perr := parseLease(data)
	if perr != nil {
		return nil, &ServiceError{Code: "internal", Status: status, Message: "answer is not a lease record: " + perr.Error()}
	}
	return lease, nil
}

func (c *Client) request(ctx context.Context, method, path string, query url.Values, body any) (*http.Request, error) {
	u := *c.base
	u.Path = c.base.Path + path
	u.RawPath = ""
	if query != nil {
		u.RawQuery = query.Encode()
	}
	var reader io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		reader = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), reader)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "leaderelection-go/"+Version)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

// do sends one call and reads its whole answer.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body any) (int, http.Header, []byte, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	req, err := c.request(ctx, method, path, query, body)
	if err != nil {
		return 0, nil, nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, nil, transportError(ctx, method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return 0, nil, nil, transportError(ctx, method, path, err)
	}
	return resp.StatusCode, resp.Header, data, nil
}

func transportError(ctx context.Context, method, path string, err error) error {
	var timeout interface{ Timeout() bool }
	isTimeout := errors.Is(ctx.Err(), context.DeadlineExceeded) ||
		(errors.As(err, &timeout) && timeout.Timeout())
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return &TransportError{Method: method, Path: path, Timeout: isTimeout, Err: err}
}
