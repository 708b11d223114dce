package pollyield

import "testing"

// TestYieldConcurrent: yields from many goroutines at once each return.
func TestYieldConcurrent(t *testing.T) {
	done := make(chan struct{})
	for range 64 {
		go func() {
			for range 100 {
				Yield()
			}
			done <- struct{}{}
		}()
	}
	for range 64 {
		<-done
	}
}

func BenchmarkYield(b *testing.B) {
	for b.Loop() {
		Yield()
	}
}
