package cluster_test

import (
	"context"
	"fmt"
	"time"

	"github.com/groupcast/groupcast/subscriber/cluster"
)

func ExampleNewRing() {
	r := cluster.NewRing([]string{"a", "b", "c"}, 64, 2)
	fmt.Println(r.Owners(0), r.Primary(0), r.Assignment("b").IsPrimary(0))
	// Output: [b a] b true
}

func ExampleNew() {
	c, err := cluster.New(cluster.Config{
		Name:     "node-1",
		BindAddr: "127.0.0.1:0",
		HTTPAddr: "127.0.0.1:8080",
		Shards:   16,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Shutdown() // idempotent: for the early returns
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Join(ctx); err != nil { // no seeds: the first node
		fmt.Println(err)
		return
	}
	fmt.Println(c.Assignment().Count(), c.Route(3, true) == nil)

	// Stopping: hand the shards over, then leave.
	c.SetDraining()
	fmt.Println(c.Route(3, true), c.WaitHandover(ctx))
	fmt.Println(c.Leave(time.Second), c.Shutdown())
	// Output:
	// 16 true
	// [] <nil>
	// <nil> <nil>
}
