package leaderelection

import (
	"context"
	"time"
)

// Backend is one key of a lease store, as the elector uses it. The service
// backend (NewBackend) is the one this package ships; the interface is what
// lets a program switch stores by changing a constructor, and tests script one.
type Backend interface {
	Key() string
	Acquire(ctx context.Context, holder string, ttl time.Duration) (*Lease, error)
	Renew(ctx context.Context, holder string, fencingToken int64, ttl time.Duration) (*Lease, error)
	Release(ctx context.Context, holder string, fencingToken int64) (*Lease, error)
	// Watch streams the key's events; nil, nil when the backend has no stream
	// (the follower then polls every Retry).
	Watch(ctx context.Context, lastEventID string) (EventStream, error)
}

// EventStream is an open watch stream (*Stream for the service).
type EventStream interface {
	Next() (Event, error)
	Close() error
}

// ServiceBackend is one key of a leaderelection service.
//
//	backend, err := leaderelection.NewBackend("http://127.0.0.1:8080", "nightly-report",
//		leaderelection.WithToken(os.Getenv("LEADERELECTION_TOKEN")))
//	lm, err := leaderelection.NewLeaderManager(backend, &leaderelection.Config{Term: 8 * time.Second,
//		Renew: 4 * time.Second, Retry: 2 * time.Second})
type ServiceBackend struct {
	Client *Client
	key    string
}

// NewBackend is the backend for key on the service at serviceURL; options as
// for NewClient (token, HTTP client, timeout). The key is checked here.
func NewBackend(serviceURL, key string, opts ...Option) (*ServiceBackend, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	client, err := NewClient(serviceURL, opts...)
	if err != nil {
		return nil, err
	}
	return &ServiceBackend{Client: client, key: key}, nil
}

// Key is the election's key.
func (b *ServiceBackend) Key() string { return b.key }

// Acquire is Client.Acquire of the key.
func (b *ServiceBackend) Acquire(ctx context.Context, holder string, ttl time.Duration) (*Lease, error) {
	return b.Client.Acquire(ctx, b.key, holder, ttl)
}

// Renew is Client.Renew of the key.
func (b *ServiceBackend) Renew(ctx context.Context, holder string, fencingToken int64, ttl time.Duration) (*Lease, error) {
	return b.Client.Renew(ctx, b.key, holder, fencingToken, ttl)
}

// Release is Client.Release of the key.
func (b *ServiceBackend) Release(ctx context.Context, holder string, fencingToken int64) (*Lease, error) {
	return b.Client.Release(ctx, b.key, holder, fencingToken)
}

// Watch is Client.Watch of the key.
func (b *ServiceBackend) Watch(ctx context.Context, lastEventID string) (EventStream, error) {
	stream, err := b.Client.Watch(ctx, b.key, WatchOptions{LastEventID: lastEventID})
	if err != nil {
		return nil, err // not a typed nil inside the interface
	}
	return stream, nil
}
