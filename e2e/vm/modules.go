package vm

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
)

// DefaultModules are the modules an IPVS and nftables test needs, in the order they are asked for;
// ModuleOrder adds their dependencies ahead of them. crc32c_generic comes first because libcrc32c
// asks the crypto API for crc32c at load time and the guest has no modprobe helper to find it.
var DefaultModules = []string{
	"crc32c_generic",
	"dummy", "veth",
	"nf_conntrack", "nf_conntrack_netlink", "nf_nat",
	"ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_lc", "ip_vs_wlc", "ip_vs_sh", "ip_vs_dh", "ip_vs_mh",
	"ip_vs_sed", "ip_vs_nq", "ip_vs_lblc", "ip_vs_lblcr", "ip_vs_fo", "ip_vs_ovf",
	"nf_tables", "nft_ct", "nft_nat", "nft_chain_nat", "nft_masq", "nft_reject", "nft_reject_inet",
	"nft_fib_inet", "nft_compat", "nft_limit", "nft_numgen", "nft_hash",
}

// modName normalizes a module or file name the way the kernel does: no suffix, dashes as
// underscores.
func modName(s string) string {
	s = strings.TrimSuffix(filepath.Base(s), ".ko")
	return strings.ReplaceAll(s, "-", "_")
}

// ModuleOrder resolves wanted into module files under modDir, dependencies first, each once. It
// reads the "depends=" entry of each module's .modinfo section, so the host needs no kmod tools.
func ModuleOrder(modDir string, wanted []string) ([]string, error) {
	index := map[string]string{}
	err := filepath.WalkDir(filepath.Join(modDir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".ko") {
			index[modName(p)] = p
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("indexing modules: %w", err)
	}
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string) error
	visit = func(name string) error {
		switch state[name] {
		case 1:
			return fmt.Errorf("module dependency cycle at %s", name)
		case 2:
			return nil
		}
		p, ok := index[name]
		if !ok {
			return fmt.Errorf("module %s not found in %s", name, modDir)
		}
		state[name] = 1
		deps, err := moduleDepends(p)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		state[name] = 2
		order = append(order, p)
		return nil
	}
	for _, w := range wanted {
		if err := visit(modName(w)); err != nil {
			return nil, err
		}
	}
	return order, nil
}

func moduleDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", path, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, nil
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("module %s .modinfo: %w", path, err)
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}
