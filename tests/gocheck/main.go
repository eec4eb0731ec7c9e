// Command gocheck: json.Unmarshal of each file named on the command line
// into cocoon's snapshot DB type, as cocoon's storage layer does, printing
// one line per file: "ok", or "error<TAB>" and Go's error text.
//
// The struct definitions are copied from cocoon's source (cocoonstack/cocoon
// at 34c6c4a), only what the snapshot DB holds: types/config.go:6 (Config),
// types/snapshot.go:7,19 (SnapshotConfig, Snapshot), snapshot/db.go:13,20
// (SnapshotRecord, SnapshotIndex). Standard library only: it builds offline
// (GOPROXY=off) with Debian's golang-go. tests/test_go_crosscheck.py runs it.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"
)

type Config struct {
	CPU           int    `json:"cpu,omitempty"`
	Memory        int64  `json:"memory,omitempty"`
	Storage       int64  `json:"storage,omitempty"`
	QueueSize     int    `json:"queue_size,omitempty"`
	DiskQueueSize int    `json:"disk_queue_size,omitempty"`
	Image         string `json:"image,omitempty"`
	ImageDigest   string `json:"image_digest,omitempty"`
	ImageType     string `json:"image_type,omitempty"`
	Network       string `json:"network,omitempty"`
	NoDirectIO    bool   `json:"no_direct_io,omitempty"`
	Windows       bool   `json:"windows,omitempty"`
}

type SnapshotConfig struct {
	Config

	ID           string              `json:"id,omitempty"`
	Name         string              `json:"name"`
	Description  string              `json:"description,omitempty"`
	ImageBlobIDs map[string]struct{} `json:"image_blob_ids,omitempty"`
	Hypervisor   string              `json:"hypervisor,omitempty"`
	NICs         int                 `json:"nics,omitempty"`
}

type Snapshot struct {
	SnapshotConfig
	CreatedAt time.Time `json:"created_at"`
}

type SnapshotRecord struct {
	Snapshot
	Pending bool   `json:"pending,omitempty"`
	DataDir string `json:"data_dir,omitempty"`
}

type SnapshotIndex struct {
	Snapshots map[string]*SnapshotRecord `json:"snapshots"`
	Names     map[string]string          `json:"names"`
}

func main() {
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for _, path := range os.Args[1:] {
		data, err := os.ReadFile(path)
		if err == nil {
			var idx SnapshotIndex
			err = json.Unmarshal(data, &idx)
		}
		if err != nil {
			fmt.Fprintf(out, "error\t%s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		} else {
			fmt.Fprintln(out, "ok")
		}
	}
}
