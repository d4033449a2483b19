// Command gocni is the Go peer of the churn benchmark: churn.py's pod cycle through containerd's
// go-cni (github.com/containerd/go-cni over libcni), so that cni_async can be compared with the
// library containerd itself uses, on the same configurations, plugins and machine.
//
// Each of -concurrency goroutines takes the next pod: it creates the pod's network namespace
// (unshare and bind-mount on a locked thread, as churn.py and floor.c do), calls Setup, Check
// and Remove, and deletes the namespace. A pod whose Setup or Check fails is removed anyway and
// its namespace deleted; SIGTERM or SIGINT stops handing out pods, and the pods under way are
// cleaned up the same way before the command exits.
//
// It prints one JSON object on stdout, in the shape of churn.py's library runs: "elapsed_s"
// (first pod's start to the last one's end), "samples" (seconds per phase, per successful pod:
// netns_add, set_up, status, tear_down, netns_del), "cpu_s", "children_cpu_s", "peak_rss_mib"
// and "errors".
//
// It builds offline, in GOPATH mode, from Debian's packages (golang-go,
// golang-github-containerd-go-cni-dev, golang-github-appc-cni-dev, golang-golang-x-sys-dev):
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go build -o gocni ./benchmarks/gocni
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gocni "github.com/containerd/go-cni"
	"github.com/containernetworking/cni/libcni"
	"golang.org/x/sys/unix"
)

const netnsDir = "/run/netns"

// phases are the names of a pod's timed steps, in order, as churn.py names them.
var phases = [...]string{"netns_add", "set_up", "status", "tear_down", "netns_del"}

type report struct {
	ElapsedS     float64              `json:"elapsed_s"`
	Samples      map[string][]float64 `json:"samples"`
	CPUS         float64              `json:"cpu_s"`
	ChildrenCPUS float64              `json:"children_cpu_s"`
	PeakRSSMiB   float64              `json:"peak_rss_mib"`
	Errors       []string             `json:"errors"`
}

type bench struct {
	cni    gocni.CNI
	prefix string
	pods   int
	next   atomic.Int64

	mu      sync.Mutex
	samples [len(phases)][]float64
	errors  []string
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("gocni: ")
	// Die with the churn.py worker that started us, as the floor does: main runs on the
	// process's first thread (see init), the one the kernel watches the parent for.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		log.Fatalf("prctl: %v", err)
	}
	if os.Getppid() == 1 {
		log.Fatal("the parent is already gone")
	}

	confDir := flag.String("conf-dir", "", "the CNI configuration directory")
	binDirs := flag.String("bin-dirs", "/usr/lib/cni", "plugin directories, separated by ':'")
	networks := flag.String("networks", "", "networks to attach, separated by ','; none: the default network")
	cacheDir := flag.String("cache-dir", "", "libcni's cache directory (not /var/lib/cni)")
	prefix := flag.String("netns-prefix", "", "pod i's namespace is /run/netns/<prefix><i>")
	pods := flag.Int("pods", 1, "pods to churn")
	concurrency := flag.Int("concurrency", 1, "pods under way at once")
	flag.Parse()
	if *confDir == "" || *cacheDir == "" || *prefix == "" || *pods < 0 || *concurrency < 1 {
		flag.Usage()
		os.Exit(2)
	}
	// go-cni has no option for the cache directory: libcni takes it from this variable.
	libcni.CacheDir = *cacheDir

	cni, err := load(*confDir, strings.Split(*binDirs, ":"), splitNonEmpty(*networks))
	if err != nil {
		log.Fatal(err)
	}
	b := &bench{cni: cni, prefix: *prefix, pods: *pods}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	self0, children0 := cpuTimes()
	started := time.Now()
	var wg sync.WaitGroup
	workers := *concurrency
	if workers > *pods {
		workers = *pods
	}
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.run(ctx)
		}()
	}
	wg.Wait()
	elapsed := time.Since(started)
	self1, children1 := cpuTimes()
	if ctx.Err() != nil {
		log.Fatal("interrupted (the pods under way were cleaned up)")
	}

	var usage unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &usage); err != nil {
		log.Fatalf("getrusage: %v", err)
	}
	out := report{
		ElapsedS:     elapsed.Seconds(),
		Samples:      make(map[string][]float64, len(phases)),
		CPUS:         self1 - self0,
		ChildrenCPUS: children1 - children0,
		PeakRSSMiB:   float64(usage.Maxrss) / 1024,
		Errors:       b.errors,
	}
	for i, phase := range phases {
		out.Samples[phase] = append([]float64{}, b.samples[i]...)
	}
	if out.Errors == nil {
		out.Errors = []string{}
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		log.Fatal(err)
	}
}

func init() {
	// Keep main on the process's first thread (for PR_SET_PDEATHSIG): the runtime starts
	// main on it and never moves a goroutine locked in an init function.
	runtime.LockOSThread()
}

// load makes a go-cni instance for the configuration directory, as containerd does: the
// first configuration file when no networks are named, else the named networks, in order.
func load(confDir string, binDirs, networks []string) (gocni.CNI, error) {
	count := len(networks)
	if count == 0 {
		count = 1
	}
	cni, err := gocni.New(
		gocni.WithPluginDir(binDirs),
		gocni.WithPluginConfDir(confDir),
		gocni.WithMinNetworkCount(count),
	)
	if err != nil {
		return nil, err
	}
	if len(networks) == 0 {
		return cni, cni.Load(gocni.WithDefaultConf)
	}
	files, err := libcni.ConfFiles(confDir, []string{".conflist"})
	if err != nil {
		return nil, err
	}
	byName := make(map[string]string, len(files))
	for _, file := range files {
		list, err := libcni.ConfListFromFile(file)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if _, seen := byName[list.Name]; !seen {
			byName[list.Name] = file
		}
	}
	opts := make([]gocni.Opt, 0, len(networks))
	for _, name := range networks {
		file, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("no configuration list for network %q in %s", name, confDir)
		}
		opts = append(opts, gocni.WithConfListFile(file))
	}
	return cni, cni.Load(opts...)
}

// run churns pods until there are none left or ctx is done.
func (b *bench) run(ctx context.Context) {
	for ctx.Err() == nil {
		i := int(b.next.Add(1) - 1)
		if i >= b.pods {
			return
		}
		times, err := b.cycle(ctx, i)
		b.mu.Lock()
		if err != nil {
			b.errors = append(b.errors, fmt.Sprintf("pod %d: %v", i, err))
		} else {
			for k, t := range times {
				b.samples[k] = append(b.samples[k], t.Seconds())
			}
		}
		b.mu.Unlock()
	}
}

// cycle runs one pod: namespace, Setup, Check, Remove, namespace deleted (whatever failed).
func (b *bench) cycle(ctx context.Context, i int) (times [len(phases)]time.Duration, err error) {
	name := fmt.Sprintf("%s%d", b.prefix, i)
	id := name
	opts := []gocni.NamespaceOpts{
		gocni.WithLabels(map[string]string{
			"IgnoreUnknown":              "1",
			"K8S_POD_NAMESPACE":          "churn",
			"K8S_POD_NAME":               fmt.Sprintf("pod%d", i),
			"K8S_POD_INFRA_CONTAINER_ID": id,
			"K8S_POD_UID":                fmt.Sprintf("uid%d", i),
		}),
	}
	t0 := time.Now()
	path, err := netnsAdd(name)
	if err != nil {
		return times, err
	}
	t1 := time.Now()
	defer func() {
		t := time.Now()
		if delErr := netnsDel(path); delErr != nil && err == nil {
			err = delErr
		}
		times[4] = time.Since(t)
	}()
	if _, err = b.cni.Setup(ctx, id, path, opts...); err != nil {
		return times, b.cleanUp(id, path, opts, fmt.Errorf("set-up: %w", err))
	}
	t2 := time.Now()
	if err = b.cni.Check(ctx, id, path, opts...); err != nil {
		return times, b.cleanUp(id, path, opts, fmt.Errorf("check: %w", err))
	}
	t3 := time.Now()
	if err = b.cni.Remove(ctx, id, path, opts...); err != nil {
		return times, b.cleanUp(id, path, opts, fmt.Errorf("remove: %w", err))
	}
	t4 := time.Now()
	times[0], times[1], times[2], times[3] = t1.Sub(t0), t2.Sub(t1), t3.Sub(t2), t4.Sub(t3)
	return times, nil
}

// cleanUp removes the pod's networks after cause, with a context of its own: cause may be
// the cancellation of the run's context.
func (b *bench) cleanUp(id, path string, opts []gocni.NamespaceOpts, cause error) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := b.cni.Remove(ctx, id, path, opts...); err != nil {
		return fmt.Errorf("%w (cleanup: %v)", cause, err)
	}
	return cause
}

// netnsAdd creates the network namespace /run/netns/<name> without a fork: on a locked
// thread, unshare, bind-mount the thread's namespace, and return the thread to its own.
func netnsAdd(name string) (string, error) {
	path := filepath.Join(netnsDir, name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0)
	if err != nil {
		return "", err
	}
	f.Close()
	if err := bindNewNetns(path); err != nil {
		os.Remove(path)
		return "", err
	}
	return path, nil
}

func bindNewNetns(path string) error {
	runtime.LockOSThread()
	home, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open own namespace: %w", err)
	}
	defer unix.Close(home)
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("unshare: %w", err)
	}
	err = unix.Mount("/proc/thread-self/ns/net", path, "none", unix.MS_BIND, "")
	if setErr := unix.Setns(home, unix.CLONE_NEWNET); setErr != nil {
		// Never let another goroutine run in the pod's namespace.
		log.Fatalf("setns back to the node namespace: %v", setErr)
	}
	runtime.UnlockOSThread()
	if err != nil {
		return fmt.Errorf("bind-mount %s: %w", path, err)
	}
	return nil
}

// netnsDel unmounts and removes /run/netns/<name>, trying both whatever the first does.
func netnsDel(path string) error {
	unmountErr := unix.Unmount(path, unix.MNT_DETACH)
	removeErr := os.Remove(path)
	if unmountErr != nil {
		return fmt.Errorf("unmount %s: %w", path, unmountErr)
	}
	return removeErr
}

// cpuTimes returns the CPU seconds (user and system) of this process and of its reaped
// children.
func cpuTimes() (self, children float64) {
	seconds := func(who int) float64 {
		var u unix.Rusage
		if err := unix.Getrusage(who, &u); err != nil {
			log.Fatalf("getrusage: %v", err)
		}
		return time.Duration(u.Utime.Nano() + u.Stime.Nano()).Seconds()
	}
	return seconds(unix.RUSAGE_SELF), seconds(unix.RUSAGE_CHILDREN)
}

func splitNonEmpty(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part != "" {
			out = append(out, part)
		}
	}
	return out
}
