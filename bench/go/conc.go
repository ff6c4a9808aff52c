// conc.go - the Go peers of bench/bench_conc.cpp: the same concurrent
// workloads on Go's two standard ways to share a map between goroutines,
// printing the same records so that bench/run.sh merges them.
//
//	go-syncmap   sync.Map holding [8]int64 values (boxed on Store, copied
//	             out on Load), as Go code uses it
//	go-rwmutex   map[int64][8]int64 and one sync.RWMutex: reads share it,
//	             writes take it alone
//
//	bench_go conc mix [-w ReadHeavy,Exchange,RapidGrow] [-t 1,2,4,8] [-c CAPACITY] [-o OPS] [-m MAPS]
//	bench_go conc hit [-n 1000000] [-o OPS] [-m MAPS]
//	bench_go conc grow-read [-n 4000000] [-r READERS] [-m MAPS]
//
// The workloads, key streams and records are those of bench_conc.cpp (its
// header comment describes them); a "thread" here is a goroutine, and Go
// runs as many at once as GOMAXPROCS (the core count) allows.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type row8 = [8]int64

// concMap is what every workload needs from a shared map.
type concMap interface {
	put(k int64, v *row8)
	get(k int64, out *row8) bool
	del(k int64)
}

type syncMap struct{ m sync.Map }

func (s *syncMap) put(k int64, v *row8) { s.m.Store(k, *v) }
func (s *syncMap) get(k int64, out *row8) bool {
	v, ok := s.m.Load(k)
	if ok {
		*out = v.(row8)
	}
	return ok
}
func (s *syncMap) del(k int64) { s.m.Delete(k) }

type rwMutexMap struct {
	mu sync.RWMutex
	m  map[int64]row8
}

func (r *rwMutexMap) put(k int64, v *row8) {
	r.mu.Lock()
	r.m[k] = *v
	r.mu.Unlock()
}
func (r *rwMutexMap) get(k int64, out *row8) bool {
	r.mu.RLock()
	v, ok := r.m[k]
	r.mu.RUnlock()
	if ok {
		*out = v
	}
	return ok
}
func (r *rwMutexMap) del(k int64) {
	r.mu.Lock()
	delete(r.m, k)
	r.mu.Unlock()
}

func newConcMap(name string) concMap {
	switch name {
	case "go-syncmap":
		return &syncMap{}
	case "go-rwmutex":
		return &rwMutexMap{m: make(map[int64]row8)}
	}
	concUsage()
	return nil
}

type concMix struct {
	name                         string
	read, insert, remove, update uint64
	prefill                      float64
}

var concMixes = []concMix{
	{"ReadHeavy", 98, 1, 1, 0, 0.75},
	{"Exchange", 10, 40, 40, 10, 0.75},
	{"RapidGrow", 5, 80, 5, 10, 0.0},
}

// startLine lets every goroutine go at once; the last to arrive takes the time.
type startLine struct {
	waiting atomic.Int64
	start   atomic.Int64
}

func (s *startLine) arrive() {
	if s.waiting.Add(-1) == 0 {
		s.start.Store(time.Now().UnixNano())
	}
	for s.start.Load() == 0 {
		runtime.Gosched()
	}
}

func runConcMix(name string, mix concMix, threads, capacity, ops uint64) float64 {
	m := newConcMap(name)
	prefill := uint64(float64(capacity)*mix.prefill) / threads
	perThread := ops / threads
	var line startLine
	line.waiting.Store(int64(threads))
	ends := make([]int64, threads)
	var wg sync.WaitGroup
	for t := uint64(0); t < threads; t++ {
		wg.Add(1)
		go func(t uint64) {
			defer wg.Done()
			keyOf := func(j uint64) int64 { return key(t + threads*j) }
			var v row8
			lo, hi, rng, acc := uint64(0), uint64(0), uint64(0x5eed0000)+t, uint64(0)
			for ; hi < prefill; hi++ {
				v[0] = int64(hi)
				m.put(keyOf(hi), &v)
			}
			line.arrive()
			for i := uint64(0); i < perThread; i++ {
				rng = splitmix64(rng)
				pick := rng % 100
				live := hi - lo
				anyJ := lo
				if live > 0 {
					anyJ = lo + (rng>>8)%live
				}
				switch {
				case pick < mix.read:
					if m.get(keyOf(anyJ), &v) {
						acc += uint64(v[0]) + uint64(v[7])
					}
				case pick < mix.read+mix.insert:
					v[0] = int64(hi)
					m.put(keyOf(hi), &v)
					hi++
				case pick < mix.read+mix.insert+mix.remove:
					if live > 0 {
						m.del(keyOf(lo))
						lo++
					}
				default:
					if live > 0 {
						v[0] = int64(anyJ + i)
						m.put(keyOf(anyJ), &v)
					}
				}
			}
			ends[t] = time.Now().UnixNano()
			atomic.AddUint64(&sink, acc)
		}(t)
	}
	wg.Wait()
	end := int64(0)
	for _, e := range ends {
		if e > end {
			end = e
		}
	}
	return float64(perThread*threads) / float64(end-line.start.Load()) * 1e3
}

func runConcHit(name string, n, ops uint64) float64 {
	m := newConcMap(name)
	var v row8
	for i := uint64(0); i < n; i++ {
		v[0] = int64(i)
		m.put(key(i), &v)
	}
	r, acc := uint64(12345), uint64(0)
	start := time.Now()
	for i := uint64(0); i < ops; i++ {
		r = splitmix64(r)
		if m.get(key(r%n), &v) {
			acc += uint64(v[0]) + uint64(v[7])
		}
	}
	ns := nsPer(start, ops)
	sink = acc
	return ns
}

func runConcGrowRead(name string, n uint64, readers int) {
	m := newConcMap(name)
	var inserted atomic.Uint64
	var done atomic.Bool
	var line startLine
	line.waiting.Store(int64(readers + 1))
	logs := make([]*latencyLog, readers)
	misses := make([]uint64, readers)
	lookups := make([]uint64, readers)
	for r := range logs {
		logs[r] = newLatencyLog()
	}
	var writerS float64
	var wg sync.WaitGroup
	wg.Add(readers + 1)
	go func() {
		defer wg.Done()
		var v row8
		line.arrive()
		start := time.Now()
		for i := uint64(0); i < n; i++ {
			v[0] = int64(i)
			m.put(key(i), &v)
			inserted.Store(i + 1)
		}
		writerS = time.Since(start).Seconds()
		done.Store(true)
	}()
	for r := 0; r < readers; r++ {
		go func(r int) {
			defer wg.Done()
			var v row8
			rng, acc := uint64(0xfeed0001)+uint64(r), uint64(0)
			line.arrive()
			for !done.Load() {
				have := inserted.Load()
				if have == 0 {
					continue
				}
				rng = splitmix64(rng)
				k := key(rng % have)
				t0 := time.Now()
				hit := m.get(k, &v)
				logs[r].add(uint64(time.Since(t0).Nanoseconds()))
				lookups[r]++
				if hit {
					acc += uint64(v[0])
				} else {
					misses[r]++
				}
			}
			atomic.AddUint64(&sink, acc)
		}(r)
	}
	wg.Wait()
	for r := 0; r < readers; r++ {
		fmt.Printf("concgrow %s %d %d %d %d %d %d %.2f\n", name, readers, r+1,
			logs[r].quantile(0.9999), logs[r].quantile(1.0), lookups[r], misses[r], writerS)
	}
}

func concUsage() {
	fmt.Fprintln(os.Stderr, "usage: bench_go conc mix [-w ReadHeavy,Exchange,RapidGrow] [-t 1,2,4,8] [-c CAPACITY] [-o OPS] [-m go-syncmap,go-rwmutex]")
	fmt.Fprintln(os.Stderr, "       bench_go conc hit [-n 1000000] [-o OPS] [-m MAPS]")
	fmt.Fprintln(os.Stderr, "       bench_go conc grow-read [-n 4000000] [-r READERS] [-m MAPS]")
	os.Exit(2)
}

func concMode(args []string) {
	if len(args) < 1 || len(args)%2 != 1 {
		concUsage()
	}
	mode := args[0]
	workloads := []string{"ReadHeavy", "Exchange", "RapidGrow"}
	threadCounts := []string{"1", "2", "4", "8"}
	maps := []string{"go-syncmap", "go-rwmutex"}
	capacity, ops, n, readers := uint64(1<<20), uint64(0), uint64(0), 1
	for i := 1; i+1 < len(args); i += 2 {
		value := args[i+1]
		switch args[i] {
		case "-w":
			workloads = strings.Split(value, ",")
		case "-t":
			threadCounts = strings.Split(value, ",")
		case "-c":
			capacity = parseCount(value)
		case "-o":
			ops = parseCount(value)
		case "-n":
			n = parseCount(value)
		case "-r":
			readers = int(parseCount(value))
		case "-m":
			maps = strings.Split(value, ",")
		default:
			concUsage()
		}
	}
	for _, m := range maps {
		newConcMap(m) // exits on an unknown name
	}
	switch mode {
	case "mix":
		if ops == 0 {
			ops = 2 << 20
		}
		fmt.Printf("# bench_go conc mix: capacity=%d ops=%d GOMAXPROCS=%d %s\n", capacity, ops,
			runtime.GOMAXPROCS(0), runtime.Version())
		for _, w := range workloads {
			var mix *concMix
			for i := range concMixes {
				if concMixes[i].name == w {
					mix = &concMixes[i]
				}
			}
			if mix == nil {
				concUsage()
			}
			for _, tc := range threadCounts {
				threads := parseCount(tc)
				for _, m := range maps {
					mops := runConcMix(m, *mix, threads, capacity, ops)
					fmt.Printf("conc %s %d %s %.3f\n", mix.name, threads, m, mops)
					releaseMemory()
				}
			}
		}
	case "hit":
		if n == 0 {
			n = 1000000
		}
		if ops == 0 {
			ops = 4000000
		}
		for _, m := range maps {
			fmt.Printf("conchit %d %s %.2f\n", n, m, runConcHit(m, n, ops))
			releaseMemory()
		}
	case "grow-read":
		if n == 0 {
			n = 4000000
		}
		for _, m := range maps {
			runConcGrowRead(m, n, readers)
			releaseMemory()
		}
	default:
		concUsage()
	}
}
