// Command etcd is the stock etcd server, built from the etcd Go module so the
// e2e control plane needs no downloaded release tarball. It must stay a thin
// call into etcdmain: any behaviour change belongs upstream, not here.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
