// Command poolbench measures Go's sync.Pool on the pool workloads of
// bench/README.md, for comparison with bench/pool/bench_pool.c: one 128 B array
// ([16]int64), as ns per Get+Put pair, fastest of -r runs of -n pairs.
//
//	go-ptr    the pool holds *[16]int64 (what sync.Pool is for)
//	go-value  the pool holds [16]int64 by value, as Go code that pools
//	          arrays by value does: each Put boxes the array in an
//	          interface, allocating (SA6002)
//
// Workloads: pair (Get then Put, LIFO), ring1024 (put back the oldest of
// 1024 held arrays, take a new one), xthread (one goroutine gets and hands
// arrays through a single-producer ring to another that puts them back).
// Output records: `pool <workload> <source> <ns>`.
package main

import (
	"flag"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

type array = [16]int64

var sink int64

type source struct {
	name string
	get  func() *array
	put  func(*array)
}

func ptrSource() source {
	p := sync.Pool{New: func() any { return new(array) }}
	return source{"go-ptr", func() *array { return p.Get().(*array) }, func(a *array) { p.Put(a) }}
}

func valueSource() source {
	p := sync.Pool{New: func() any { return array{} }}
	return source{"go-value",
		func() *array { v := p.Get().(array); return &v },
		func(a *array) { p.Put(*a) }}
}

func pair(s source, n int) float64 {
	t0 := time.Now()
	for i := 0; i < n; i++ {
		a := s.get()
		a[0] = int64(i)
		s.put(a)
	}
	return float64(time.Since(t0).Nanoseconds()) / float64(n)
}

func ring(s source, n int) float64 {
	var r [1024]*array
	for i := range r {
		r[i] = s.get()
	}
	t0 := time.Now()
	for i := 0; i < n; i++ {
		k := i % len(r)
		s.put(r[k])
		a := s.get()
		a[0] = int64(i)
		r[k] = a
	}
	ns := float64(time.Since(t0).Nanoseconds()) / float64(n)
	for _, a := range r {
		s.put(a)
	}
	return ns
}

const xring = 4096

func xthread(s source, n int) float64 {
	var slots [xring]*array
	var head, tail atomic.Uint64
	var wg sync.WaitGroup
	t0 := time.Now()
	wg.Add(1)
	go func() {
		defer wg.Done()
		h := uint64(0)
		for i := 0; i < n; i++ {
			for tail.Load() == h {
				runtime.Gosched()
			}
			a := slots[h%xring]
			h++
			head.Store(h)
			s.put(a)
		}
	}()
	t := uint64(0)
	for i := 0; i < n; i++ {
		a := s.get()
		a[0] = int64(i)
		for t-head.Load() == xring {
			runtime.Gosched()
		}
		slots[t%xring] = a
		t++
		tail.Store(t)
	}
	wg.Wait()
	return float64(time.Since(t0).Nanoseconds()) / float64(n)
}

func fastest(fn func(source, int) float64, s source, n, reps int) float64 {
	fn(s, n/10+1)
	best := fn(s, n)
	for i := 1; i < reps; i++ {
		if t := fn(s, n); t < best {
			best = t
		}
	}
	return best
}

func main() {
	n := flag.Int("n", 2000000, "pairs per run")
	reps := flag.Int("r", 15, "runs; the fastest is reported")
	flag.Parse()
	fmt.Printf("# poolbench: [16]int64 (128 B), fastest of %d runs of %d pairs, %s\n",
		*reps, *n, runtime.Version())
	for _, s := range []source{ptrSource(), valueSource()} {
		fmt.Printf("pool pair %s %.2f\n", s.name, fastest(pair, s, *n, *reps))
		fmt.Printf("pool ring1024 %s %.2f\n", s.name, fastest(ring, s, *n, *reps))
		fmt.Printf("pool xthread %s %.2f\n", s.name, fastest(xthread, s, *n/4, *reps))
	}
	_ = sink
}
