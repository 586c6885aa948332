// Command elect is the Go elector's conformance adapter: one LeaderManager
// campaigning for one key, reporting what happens as JSON lines.
//
//	elect --server http://127.0.0.1:8080 --key job --identity go-1 --term 3 --renew 0.75 --retry 0.5
//
// Each line on stdout is one object, written and flushed as it happens:
//
//	{"event": "elected", "identity": "go-1", "fencing_token": 4, "time": 1764660000.123}
//	{"event": "ousting", "identity": "go-1", "fencing_token": 4, "time": 1764660003.456}
//	{"event": "error", "identity": "go-1", "message": "transport: ...", "time": 1764660004.5}
//
// SIGTERM or SIGINT stops the election (the lease is released) and exits 0.
// A permanent error (invalid_request, unauthorized, forbidden) ends it: the
// error line, then exit status 1. Bad flags: exit status 2. The command line
// is the same for the adapters of every language, so one suite runs them all.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	leaderelection "github.com/leaderelection/leaderelection/client/go"
)

type output struct {
	mu  sync.Mutex
	out *os.File
}

func (o *output) emit(fields map[string]any) {
	fields["time"] = float64(time.Now().UnixNano()) / 1e9
	line, err := json.Marshal(fields)
	if err != nil {
		panic(err) // only strings and numbers: cannot happen
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	// An unbuffered *os.File: each line is one write, on its way when this returns.
	_, _ = o.out.Write(append(line, '\n'))
}

func seconds(value float64) time.Duration {
	return time.Duration(value * float64(time.Second))
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	// First thing: a SIGTERM that comes while starting up still means "stop, exit 0".
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	flags := flag.NewFlagSet("elect", flag.ContinueOnError)
	server := flags.String("server", "", "the service's URL, http://host:port")
	key := flags.String("key", "", "the election's key")
	identity := flags.String("identity", "", "the holder name (default hostname-pid-random)")
	term := flags.Float64("term", 15, "seconds: the ttl each acquire and renew asks for")
	renew := flags.Float64("renew", 5, "seconds between renewals")
	retry := flags.Float64("retry", 2, "seconds between a follower's attempts")
	token := flags.String("token", "", "API token (default $LEADERELECTION_TOKEN)")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	if *server == "" || *key == "" {
		fmt.Fprintln(os.Stderr, "elect: --server and --key are required")
		return 2
	}
	if *token == "" {
		*token = os.Getenv("LEADERELECTION_TOKEN")
	}
	backend, err := leaderelection.NewBackend(*server, *key, leaderelection.WithToken(*token))
	if err != nil {
		fmt.Fprintln(os.Stderr, "elect:", err)
		return 2
	}
	lm, err := leaderelection.NewLeaderManager(backend, &leaderelection.Config{
		Term: seconds(*term), Renew: seconds(*renew), Retry: seconds(*retry),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "elect:", err)
		return 2
	}
	if *identity != "" {
		lm.Identity = *identity
	}
	out := &output{out: os.Stdout}
	lm.OnElected = func(id string, _ context.CancelFunc) {
		token := lm.TermLease().FencingToken
		out.emit(map[string]any{"event": "elected", "identity": id, "fencing_token": token})
	}
	lm.OnOusting = func(id string, _ context.CancelFunc) {
		token := lm.TermLease().FencingToken
		out.emit(map[string]any{"event": "ousting", "identity": id, "fencing_token": token})
	}
	lm.OnError = func(id string, err error, _ context.CancelFunc) {
		out.emit(map[string]any{"event": "error", "identity": id, "message": err.Error()})
	}
	if err := lm.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "elect: the election ended:", err)
		return 1
	}
	return 0
}
