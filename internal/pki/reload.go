package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
)

// fileStamp tells whether a file changed: Kubernetes swaps a Secret volume's files through a
// symlink, and cert-manager or an operator may rewrite them in place, so both the inode and the
// modification time count.
type fileStamp struct {
	mod  time.Time
	size int64
	ino  uint64
}

func stampOf(path string) (fileStamp, error) {
	st, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	s := fileStamp{mod: st.ModTime(), size: st.Size()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		s.ino = sys.Ino
	}
	return s, nil
}

// KeyPair is a certificate and key read from files and re-read whenever either changes. A pair
// that fails to load (a rotation caught half-way, a mismatched key) keeps the last good one.
type KeyPair struct {
	certFile, keyFile string

	mu      sync.Mutex
	stamps  [2]fileStamp
	current *tls.Certificate
	leaf    *x509.Certificate
	lastErr error
}

// LoadKeyPair reads certFile and keyFile; they must load now.
func LoadKeyPair(certFile, keyFile string) (*KeyPair, error) {
	k := &KeyPair{certFile: certFile, keyFile: keyFile}
	if _, err := k.Get(); err != nil {
		return nil, err
	}
	return k, nil
}

// Get returns the current certificate, re-reading the files if they changed.
func (k *KeyPair) Get() (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	cs, err1 := stampOf(k.certFile)
	ks, err2 := stampOf(k.keyFile)
	if err := errors.Join(err1, err2); err != nil {
		return k.keep(err)
	}
	if k.current != nil && cs == k.stamps[0] && ks == k.stamps[1] {
		return k.current, nil
	}
	pair, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		return k.keep(fmt.Errorf("%s: %w", k.certFile, err))
	}
	k.current, k.leaf, k.stamps, k.lastErr = &pair, pair.Leaf, [2]fileStamp{cs, ks}, nil
	return k.current, nil
}

func (k *KeyPair) keep(err error) (*tls.Certificate, error) {
	k.lastErr = err
	if k.current != nil {
		return k.current, nil
	}
	return nil, err
}

// Leaf returns the current certificate, parsed.
func (k *KeyPair) Leaf() *x509.Certificate {
	if _, err := k.Get(); err != nil {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.leaf
}

// CertFile is the certificate's path, to name it in logs and metrics.
func (k *KeyPair) CertFile() string { return k.certFile }

// Pool is a CA bundle read from a file and re-read whenever it changes.
type Pool struct {
	file string

	mu      sync.Mutex
	stamp   fileStamp
	pool    *x509.CertPool
	certs   []*x509.Certificate
	lastErr error
}

// LoadPool reads a PEM bundle of CA certificates; it must load now.
func LoadPool(file string) (*Pool, error) {
	p := &Pool{file: file}
	if _, err := p.Get(); err != nil {
		return nil, err
	}
	return p, nil
}

// Get returns the current pool, re-reading the file if it changed.
func (p *Pool) Get() (*x509.CertPool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, err := stampOf(p.file)
	if err != nil {
		return p.keep(err)
	}
	if p.pool != nil && st == p.stamp {
		return p.pool, nil
	}
	b, err := os.ReadFile(p.file)
	if err != nil {
		return p.keep(err)
	}
	var certs []*x509.Certificate
	for rest := b; len(rest) > 0; {
		var c *x509.Certificate
		c, rest, err = nextCert(rest)
		if err != nil {
			return p.keep(fmt.Errorf("%s: %w", p.file, err))
		}
		if c != nil {
			certs = append(certs, c)
		}
	}
	if len(certs) == 0 {
		return p.keep(fmt.Errorf("%s: no certificates", p.file))
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	p.pool, p.certs, p.stamp, p.lastErr = pool, certs, st, nil
	return pool, nil
}

func (p *Pool) keep(err error) (*x509.CertPool, error) {
	p.lastErr = err
	if p.pool != nil {
		return p.pool, nil
	}
	return nil, err
}

// File is the bundle's path.
func (p *Pool) File() string { return p.file }

// Certificates returns the bundle's certificates as last read.
func (p *Pool) Certificates() []*x509.Certificate {
	_, _ = p.Get()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.certs
}
