// Command registry serves a real OCI distribution registry (go-containerregistry's pkg/registry,
// in memory) on a loopback port, for the tests of `oci://` chart references: `helm push` uploads a
// packaged chart to it and `helm upgrade --install oci://…` pulls it back.
//
// Usage: registry ADDR (e.g. 127.0.0.1:0). It prints "listening on HOST:PORT" once it accepts
// connections and serves until it is killed.
package main

import (
	"fmt"
	"log"
	"net"
	"net/http"
	"os"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	addr := "127.0.0.1:0"
	if len(os.Args) > 1 {
		addr = os.Args[1]
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatalf("listen %s: %v", addr, err)
	}
	fmt.Printf("listening on %s\n", l.Addr())
	quiet := log.New(os.Stderr, "registry: ", log.LstdFlags)
	log.Fatal(http.Serve(l, registry.New(registry.Logger(quiet))))
}
