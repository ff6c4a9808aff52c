// Command bench_go is the Go peer of bench/bench_maps.cpp: Go's built-in map
// on the workloads of bench/README.md, printing the same lines so
// that bench/run.sh can merge the two.
//
// Two maps, the two ways Go code keeps arrays in a map, for values of [8]int64,
// [64]int64 and [512]int64, written as the Go code a user would write:
//
//	go      map[int64][N]int64, values by copy: m[k] = v to insert, v := m[k]
//	        to read (Go has no pointer into a map).  Note that Go's runtime
//	        itself stores a value larger than 128 B out of line, so for
//	        N = 64 and 512 every entry is a separate allocation behind the
//	        bucket (and still copied in and out).
//	go-ptr  map[int64]*[N]int64 with the arrays recycled through a
//	        sync.Pool (one per map): insert takes an array from the pool
//	        and copies the value into it, delete puts it back, reads go
//	        through the pointer without copying.
//
// Every workload is one generic function over the value type, so all
// lengths run the same loop; the keys, counts and order are those of
// bench_maps.cpp, and so are the rules that make small n measurable (insert
// repeated over fresh maps until 1e5 puts, iterate repeated until 1e6
// entries visited).
//
//	bench_go run [-n 10000,1000000] [-l 8,64,512] [-m go,go-ptr] [-o OPS] [-r REPS] [-p MIB]
//	bench_go grow go 8|64|512 [COUNT]
//
// Output, one line per figure:
//
//	op WORKLOAD N n go|go-ptr NS_PER_OP
//	grow go N COUNT WORST_NS P9999_NS P99_NS PEAK_RSS_B_PER_ENTRY GROWTH_RSS_B_PER_ENTRY TOTAL_S
//
// Memory is handled as in bench_maps.cpp: after each map, the garbage
// collector runs and returns free memory to the kernel
// (debug.FreeOSMemory); before each map, prefault touches and unmaps about
// the map's peak footprint so that its first touches find pages the VM's
// host has already backed.  For grow, run.sh prefaults from a separate
// process instead, so that this process's peak RSS is the map's alone.
package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// key is the i-th key of every workload: non-negative, distinct for distinct i.
func key(i uint64) int64 { return int64(splitmix64(i) >> 1) }

// row is the value type: an int64 array of either length.
type row interface {
	~[8]int64 | ~[64]int64 | ~[512]int64
}

// sink is written once per workload so that no read can be optimised away.
var sink uint64

// prefaultCapMiB bounds what prefault touches (-p; 0 turns it off).
var prefaultCapMiB uint64 = 4096

// releaseMemory collects garbage and hands free memory back to the kernel,
// so that the next map starts cold, like malloc_trim in bench_maps.cpp.
func releaseMemory() { debug.FreeOSMemory() }

// prefault touches and unmaps up to bytes of fresh memory; see the file comment.
func prefault(bytes uint64) {
	var st syscall.Sysinfo_t
	if syscall.Sysinfo(&st) == nil {
		if free := uint64(st.Freeram) * uint64(st.Unit) / 2; bytes > free {
			bytes = free
		}
	}
	if bytes > prefaultCapMiB<<20 {
		bytes = prefaultCapMiB << 20
	}
	if bytes == 0 {
		return
	}
	region, err := syscall.Mmap(-1, 0, int(bytes), syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return
	}
	for off := 0; off < len(region); off += 4096 {
		region[off] = 1
	}
	syscall.Munmap(region)
}

// peakEstimate is what a map of n entries of int64[length] may need at its peak.
func peakEstimate(length int, n uint64) uint64 { return 3 * n * uint64(8*length+16) }

func nsPer(start time.Time, ops uint64) float64 {
	return float64(time.Since(start).Nanoseconds()) / float64(ops)
}

// ---- Workloads ----------------------------------------------------------

// timeInsert: n puts into an empty map, no size hint, v[0] = i.
func timeInsert[V row](m map[int64]V, n uint64) float64 {
	var v V
	start := time.Now()
	for i := uint64(0); i < n; i++ {
		v[0] = int64(i)
		m[key(i)] = v
	}
	return nsPer(start, n)
}

// timeLookupHit: key(r % n), r walking a splitmix chain from 12345.
func timeLookupHit[V row](m map[int64]V, n, ops uint64) float64 {
	r, acc := uint64(12345), uint64(0)
	start := time.Now()
	for i := uint64(0); i < ops; i++ {
		r = splitmix64(r)
		v := m[key(r%n)]
		acc += uint64(v[0]) + uint64(v[len(v)-1])
	}
	ns := nsPer(start, ops)
	sink = acc
	return ns
}

// timeLookupMiss: key(n + i), none of which is in the map.
func timeLookupMiss[V row](m map[int64]V, n, ops uint64) float64 {
	acc := uint64(0)
	start := time.Now()
	for i := uint64(0); i < ops; i++ {
		if _, ok := m[key(n+i)]; ok {
			acc++
		}
	}
	ns := nsPer(start, ops)
	sink = acc
	return ns
}

// iteratePasses is the number of full passes iterate makes (as bench_maps.cpp).
func iteratePasses(n uint64) uint64 {
	if n >= 1000000 {
		return 1
	}
	return 1000000 / n
}

// timeIterate: full passes summing v[0]; ns per entry visited.
func timeIterate[V row](m map[int64]V, n uint64) float64 {
	passes, acc := iteratePasses(n), uint64(0)
	start := time.Now()
	for p := uint64(0); p < passes; p++ {
		for _, v := range m {
			acc += uint64(v[0])
		}
	}
	ns := nsPer(start, passes*n)
	sink = acc
	return ns
}

// timeChurn: rounds of delete key(i), insert key(n + i); ns per round.
func timeChurn[V row](m map[int64]V, n, ops uint64) float64 {
	var v V
	start := time.Now()
	for i := uint64(0); i < ops; i++ {
		delete(m, key(i))
		v[0] = int64(n + i)
		m[key(n+i)] = v
	}
	return nsPer(start, ops)
}

// ---- The pointer map: map[int64]*[N]int64 and a sync.Pool ------------------

// ptrMap is map[int64]*V with its arrays recycled through a sync.Pool.
type ptrMap[V row] struct {
	m    map[int64]*V
	pool *sync.Pool
}

func newPtrMap[V row]() ptrMap[V] {
	return ptrMap[V]{make(map[int64]*V), &sync.Pool{New: func() any { return new(V) }}}
}

// put inserts a new key (every workload inserts only absent keys).
func (p ptrMap[V]) put(k int64, v *V) {
	a := p.pool.Get().(*V)
	*a = *v
	p.m[k] = a
}

// del deletes k and gives its array back to the pool.
func (p ptrMap[V]) del(k int64) {
	if a, ok := p.m[k]; ok {
		delete(p.m, k)
		p.pool.Put(a)
	}
}

func timeInsertPtr[V row](p ptrMap[V], n uint64) float64 {
	var v V
	start := time.Now()
	for i := uint64(0); i < n; i++ {
		v[0] = int64(i)
		p.put(key(i), &v)
	}
	return nsPer(start, n)
}

func timeLookupHitPtr[V row](p ptrMap[V], n, ops uint64) float64 {
	r, acc := uint64(12345), uint64(0)
	start := time.Now()
	for i := uint64(0); i < ops; i++ {
		r = splitmix64(r)
		if a := p.m[key(r%n)]; a != nil {
			acc += uint64((*a)[0]) + uint64((*a)[len(*a)-1])
		}
	}
	ns := nsPer(start, ops)
	sink = acc
	return ns
}

func timeLookupMissPtr[V row](p ptrMap[V], n, ops uint64) float64 {
	acc := uint64(0)
	start := time.Now()
	for i := uint64(0); i < ops; i++ {
		if _, ok := p.m[key(n+i)]; ok {
			acc++
		}
	}
	ns := nsPer(start, ops)
	sink = acc
	return ns
}

func timeIteratePtr[V row](p ptrMap[V], n uint64) float64 {
	passes, acc := iteratePasses(n), uint64(0)
	start := time.Now()
	for q := uint64(0); q < passes; q++ {
		for _, a := range p.m {
			acc += uint64((*a)[0])
		}
	}
	ns := nsPer(start, passes*n)
	sink = acc
	return ns
}

func timeChurnPtr[V row](p ptrMap[V], n, ops uint64) float64 {
	var v V
	start := time.Now()
	for i := uint64(0); i < ops; i++ {
		p.del(key(i))
		v[0] = int64(n + i)
		p.put(key(n+i), &v)
	}
	return nsPer(start, ops)
}

type figures struct{ insert, hit, miss, iterate, churn float64 }

// runOnce measures one (N, n) on fresh maps; churn last, as it changes the map.
func runOnce[V row](n, ops uint64) figures {
	var f figures
	var probe V
	prefault(peakEstimate(len(probe), n))
	rounds := uint64(1)
	if n < 100000 {
		rounds = 100000 / n
	}
	for k := uint64(1); k < rounds; k++ {
		f.insert += timeInsert(make(map[int64]V), n)
		releaseMemory()
	}
	m := make(map[int64]V)
	f.insert = (f.insert + timeInsert(m, n)) / float64(rounds)
	f.hit = timeLookupHit(m, n, ops)
	f.miss = timeLookupMiss(m, n, ops)
	f.iterate = timeIterate(m, n)
	f.churn = timeChurn(m, n, ops)
	m = nil
	releaseMemory()
	return f
}

// runOncePtr is runOnce for the pointer map; each map has a pool of its own.
func runOncePtr[V row](n, ops uint64) figures {
	var f figures
	var probe V
	prefault(peakEstimate(len(probe), n))
	rounds := uint64(1)
	if n < 100000 {
		rounds = 100000 / n
	}
	for k := uint64(1); k < rounds; k++ {
		f.insert += timeInsertPtr(newPtrMap[V](), n)
		releaseMemory()
	}
	p := newPtrMap[V]()
	f.insert = (f.insert + timeInsertPtr(p, n)) / float64(rounds)
	f.hit = timeLookupHitPtr(p, n, ops)
	f.miss = timeLookupMissPtr(p, n, ops)
	f.iterate = timeIteratePtr(p, n)
	f.churn = timeChurnPtr(p, n, ops)
	p = ptrMap[V]{}
	releaseMemory()
	return f
}

func min(a, b float64) float64 {
	if a < b {
		return a
	}
	return b
}

func benchMap[V row](name string, n, ops uint64, reps int) {
	var probe V
	run := runOnce[V]
	if name == "go-ptr" {
		run = runOncePtr[V]
	}
	best := run(n, ops)
	for r := 1; r < reps; r++ {
		f := run(n, ops)
		best = figures{min(best.insert, f.insert), min(best.hit, f.hit), min(best.miss, f.miss),
			min(best.iterate, f.iterate), min(best.churn, f.churn)}
	}
	for _, w := range []struct {
		name string
		ns   float64
	}{{"insert", best.insert}, {"lookup-hit", best.hit}, {"lookup-miss", best.miss},
		{"iterate", best.iterate}, {"churn", best.churn}} {
		fmt.Printf("op %s %d %d %s %.2f\n", w.name, len(probe), n, name, w.ns)
	}
}

// ---- grow-tail ------------------------------------------------------------

// latencyLog keeps single-insert latencies exactly: a count per nanosecond
// below 64 us, and the slow ones individually.
type latencyLog struct {
	fine  []uint32
	slow  []uint64
	count uint64
}

const fineLimit = 65536

func newLatencyLog() *latencyLog {
	return &latencyLog{fine: make([]uint32, fineLimit), slow: make([]uint64, 0, 1<<20)}
}

func (l *latencyLog) add(ns uint64) {
	l.count++
	if ns < fineLimit {
		l.fine[ns]++
	} else {
		l.slow = append(l.slow, ns)
	}
}

// quantile is the ceil(q * count)-th smallest latency.
func (l *latencyLog) quantile(q float64) uint64 {
	rank := uint64(float64(l.count)*q + 0.999999)
	seen := uint64(0)
	for ns, c := range l.fine {
		seen += uint64(c)
		if seen >= rank {
			return uint64(ns)
		}
	}
	sort.Slice(l.slow, func(i, j int) bool { return l.slow[i] < l.slow[j] })
	idx := rank - seen
	if idx > uint64(len(l.slow)) {
		idx = uint64(len(l.slow))
	}
	return l.slow[idx-1]
}

func currentRSS() uint64 {
	statm, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(statm))
	if len(fields) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(fields[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}

func peakRSS() uint64 {
	var u syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &u)
	return uint64(u.Maxrss) * 1024
}

func grow[V row](count uint64) {
	log := newLatencyLog()
	runtime.GC()
	baseRSS := currentRSS()
	m := make(map[int64]V)
	var v V
	start := time.Now()
	for i := uint64(0); i < count; i++ {
		v[0] = int64(i)
		k := key(i)
		t0 := time.Now()
		m[k] = v
		log.add(uint64(time.Since(t0).Nanoseconds()))
	}
	total := time.Since(start).Seconds()
	peak := peakRSS()
	fmt.Printf("grow go %d %d %d %d %d %.1f %.1f %.2f\n", len(v), count, log.quantile(1.0),
		log.quantile(0.9999), log.quantile(0.99), float64(peak)/float64(count),
		float64(peak-baseRSS)/float64(count), total)
	runtime.KeepAlive(m)
}

// ---- Command line ---------------------------------------------------------

func parseCount(s string) uint64 {
	f, err := strconv.ParseFloat(s, 64) // accepts 1e6
	if err != nil || f < 1 {
		usage()
	}
	return uint64(f)
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: bench_go run [-n 10000,1000000] [-l 8,64,512] [-m go,go-ptr] [-o OPS] [-r REPS] [-p MIB]")
	fmt.Fprintln(os.Stderr, "       bench_go grow go 8|64|512 [COUNT]")
	fmt.Fprintln(os.Stderr, "       bench_go conc mix|hit|grow-read ... (see conc.go)")
	os.Exit(2)
}

func runMode(args []string) {
	sizes, lens, maps := []string{"10000", "1000000"}, []string{"8", "64"}, []string{"go", "go-ptr"}
	ops, reps := uint64(4000000), 1
	if len(args)%2 != 0 {
		usage()
	}
	for i := 0; i+1 < len(args); i += 2 {
		value := args[i+1]
		switch args[i] {
		case "-n":
			sizes = strings.Split(value, ",")
		case "-l":
			lens = strings.Split(value, ",")
		case "-m":
			maps = strings.Split(value, ",")
			for _, m := range maps {
				if m != "go" && m != "go-ptr" {
					usage()
				}
			}
		case "-o":
			ops = parseCount(value)
		case "-r":
			reps = int(parseCount(value))
		case "-p":
			prefaultCapMiB, _ = strconv.ParseUint(value, 10, 64)
		default:
			usage()
		}
	}
	fmt.Printf("# bench_go run: ops=%d reps=%d (fastest of reps) prefault-cap=%dMiB %s\n",
		ops, reps, prefaultCapMiB, runtime.Version())
	for _, l := range lens {
		for _, s := range sizes {
			n := parseCount(s)
			// Maps in turn at each (N, n), as bench_maps does.
			for _, m := range maps {
				switch l {
				case "8":
					benchMap[[8]int64](m, n, ops, reps)
				case "64":
					benchMap[[64]int64](m, n, ops, reps)
				case "512":
					benchMap[[512]int64](m, n, ops, reps)
				default:
					usage()
				}
			}
		}
	}
}

func main() {
	args := os.Args[1:]
	switch {
	case len(args) >= 1 && args[0] == "run":
		runMode(args[1:])
	case len(args) >= 1 && args[0] == "conc":
		concMode(args[1:])
	case len(args) >= 3 && len(args) <= 4 && args[0] == "grow" && args[1] == "go":
		count := uint64(10000000)
		if len(args) == 4 {
			count = parseCount(args[3])
		}
		switch args[2] {
		case "8":
			grow[[8]int64](count)
		case "64":
			grow[[64]int64](count)
		case "512":
			grow[[512]int64](count)
		default:
			usage()
		}
	default:
		usage()
	}
}
