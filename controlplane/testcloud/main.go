// testcloud: what the project's Kubernetes test environment needs beside the real control plane.
//
//	testcloud proxy   --dir DIR [--listen 127.0.0.1:0]   a fault-injecting proxy in front of the API server
//	testcloud standin --dir DIR [--lb-ip-delay 200ms] [--certificate-delay 200ms] [--lb-ip-pool CIDR]
//	                  stand-ins for a cloud's LoadBalancer and cert-manager's controller
//
// DIR is the control plane's directory written by scripts/lib/controlplane.sh (apiserver.url,
// pki/ca.crt, pki/admin.{crt,key}, pki/testcloud.{crt,key}). Only the Go standard library is used.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	dir := fs.String("dir", "", "the control plane's directory")
	var err error
	switch os.Args[1] {
	case "proxy":
		listen := fs.String("listen", "127.0.0.1:0", "address to listen on (plain HTTP, loopback)")
		_ = fs.Parse(os.Args[2:])
		err = runProxy(need(*dir), *listen)
	case "standin":
		lb := fs.Duration("lb-ip-delay", 200*time.Millisecond, "time until a LoadBalancer Service gets its IP")
		cert := fs.Duration("certificate-delay", 200*time.Millisecond, "time until a Certificate is Ready")
		pool := fs.String("lb-ip-pool", "203.0.113.0/24", "addresses handed to LoadBalancer Services")
		_ = fs.Parse(os.Args[2:])
		err = runStandin(need(*dir), *lb, *cert, *pool)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "testcloud:", err)
		os.Exit(1)
	}
}

func need(dir string) string {
	if dir == "" {
		usage()
	}
	return dir
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: testcloud proxy|standin --dir DIR [options]")
	os.Exit(2)
}
