// Command gocheck: json.Unmarshal of each file named on the command line
// into one of cocoon's DB types, as cocoon's storage layer does, printing
// one line per file: "ok", or "error<TAB>" and Go's error text.
//
//	gocheck snapshots|vms|cloudimg|oci FILE...
//
// The struct definitions are copied from cocoon's source (cocoonstack/cocoon
// at 34c6c4a), only what the snapshot and VM DBs hold: types/config.go:6
// (Config), types/snapshot.go:7,19 (SnapshotConfig, Snapshot),
// snapshot/db.go:13,20 (SnapshotRecord, SnapshotIndex), types/vm.go:29,40
// (VMConfig, VM), types/network.go:4,32 (NetworkConfig, Network),
// types/storage.go:30 (StorageConfig), types/boot.go:4 (BootConfig),
// hypervisor/db.go:14,28 (VMRecord, VMIndex), images/index.go:30 (Index),
// images/digest.go:7 (Digest), images/cloudimg/image.go:9,13 and
// images/oci/image.go:11,16,26 (imageIndex, imageEntry, layerEntry: two
// packages' types, here prefixed cloudimg/oci). Standard library only: it
// builds offline (GOPROXY=off) with Debian's golang-go.
// tests/test_go_crosscheck.py runs it.
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

type VMState string

type StorageRole string

// DataDiskSpec is never decoded (json:"-"); its fields do not matter here.
type DataDiskSpec struct{}

type VMConfig struct {
	Config
	Name string `json:"name"`

	OnDemand  bool           `json:"-"`
	User      string         `json:"-"`
	Password  string         `json:"-"`
	DataDisks []DataDiskSpec `json:"-"`
}

type NetworkConfig struct {
	Tap       string   `json:"tap"`
	Mac       string   `json:"mac"`
	NumQueues int      `json:"num_queues"`
	QueueSize int      `json:"queue_size"`
	Backend   string   `json:"backend,omitempty"`
	BridgeDev string   `json:"bridge_dev,omitempty"`
	NetnsPath string   `json:"netns_path,omitempty"`
	Network   *Network `json:"network,omitempty"`
}

type Network struct {
	IP      string `json:"ip,omitempty"`
	Gateway string `json:"gateway,omitempty"`
	Prefix  int    `json:"prefix,omitempty"`
}

type StorageConfig struct {
	Path       string      `json:"path"`
	RO         bool        `json:"ro"`
	Serial     string      `json:"serial"`
	Role       StorageRole `json:"role"`
	MountPoint string      `json:"mount_point,omitempty"`
	FSType     string      `json:"fstype,omitempty"`
	DirectIO   *bool       `json:"direct_io,omitempty"`
}

type BootConfig struct {
	KernelPath   string `json:"kernel_path,omitempty"`
	InitrdPath   string `json:"initrd_path,omitempty"`
	Cmdline      string `json:"cmdline,omitempty"`
	FirmwarePath string `json:"firmware_path,omitempty"`
}

type VM struct {
	ID             string              `json:"id"`
	Hypervisor     string              `json:"hypervisor,omitempty"`
	State          VMState             `json:"state"`
	Config         VMConfig            `json:"config"`
	PID            int                 `json:"pid"`
	SocketPath     string              `json:"socket_path,omitempty"`
	NetworkConfigs []*NetworkConfig    `json:"network_configs,omitempty"`
	StorageConfigs []*StorageConfig    `json:"storage_configs,omitempty"`
	FirstBooted    bool                `json:"first_booted"`
	SnapshotIDs    map[string]struct{} `json:"snapshot_ids,omitempty"`
	CreatedAt      time.Time           `json:"created_at"`
	UpdatedAt      time.Time           `json:"updated_at"`
	StartedAt      *time.Time          `json:"started_at,omitempty"`
	StoppedAt      *time.Time          `json:"stopped_at,omitempty"`
}

type VMRecord struct {
	VM

	BootConfig   *BootConfig         `json:"boot_config,omitempty"`
	ImageBlobIDs map[string]struct{} `json:"image_blob_ids,omitempty"`
	RunDir       string              `json:"run_dir,omitempty"`
	LogDir       string              `json:"log_dir,omitempty"`
}

type VMIndex struct {
	VMs   map[string]*VMRecord `json:"vms"`
	Names map[string]string    `json:"names"`
}

type Digest string

type Index[E any] struct {
	Images map[string]*E `json:"images"`
}

type cloudimgImageIndex struct {
	Index[cloudimgImageEntry]
}

type cloudimgImageEntry struct {
	Ref        string    `json:"ref"`
	ContentSum Digest    `json:"content_sum"`
	Size       int64     `json:"size"`
	CreatedAt  time.Time `json:"created_at"`
}

type ociImageIndex struct {
	Index[ociImageEntry]
}

type ociImageEntry struct {
	Ref            string          `json:"ref"`
	ManifestDigest Digest          `json:"manifest_digest"`
	Layers         []ociLayerEntry `json:"layers"`
	KernelLayer    Digest          `json:"kernel_layer"`
	InitrdLayer    Digest          `json:"initrd_layer"`
	Size           int64           `json:"size"`
	CreatedAt      time.Time       `json:"created_at"`
}

type ociLayerEntry struct {
	Digest Digest `json:"digest"`
}

func target(db string) any {
	switch db {
	case "snapshots":
		return &SnapshotIndex{}
	case "vms":
		return &VMIndex{}
	case "cloudimg":
		return &cloudimgImageIndex{}
	case "oci":
		return &ociImageIndex{}
	}
	return nil
}

func main() {
	if len(os.Args) < 2 || target(os.Args[1]) == nil {
		fmt.Fprintln(os.Stderr, "usage: gocheck snapshots|vms|cloudimg|oci FILE...")
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for _, path := range os.Args[2:] {
		data, err := os.ReadFile(path)
		if err == nil {
			err = json.Unmarshal(data, target(os.Args[1]))
		}
		if err != nil {
			fmt.Fprintf(out, "error\t%s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		} else {
			fmt.Fprintln(out, "ok")
		}
	}
}
