// Command groupcast is groupcast's command-line client. For now it runs
// benchmarks against running nodes:
//
//	groupcast bench propagation --a http://127.0.0.1:8080 --b http://127.0.0.2:8080 [--samples 1000]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/groupcast/groupcast/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "groupcast:", err)
		os.Exit(1)
	}
}

const usage = "usage: groupcast bench propagation --a URL --b URL [--samples N] [--account A] [--group G]"

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) < 2 || args[0] != "bench" || args[1] != "propagation" {
		return errors.New(usage)
	}
	fs := flag.NewFlagSet("groupcast bench propagation", flag.ContinueOnError)
	fs.SetOutput(stderr)
	a := fs.String("a", "http://127.0.0.1:8080", "node edits are made on")
	b := fs.String("b", "", "node reads are made on")
	samples := fs.Int("samples", 1000, "number of edits measured")
	account := fs.String("account", "bench", "account (subscribe key)")
	group := fs.String("group", fmt.Sprintf("prop-%d", time.Now().UnixNano()), "group")
	timeout := fs.Duration("timeout", 10*time.Second, "longest wait for one edit to show on B")
	if err := fs.Parse(args[2:]); err != nil {
		return err
	}
	if *b == "" {
		return errors.New("--b is required: " + usage)
	}
	res, err := bench.Propagation(ctx, bench.PropagationConfig{A: *a, B: *b, Account: *account, Group: *group, Samples: *samples, Timeout: *timeout})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "propagation %s → %s: %s\n", *a, *b, res)
	return nil
}
