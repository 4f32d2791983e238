// Command etcd is the etcd server of go.etcd.io/etcd/server/v3, for the local control plane (make k8s-api-up).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
