// Package security checks, with real processes and real TLS handshakes, that a brain started
// the bare-metal way with no security flags refuses whoever has no business with it: plaintext,
// peers without a certificate or with one from another CA, expired and not-yet-valid
// certificates, nodes asking for other nodes' streams, readers and nodes asking to write, and
// documents that would aim probes or services where they must not go. It also checks that
// certificates rotate without restarts, that their expiry is exported, that refusals are
// counted, and that --insecure never leaves loopback. The tests are in the _test files; `make
// e2e-security` runs them.
package security
