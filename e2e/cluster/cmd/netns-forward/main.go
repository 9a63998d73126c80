// netns-forward makes one address inside the cluster's network namespace reachable from this
// machine's loopback: it listens on a loopback port of the namespace it was started in and
// opens each upstream connection from inside the cluster's namespace. The cluster's own
// addresses (node, pods, Services) exist only in that namespace, so the API server is
// reached this way from tests and people on the host, and nothing is routed in between.
//
//	netns-forward -netns /run/netns/NAME -listen 127.0.0.1:0 -to 10.201.0.2:6443 -port-file F
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	netnsPath := flag.String("netns", "", "network namespace file to dial from (e.g. /run/netns/NAME)")
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to listen on, in this process's namespace")
	to := flag.String("to", "", "address to forward to, inside the namespace")
	portFile := flag.String("port-file", "", "write the port listened on to this file")
	flag.Parse()
	if *netnsPath == "" || *to == "" {
		log.Fatal("netns-forward: -netns and -to are required")
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil || !net.ParseIP(host).IsLoopback() {
		log.Fatalf("netns-forward: -listen must be a loopback address, got %q", *listen)
	}
	listener, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("netns-forward: listen: %v", err)
	}
	dial, err := dialerIn(*netnsPath)
	if err != nil {
		log.Fatalf("netns-forward: %v", err)
	}
	port := listener.Addr().(*net.TCPAddr).Port
	if *portFile != "" {
		if err := os.WriteFile(*portFile, []byte(fmt.Sprintf("%d\n", port)), 0o644); err != nil {
			log.Fatalf("netns-forward: %v", err)
		}
	}
	log.Printf("netns-forward: 127.0.0.1:%d -> %s in %s", port, *to, *netnsPath)
	for {
		client, err := listener.Accept()
		if err != nil {
			log.Printf("netns-forward: accept: %v", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		go forward(client, dial, *to)
	}
}

// dialerIn returns a dial function whose sockets are created inside the namespace: one OS
// thread is moved into it for good and serves every dial (a socket keeps the namespace it
// was created in, whichever thread uses it afterwards).
func dialerIn(path string) (func(address string) (net.Conn, error), error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	type request struct {
		address string
		reply   chan result
	}
	requests := make(chan request)
	ready := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the process, never reused
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			ready <- fmt.Errorf("setns %s: %w", path, err)
			return
		}
		ready <- nil
		for r := range requests {
			conn, err := net.DialTimeout("tcp", r.address, 10*time.Second)
			r.reply <- result{conn, err}
		}
	}()
	if err := <-ready; err != nil {
		return nil, err
	}
	return func(address string) (net.Conn, error) {
		reply := make(chan result, 1)
		requests <- request{address, reply}
		r := <-reply
		return r.conn, r.err
	}, nil
}

type result struct {
	conn net.Conn
	err  error
}

func forward(client net.Conn, dial func(string) (net.Conn, error), to string) {
	defer client.Close()
	upstream, err := dial(to)
	if err != nil {
		log.Printf("netns-forward: dial %s: %v", to, err)
		return
	}
	defer upstream.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if tcp, ok := dst.(*net.TCPConn); ok {
			_ = tcp.CloseWrite()
		}
	}
	go pipe(upstream, client)
	go pipe(client, upstream)
	wg.Wait()
}
