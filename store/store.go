// Package store keeps bare-metal services, endpoints and nodes in etcd, under one key prefix. It
// is the only package that talks to etcd: an embedded single-node etcd with a data directory by
// default, an external cluster when configured. It stores opaque documents by kind, namespace and
// name; what a document means and whether it is valid is the caller's business, but every write
// is one transaction that either happens whole or not at all.
package store

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"go.uber.org/zap"
)

// Config selects and configures the etcd behind the store.
type Config struct {
	// Endpoints of an external etcd cluster; empty starts an embedded one.
	Endpoints []string
	// CertFile, KeyFile and CAFile enable TLS to an external cluster.
	CertFile, KeyFile, CAFile string
	// DataDir is the embedded etcd's data directory: the store survives restarts in it.
	DataDir string
	// ClientURL is where the embedded etcd listens (default 127.0.0.1:2479), PeerURL its peer
	// port (default 127.0.0.1:2480). Both serve TLS that refuses every client whatever the scheme
	// (http:// means https://): the brain talks to its embedded etcd in process, and nobody else
	// may (see lockedTLS).
	ClientURL, PeerURL string
	// Prefix is the key prefix the store owns (default /ganglion/).
	Prefix string
	Log    *slog.Logger
	// EtcdLogLevel is the embedded etcd's own log level (default error).
	EtcdLogLevel string
	// QuotaBytes is the embedded etcd's space quota (default DefaultQuotaBytes). Applies are
	// refused with ErrQuota before it is reached; an external cluster keeps its own.
	QuotaBytes int64
	// MaintainEvery is how often the embedded store compacts, defragments and disarms as needed
	// (default DefaultMaintainEvery; see Maintain).
	MaintainEvery time.Duration
}

// Store is a connection to etcd (and the embedded server, when there is one).
type Store struct {
	cli    *clientv3.Client
	etcd   *embed.Etcd
	prefix string
	log    *slog.Logger

	unreadable unreadable // see unreadable.go

	// quota is the embedded etcd's space quota; 0 for an external cluster.
	quota       int64
	kicks       chan struct{} // a write found the store full: maintain now
	maintaining sync.Mutex    // one Maintain at a time
	// roomMu guards what says a full store may have room again.
	roomMu         sync.Mutex
	deletedSince   bool
	lastMaintained time.Time
	metrics        storeMetrics
	// stopMaintain ends the maintenance loop and waits for it, before the etcd it uses closes.
	stopMaintain func()
	// stopEndpoints ends the external cluster's member check (endpoints.go).
	stopEndpoints func()
}

// Open starts the embedded etcd or connects to the external one.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = "/ganglion/"
	}
	if !strings.HasSuffix(cfg.Prefix, "/") {
		cfg.Prefix += "/"
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	s := &Store{prefix: cfg.Prefix, log: cfg.Log, kicks: make(chan struct{}, 1), stopMaintain: func() {}, stopEndpoints: func() {}}
	s.initMetrics()
	where := "embedded"
	if len(cfg.Endpoints) == 0 {
		e, err := startEmbedded(cfg)
		if err != nil {
			return nil, err
		}
		s.etcd = e
		s.quota = or64(cfg.QuotaBytes, DefaultQuotaBytes)
		// In process: the embedded etcd's listeners admit no one, the brain included.
		s.cli = v3client.New(e.Server)
	} else {
		where = fmt.Sprint(cfg.Endpoints)
		cli, err := dialExternal(ctx, cfg)
		if err != nil {
			return nil, err
		}
		s.cli = cli
	}
	// Fail now, not at the first write, when the cluster is not there.
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := s.cli.Get(sctx, s.prefix+"meta"); err != nil {
		s.Close()
		return nil, fmt.Errorf("store: etcd %s not answering: %w", where, err)
	}
	if s.etcd == nil && len(cfg.Endpoints) > 1 {
		ectx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.watchEndpoints(ectx, cfg.Endpoints)
		}()
		s.stopEndpoints = func() { cancel(); <-done }
	}
	if s.etcd != nil {
		// The first round runs before the store is used: a store that filled up before a
		// restart recovers now.
		if err := s.Maintain(ctx); err != nil {
			s.log.Warn("store maintenance at start failed; retried later", "err", err)
		}
		mctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.maintainLoop(mctx, cmp.Or(cfg.MaintainEvery, DefaultMaintainEvery))
		}()
		s.stopMaintain = func() { cancel(); <-done }
	}
	return s, nil
}

// dialExternal connects to an external cluster, with TLS when given certificates.
func dialExternal(ctx context.Context, cfg Config) (*clientv3.Client, error) {
	var tlsCfg *tls.Config
	if cfg.CertFile != "" || cfg.CAFile != "" {
		info := transport.TLSInfo{CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, TrustedCAFile: cfg.CAFile}
		var err error
		if tlsCfg, err = info.ClientConfig(); err != nil {
			return nil, fmt.Errorf("store: etcd TLS: %w", err)
		}
	}
	// The client's own retry chatter is not logged: failures reach the caller as errors.
	// The client's own 2 MiB send limit would refuse a large apply with a bare gRPC error before
	// the cluster sees it: let the cluster's --max-request-bytes decide, so the error names it.
	// Keep-alive pings find a member that went silent (paused, or cut off without a reset): calls
	// on its connection fail and move on instead of waiting for TCP to give up, minutes later.
	// Not more often than etcd's --grpc-keepalive-min-time (5s), which would answer GOAWAY.
	cli, err := clientv3.New(clientv3.Config{Endpoints: cfg.Endpoints, DialTimeout: 10 * time.Second, TLS: tlsCfg, Context: ctx,
		Logger: zap.NewNop(), MaxCallSendMsgSize: EmbeddedMaxRequestBytes + 1<<20,
		DialKeepAliveTime: 10 * time.Second, DialKeepAliveTimeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("store: connect to etcd %v: %w", cfg.Endpoints, err)
	}
	return cli, nil
}

func startEmbedded(cfg Config) (*embed.Etcd, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("store: a data directory is required for the embedded etcd")
	}
	ec := embed.NewConfig()
	ec.Name = "ganglion"
	ec.Dir = cfg.DataDir
	ec.LogLevel = or(cfg.EtcdLogLevel, "error")
	client, peer := or(cfg.ClientURL, "https://127.0.0.1:2479"), or(cfg.PeerURL, "https://127.0.0.1:2480")
	cu, err := lockedURL(client)
	if err != nil {
		return nil, fmt.Errorf("store: client URL %q: %w", client, err)
	}
	pu, err := lockedURL(peer)
	if err != nil {
		return nil, fmt.Errorf("store: peer URL %q: %w", peer, err)
	}
	ec.ListenClientUrls, ec.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	ec.ListenPeerUrls, ec.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	locked, err := lockedTLS(cfg.DataDir, []url.URL{cu, pu})
	if err != nil {
		return nil, err
	}
	ec.ClientTLSInfo, ec.PeerTLSInfo = locked, locked
	// The JSON gateway dials the client port as a client, and no client gets in; the brain has
	// no use for it either.
	ec.EnableGRPCGateway = false
	// One apply is one transaction: 10,000 services with their slices and pruned health records
	// are some 30,000 operations and 10-20 MiB, far above etcd's defaults (128, 1.5 MiB).
	ec.MaxTxnOps = EmbeddedMaxTxnOps
	ec.MaxRequestBytes = EmbeddedMaxRequestBytes
	// Keep an hour of history: watches resume from a revision across short brain restarts, and
	// older ones relist.
	ec.AutoCompactionMode = embed.CompactorModePeriodic
	ec.AutoCompactionRetention = "1h"
	// etcd's quota counts the file, which only defragmentation shrinks: Maintain does it, and
	// applies are refused with the way out before the quota is reached.
	ec.QuotaBackendBytes = or64(cfg.QuotaBytes, DefaultQuotaBytes)
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("store: start embedded etcd in %s: %w", cfg.DataDir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("store: embedded etcd: %w", err)
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, errors.New("store: embedded etcd did not become ready in 60s")
	}
}

func or64(n, def int64) int64 {
	if n <= 0 {
		return def
	}
	return n
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Close disconnects and stops the embedded etcd.
func (s *Store) Close() error {
	if s.stopMaintain != nil {
		s.stopMaintain()
	}
	if s.stopEndpoints != nil {
		s.stopEndpoints()
	}
	if s.cli != nil {
		_ = s.cli.Close()
	}
	if s.etcd != nil {
		s.etcd.Close()
	}
	return nil
}

// Client returns the etcd client, for tests that need to act on etcd directly (compaction).
func (s *Store) Client() *clientv3.Client { return s.cli }
