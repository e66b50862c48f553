// Package vm boots a throwaway qemu VM with Debian's kernel and runs a static Go test binary in
// it, for tests that need kernel features the host lacks (IPVS above all).
//
// Everything the VM needs is fetched on first use and cached under CacheDir: the Debian packages
// qemu-system-x86, busybox-static, ipvsadm, nftables and iproute2 are installed with apt-get when
// missing, and the kernel package linux-image-amd64 depends on is fetched with `apt-get download`
// and unpacked with `dpkg-deb -x`. Each run builds a small initramfs (busybox, the kernel modules
// with their dependencies, the tools with their shared libraries, the test binary and an /init
// that runs it) and boots it under TCG, because KVM hangs on these machines.
//
// The guest prints "GANGLION-VM-RESULT rc=<n>" on the serial console when the binary exits; Run
// reads the console, enforces a timeout and returns the exit code with the whole log.
//
// A package uses it by putting its guest tests and an outer test in the same package: the outer
// test calls RunGoTest, which builds the package's own test binary statically and runs the
// chosen tests in the guest; guest tests start with RequireInside. The guest's exit code is not
// enough (a pattern matching nothing exits 0, and so does a skip): before booting, RunGoTest
// lists the tests the pattern selects (`-test.list` on the same binary), and afterwards it fails
// unless the guest's `-test.v` output shows every one of them PASS and no test FAIL or SKIP.
// Environment:
//
//	GANGLION_VM_CACHE    cache directory (default /var/cache/ganglion-vm)
//	GANGLION_VM_CONSOLE  when set, stream the guest console to stderr while it runs
//	CI                   passed into the guest, so a missing prerequisite fails there too
package vm
